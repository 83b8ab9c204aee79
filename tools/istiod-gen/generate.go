// Generation: istiod's fake discovery server (pilot/test/xds, what Istio's own tests use) fed the
// inputs, asked for one proxy's clusters, listeners, routes and extension configs.
package main

import (
	"fmt"
	"sort"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	metadatafake "k8s.io/client-go/metadata/fake"
	k8stesting "k8s.io/client-go/testing"
	gwconsts "sigs.k8s.io/gateway-api/pkg/consts"

	meshconfig "istio.io/api/mesh/v1alpha1"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/config/mesh"
	kubelib "istio.io/istio/pkg/kube"
	"istio.io/istio/pkg/test"
	"istio.io/istio/pkg/wellknown"
)

// Generated is one proxy's config as istiod sends it.
type Generated struct {
	Proxy     *model.Proxy
	Clusters  []*clusterv3.Cluster
	Listeners []*listener.Listener
	Routes    []*route.RouteConfiguration
	// Extensions are the ECDS resources the listeners' config_discovery filters name.
	Extensions []*core.TypedExtensionConfig
}

// Generate completes the cluster around the proxy (see setupWorkloads), runs istiod on it and
// generates the proxy's config.
func Generate(in *Inputs, p ProxyOptions, m *meshconfig.MeshConfig) (*Generated, error) {
	pod, err := in.setupWorkloads(p)
	if err != nil {
		return nil, err
	}
	var out *Generated
	// test.Wrap turns the fake server's t.Fatal into an error and runs its cleanups at the end.
	err = test.Wrap(func(t test.Failer) {
		s := xds.NewFakeDiscoveryServer(t, xds.FakeOptions{
			KubernetesObjects: in.Kube,
			Configs:           in.Configs,
			MeshConfig:        m,
			// As a real install has them: Gateway API CRDs carry their bundle version, or
			// istiod ignores GRPCRoute, TCPRoute and TLSRoute.
			KubeClientModifier: annotateGatewayCRDs,
		})
		proxy := s.SetupProxy(newProxy(p, pod))
		g := &Generated{Proxy: proxy, Clusters: s.Clusters(proxy), Listeners: s.Listeners(proxy)}
		g.Routes = s.RoutesFromListeners(proxy, g.Listeners)
		if names := ecdsNames(g.Listeners); len(names) > 0 {
			g.Extensions = s.ConfigGen.BuildExtensionConfiguration(proxy, s.PushContext(), names, nil)
		}
		g.sortByName()
		out = g
	})
	if err != nil {
		return nil, fmt.Errorf("istiod failed: %w", err)
	}
	return out, nil
}

func annotateGatewayCRDs(c kubelib.Client) {
	md, ok := c.Metadata().(*metadatafake.FakeMetadataClient)
	if !ok {
		return
	}
	annotate := func(a k8stesting.Action) (bool, runtime.Object, error) {
		var obj runtime.Object
		switch a := a.(type) {
		case k8stesting.CreateAction:
			obj = a.GetObject()
		case k8stesting.UpdateAction:
			obj = a.GetObject()
		}
		if m, ok := obj.(metav1.Object); ok && strings.HasSuffix(m.GetName(), ".gateway.networking.k8s.io") {
			ann := m.GetAnnotations()
			if ann == nil {
				ann = map[string]string{}
			}
			ann[gwconsts.BundleVersionAnnotation] = gwconsts.BundleVersion
			m.SetAnnotations(ann)
		}
		return false, nil, nil // annotated in place; the tracker stores it
	}
	md.PrependReactor("create", "customresourcedefinitions", annotate)
	md.PrependReactor("update", "customresourcedefinitions", annotate)
}

// sortByName orders every list by name, for stable diffs: Envoy sorts clusters itself, and the
// order of istiod's listeners and routes carries no meaning (it varies from run to run).
func (g *Generated) sortByName() {
	sort.SliceStable(g.Clusters, func(i, j int) bool { return g.Clusters[i].Name < g.Clusters[j].Name })
	sort.SliceStable(g.Listeners, func(i, j int) bool { return g.Listeners[i].Name < g.Listeners[j].Name })
	sort.SliceStable(g.Routes, func(i, j int) bool { return g.Routes[i].Name < g.Routes[j].Name })
	sort.SliceStable(g.Extensions, func(i, j int) bool { return g.Extensions[i].Name < g.Extensions[j].Name })
}

// ecdsNames lists the extension configs the listeners fetch over ECDS (config_discovery), as
// Envoy would request them.
func ecdsNames(listeners []*listener.Listener) []string {
	set := map[string]bool{}
	for _, l := range listeners {
		for _, lf := range l.ListenerFilters {
			if cd := lf.GetConfigDiscovery(); cd != nil {
				set[lf.Name] = true
			}
		}
		chains := append([]*listener.FilterChain{}, l.FilterChains...)
		if l.DefaultFilterChain != nil {
			chains = append(chains, l.DefaultFilterChain)
		}
		for _, fc := range chains {
			for _, f := range fc.Filters {
				if f.GetConfigDiscovery() != nil {
					set[f.Name] = true
				}
				if f.Name != wellknown.HTTPConnectionManager || f.GetTypedConfig() == nil {
					continue
				}
				h := &hcm.HttpConnectionManager{}
				if err := f.GetTypedConfig().UnmarshalTo(h); err != nil {
					continue // not an HCM after all: no HTTP filters to look at
				}
				for _, hf := range h.HttpFilters {
					if hf.GetConfigDiscovery() != nil {
						set[hf.Name] = true
					}
				}
			}
		}
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// loadMesh reads a MeshConfig file over Istio's defaults, or returns the defaults.
func loadMesh(file string) (*meshconfig.MeshConfig, error) {
	if file == "" {
		return mesh.DefaultMeshConfig(), nil
	}
	m, err := mesh.ReadMeshConfig(file)
	if err != nil {
		return nil, fmt.Errorf("--mesh %s: %w", file, err)
	}
	return m, nil
}
