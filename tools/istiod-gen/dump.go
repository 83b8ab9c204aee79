// Dump output: the generated config as Envoy's admin /config_dump JSON, snake_case like a real one.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// ConfigDump arranges g as Envoy's /config_dump does: bootstrap, clusters, ECDS, listeners,
// scoped routes, routes. Only the dynamic (xDS) parts are istiod's; the bootstrap carries just the
// node, since the rest of a real one comes from istio-agent.
func ConfigDump(g *Generated) (*adminv3.ConfigDump, error) {
	p := g.Proxy
	node := &core.Node{
		Id:            fmt.Sprintf("%s~%s~%s~%s", p.Type, p.IPAddresses[0], p.ID, p.DNSDomain),
		Cluster:       p.Metadata.WorkloadName + "." + p.ConfigNamespace,
		Metadata:      p.Metadata.ToStruct(),
		UserAgentName: "envoy",
	}
	dumps := []proto.Message{&adminv3.BootstrapConfigDump{Bootstrap: &bootstrapv3.Bootstrap{Node: node}}}

	clusters := &adminv3.ClustersConfigDump{}
	for _, c := range g.Clusters {
		a, err := anypb.New(c)
		if err != nil {
			return nil, fmt.Errorf("cluster %s: %w", c.Name, err)
		}
		clusters.DynamicActiveClusters = append(clusters.DynamicActiveClusters, &adminv3.ClustersConfigDump_DynamicCluster{Cluster: a})
	}
	dumps = append(dumps, clusters)

	if len(g.Extensions) > 0 {
		ecds := &adminv3.EcdsConfigDump{}
		for _, e := range g.Extensions {
			a, err := anypb.New(e)
			if err != nil {
				return nil, fmt.Errorf("extension config %s: %w", e.Name, err)
			}
			ecds.EcdsFilters = append(ecds.EcdsFilters, &adminv3.EcdsConfigDump_EcdsFilterConfig{EcdsFilter: a})
		}
		dumps = append(dumps, ecds)
	}

	listeners := &adminv3.ListenersConfigDump{}
	for _, l := range g.Listeners {
		a, err := anypb.New(l)
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", l.Name, err)
		}
		listeners.DynamicListeners = append(listeners.DynamicListeners, &adminv3.ListenersConfigDump_DynamicListener{
			Name:        l.Name,
			ActiveState: &adminv3.ListenersConfigDump_DynamicListenerState{Listener: a},
		})
	}
	dumps = append(dumps, listeners, &adminv3.ScopedRoutesConfigDump{})

	routes := &adminv3.RoutesConfigDump{}
	for _, r := range g.Routes {
		a, err := anypb.New(r)
		if err != nil {
			return nil, fmt.Errorf("route configuration %s: %w", r.Name, err)
		}
		routes.DynamicRouteConfigs = append(routes.DynamicRouteConfigs, &adminv3.RoutesConfigDump_DynamicRouteConfig{RouteConfig: a})
	}
	dumps = append(dumps, routes)

	out := &adminv3.ConfigDump{}
	for _, d := range dumps {
		a, err := anypb.New(d)
		if err != nil {
			return nil, err
		}
		out.Configs = append(out.Configs, a)
	}
	return out, nil
}

// WriteDump prints g's config dump as indented JSON. Every Any must resolve: a type this program
// does not link is an error, not an opaque blob.
func WriteDump(w io.Writer, g *Generated) error {
	d, err := ConfigDump(g)
	if err != nil {
		return err
	}
	raw, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(d)
	if err != nil {
		return fmt.Errorf("writing the config dump as JSON: %w", err)
	}
	// protojson varies its whitespace on purpose; re-indent for stable, diffable output.
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", " "); err != nil {
		return fmt.Errorf("indenting the config dump: %w", err)
	}
	buf.WriteString("\n")
	_, err = buf.WriteTo(w)
	return err
}
