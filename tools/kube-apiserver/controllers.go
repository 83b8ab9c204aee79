package main

// The two controllers a test server needs from kube-controller-manager: namespace deletion
// (deletes what a namespace holds, then the namespace), so tests can clean up after
// themselves, and service accounts (each namespace's `default`, without which no Pod can be
// created). Everything else a controller manager does (Deployments making ReplicaSets and
// Pods, garbage collection of owned objects, tokens...) is absent.

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/controller/namespace"
	"k8s.io/kubernetes/pkg/controller/serviceaccount"
)

func startControllers(ctx context.Context, url string, c credentials) error {
	config := &rest.Config{
		Host:            url,
		BearerToken:     c.adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAFile: c.caCert},
		QPS:             1000,
		Burst:           1000,
		UserAgent:       "kube-controller-manager/namespace-controller",
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	meta, err := metadata.NewForConfig(config)
	if err != nil {
		return err
	}
	factory := informers.NewSharedInformerFactory(client, 12*time.Hour)
	controller := namespace.NewNamespaceController(ctx, client, meta,
		client.Discovery().ServerPreferredNamespacedResources,
		factory.Core().V1().Namespaces(), 5*time.Minute, corev1.FinalizerKubernetes)
	accounts, err := serviceaccount.NewServiceAccountsController(klog.FromContext(ctx),
		factory.Core().V1().ServiceAccounts(), factory.Core().V1().Namespaces(), client,
		serviceaccount.DefaultServiceAccountsControllerOptions())
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	go controller.Run(ctx, 2)
	go accounts.Run(ctx, 1)
	return nil
}
