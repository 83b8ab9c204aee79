package main

// The one controller a test server needs: namespace deletion (deletes what a namespace holds,
// then the namespace), so tests can clean up after themselves. Everything else a cluster's
// controller manager does (Deployments making ReplicaSets and Pods, garbage collection of
// owned objects, service accounts' tokens...) is absent.

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/kubernetes/pkg/controller/namespace"
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
	factory.Start(ctx.Done())
	go controller.Run(ctx, 2)
	return nil
}
