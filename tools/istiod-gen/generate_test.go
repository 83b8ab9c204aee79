package main

import (
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	wasm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"

	"istio.io/istio/pkg/config/mesh"
)

var ingressGateway = ProxyOptions{Router: true, Namespace: "istio-system", Labels: map[string]string{"istio": "ingressgateway"}, IstioVersion: LibraryIstioVersion}

func generate(t *testing.T, p ProxyOptions, files ...string) *Generated {
	t.Helper()
	for i, f := range files {
		files[i] = "testdata/" + f
	}
	in, err := LoadFiles(files, "default")
	if err != nil {
		t.Fatal(err)
	}
	g, err := Generate(in, p, mesh.DefaultMeshConfig())
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGatewayVirtualServiceRoutesToTheServiceCluster(t *testing.T) {
	g := generate(t, ingressGateway, "app.yaml", "gateway.yaml")
	// istioctl's gateway Service maps port 80 to 8080: the listener and route use the target port.
	if l := findListener(g, "0.0.0.0_8080"); l == nil {
		t.Fatalf("no listener 0.0.0.0_8080; have %v", names(g.Listeners, (*listener.Listener).GetName))
	}
	rc := findRoute(g, "http.8080")
	if rc == nil {
		t.Fatalf("no route configuration http.8080; have %v", names(g.Routes, (*route.RouteConfiguration).GetName))
	}
	want := "outbound|6000||server.digimon.svc.cluster.local"
	var got []string
	for _, vh := range rc.VirtualHosts {
		if slices.Contains(vh.Domains, "api.backend.com") {
			for _, r := range vh.Routes {
				got = append(got, r.GetRoute().GetCluster())
			}
		}
	}
	if !slices.Equal(got, []string{want}) {
		t.Errorf("api.backend.com routes to %v, want [%s]", got, want)
	}
	if findCluster(g, want) == nil {
		t.Errorf("no cluster %s", want)
	}
}

func TestEnvoyFilterProxyVersionMatch(t *testing.T) {
	for _, tc := range []struct {
		version string
		applied bool
	}{{"1.31.0", true}, {"1.20.3", false}} {
		p := ingressGateway
		p.IstioVersion = tc.version
		g := generate(t, p, "app.yaml", "gateway.yaml", "envoyfilter-version.yaml")
		filters := httpFilters(t, findListener(g, "0.0.0.0_8080"))
		if has := slices.Contains(filters, "test.only-1-31"); has != tc.applied {
			t.Errorf("ISTIO_VERSION %s: filter test.only-1-31 present = %v, want %v (filters %v)", tc.version, has, tc.applied, filters)
		}
		if got := g.Proxy.Metadata.IstioVersion; got != tc.version {
			t.Errorf("node ISTIO_VERSION = %q, want %q", got, tc.version)
		}
	}
}

func TestWasmPluginGoesOverECDS(t *testing.T) {
	g := generate(t, ingressGateway, "app.yaml", "gateway.yaml", "wasmplugin.yaml")
	names := ecdsNames(g.Listeners)
	if len(names) != 1 {
		t.Fatalf("want one config_discovery filter in the listeners, got %v", names)
	}
	if !slices.Contains(httpFilters(t, findListener(g, "0.0.0.0_8080")), names[0]) {
		t.Errorf("ECDS filter %s is not in the gateway's HTTP filter chain", names[0])
	}
	if len(g.Extensions) != 1 || g.Extensions[0].Name != names[0] {
		t.Fatalf("ECDS resources %v, want exactly %s", g.Extensions, names[0])
	}
	w := &wasm.Wasm{}
	if err := g.Extensions[0].TypedConfig.UnmarshalTo(w); err != nil {
		t.Fatalf("ECDS resource is not a Wasm filter: %v", err)
	}
	if got := w.GetConfig().GetVmConfig().GetCode().GetLocal().GetFilename(); got != "/var/local/mesh.wasm" {
		t.Errorf("Wasm code file = %q, want /var/local/mesh.wasm", got)
	}
}

func TestSidecarGetsInboundForItsPod(t *testing.T) {
	p := ProxyOptions{Namespace: "digimon", Labels: map[string]string{"app": "server"}, IP: "10.1.2.3", IstioVersion: LibraryIstioVersion}
	g := generate(t, p, "app.yaml", "pod.yaml")
	if got := g.Proxy.ID; got != "server-7d4b9c-x2x7k.digimon" {
		t.Errorf("proxy ID %q: the Pod with --ip was not the proxy's", got)
	}
	if findCluster(g, "inbound|6000||") == nil {
		t.Errorf("no inbound|6000|| cluster; have %v", names(g.Clusters, (*clusterv3.Cluster).GetName))
	}
	// The numeric port name leaves the protocol to detection: the sidecar sends what it received.
	c := findCluster(g, "outbound|6000||server.digimon.svc.cluster.local")
	opts := &upstreamhttp.HttpProtocolOptions{}
	if err := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].UnmarshalTo(opts); err != nil {
		t.Fatalf("sidecar outbound cluster has no HttpProtocolOptions: %v", err)
	}
	if opts.GetUseDownstreamProtocolConfig() == nil {
		t.Errorf("sidecar outbound cluster does not use the downstream protocol: %v", opts)
	}
}

func TestGatewayAPIGatewayAndHTTPRoute(t *testing.T) {
	p := ProxyOptions{Router: true, Namespace: "istio-ingress", Labels: map[string]string{gatewayNameLabel: "web"}, IstioVersion: LibraryIstioVersion}
	g := generate(t, p, "app.yaml", "gateway-api.yaml")
	rc := findRoute(g, "http.80")
	if rc == nil {
		t.Fatalf("no route configuration http.80; have %v", names(g.Routes, (*route.RouteConfiguration).GetName))
	}
	for _, vh := range rc.VirtualHosts {
		if slices.Contains(vh.Domains, "api.backend.com") && vh.Routes[0].GetRoute().GetCluster() == "outbound|6000||server.digimon.svc.cluster.local" {
			return
		}
	}
	t.Errorf("no virtual host routes api.backend.com to server:6000: %v", rc.VirtualHosts)
}

func findListener(g *Generated, name string) *listener.Listener {
	for _, l := range g.Listeners {
		if l.Name == name {
			return l
		}
	}
	return nil
}

func findRoute(g *Generated, name string) *route.RouteConfiguration {
	for _, r := range g.Routes {
		if r.Name == name {
			return r
		}
	}
	return nil
}

func findCluster(g *Generated, name string) *clusterv3.Cluster {
	for _, c := range g.Clusters {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func names[T any](items []T, name func(T) string) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = name(it)
	}
	return out
}

// httpFilters lists the HTTP filter names of the listener's first HTTP connection manager.
func httpFilters(t *testing.T, l *listener.Listener) []string {
	t.Helper()
	if l == nil {
		t.Fatal("no such listener")
	}
	for _, fc := range l.FilterChains {
		for _, f := range fc.Filters {
			h := &hcm.HttpConnectionManager{}
			if f.GetTypedConfig().UnmarshalTo(h) == nil {
				var out []string
				for _, hf := range h.HttpFilters {
					out = append(out, hf.Name)
				}
				return out
			}
		}
	}
	t.Fatalf("listener %s has no HTTP connection manager", l.Name)
	return nil
}
