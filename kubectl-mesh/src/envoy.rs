//! The Envoy pieces kubectl-mesh adds, built in one place: the Wasm filter, the `grpc_web`
//! filter, the routing route, the reserved-header strip, and the bootstrap of a local Envoy.
//! `render`, `run` and every test harness use these, so tests test what users get.

use mesh_core::{Delivery, MeshConfig, GRPC_WEB_HEADER, RESERVED_HEADERS, UPSTREAM_HEADER};
use serde_json::{json, Value};
use std::net::SocketAddr;

/// Envoy type of the Wasm HTTP filter.
pub const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// Envoy type of the HTTP connection manager.
pub const HCM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
/// Envoy name of the HTTP connection manager network filter.
pub const HCM_NAME: &str = "envoy.filters.network.http_connection_manager";
/// Envoy name of the router, the last HTTP filter.
pub const ROUTER_NAME: &str = "envoy.filters.http.router";
/// Name of the Wasm HTTP filter in the chain (also the plugin and VM name).
pub const FILTER_NAME: &str = "kubectl-mesh";
/// The filter's proxy-wasm root id.
pub const ROOT_ID: &str = "mesh-filter";
/// Name of the `grpc_web` filter kubectl-mesh places after the Wasm filter.
pub const GRPC_WEB_FILTER_NAME: &str = "kubectl-mesh-grpc-web";
/// Name of the Lua filter that strips reserved headers on proxies without early header
/// mutation.
pub const STRIP_FILTER_NAME: &str = "kubectl-mesh-strip";
/// Name of the routing route.
pub const ROUTE_NAME: &str = "kubectl-mesh-upstream";

/// What Envoy does with the filter when its VM fails (a trap or an abort inside the module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPolicy {
    /// `failure_policy: FAIL_RELOAD` (Envoy 1.33+, istio-proxy 1.25+, as `proxy_version.rs`
    /// gates it): the next request gets a fresh VM, so the filter comes back by itself; while
    /// a reload is backing off (1 s at first) requests are answered 503, as with a closed
    /// filter.
    Reload,
    /// `fail_open: true`, for Envoys without `failure_policy`: the filter is skipped until the
    /// proxy restarts.
    LegacyOpen,
    /// Neither field, for Envoys without `failure_policy`: every request gets 503 until the
    /// proxy restarts.
    LegacyClosed,
}

impl FailPolicy {
    /// The `PluginConfig` fields that select this policy (Envoy refuses a config that sets both
    /// `fail_open` and `failure_policy`).
    pub fn fields(self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        match self {
            FailPolicy::Reload => {
                m.insert("failure_policy".into(), json!("FAIL_RELOAD"));
            }
            FailPolicy::LegacyOpen => {
                m.insert("fail_open".into(), json!(true));
            }
            FailPolicy::LegacyClosed => {}
        }
        m
    }
}

/// The policy for proxies whose Envoy has no `failure_policy`. Gateway and sidecar-outbound:
/// open, because other apps share that proxy and must not fail with the filter; the config's
/// own hosts then fail closed anyway (no routing header: the anchor VirtualService answers 404
/// at the gateway) and the reserved headers are still stripped natively. Sidecar-inbound:
/// closed, because there the filter's header rules and CORS are all that stands between a
/// request and the workload that chose to run it. Newer proxies get [`FailPolicy::Reload`].
pub fn legacy_fail_policy(delivery: Delivery) -> FailPolicy {
    if delivery == Delivery::Upstream {
        FailPolicy::LegacyOpen
    } else {
        FailPolicy::LegacyClosed
    }
}

/// The Wasm `PluginConfig` carrying `cfg` for `delivery`, with module `code` (see
/// [`local_code`], [`remote_code`]) and fail `policy`.
pub fn plugin_config(
    cfg: &MeshConfig,
    delivery: Delivery,
    code: Value,
    policy: FailPolicy,
) -> Value {
    plugin_config_json(&cfg.to_filter_json(delivery), policy, code)
}

/// [`plugin_config`] for filter configuration text as is (tests hand it invalid documents).
pub fn plugin_config_json(filter_json: &str, policy: FailPolicy, code: Value) -> Value {
    let mut v = json!({
        "name": FILTER_NAME,
        "root_id": ROOT_ID,
        "vm_config": {
            "vm_id": FILTER_NAME,
            "runtime": "envoy.wasm.runtime.v8",
            "code": code,
        },
        "configuration": {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": filter_json,
        },
    });
    if let Some(m) = v.as_object_mut() {
        m.extend(policy.fields());
    }
    v
}

/// Module code read from a local file.
pub fn local_code(path: &str) -> Value {
    json!({ "local": { "filename": path } })
}

/// Module code fetched from `url` and checked against `sha256`.
pub fn remote_code(url: &str, sha256: &str) -> Value {
    json!({ "remote": {
        "http_uri": { "uri": url, "timeout": "30s" },
        "sha256": sha256.to_ascii_lowercase(),
    }})
}

/// The Wasm HTTP filter entry.
pub fn wasm_filter(cfg: &MeshConfig, delivery: Delivery, code: Value, policy: FailPolicy) -> Value {
    http_filter(plugin_config(cfg, delivery, code, policy))
}

/// The Wasm HTTP filter entry around a `PluginConfig`.
pub fn http_filter(plugin_config: Value) -> Value {
    json!({
        "name": FILTER_NAME,
        "typed_config": { "@type": WASM_TYPE, "config": plugin_config },
    })
}

/// True when some route is marked `grpcWeb` (then the `grpc_web` filter is added).
pub fn uses_grpc_web(cfg: &MeshConfig) -> bool {
    cfg.hosts.iter().flat_map(|h| &h.routes).any(|r| r.grpc_web)
}

/// Envoy's `grpc_web` filter, acting only on requests the mesh filter marked with
/// [`GRPC_WEB_HEADER`] (requests of `grpcWeb` routes). It sits after the mesh filter, so
/// traffic the config does not own is never translated, and where Istio already translated a
/// request earlier in the chain its content type is `application/grpc`, which this one ignores.
pub fn grpc_web_filter() -> Value {
    json!({
        "name": GRPC_WEB_FILTER_NAME,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher",
            "extension_config": {
                "name": "envoy.filters.http.grpc_web",
                "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb" },
            },
            "xds_matcher": { "matcher_list": { "matchers": [{
                "predicate": { "not_matcher": { "single_predicate": {
                    "input": {
                        "name": "mesh-grpc-web-marker",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput",
                            "header_name": GRPC_WEB_HEADER,
                        },
                    },
                    "value_match": { "exact": "1" },
                }}},
                "on_match": { "action": {
                    "name": "skip",
                    "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.common.matcher.action.v3.SkipFilter" },
                }},
            }]}},
        },
    })
}

/// The HTTP filters kubectl-mesh inserts just before the router, in order (a local Envoy:
/// every Envoy `run` supports has `failure_policy`).
pub fn mesh_http_filters(cfg: &MeshConfig, delivery: Delivery, code: Value) -> Vec<Value> {
    let mut v = vec![wasm_filter(cfg, delivery, code, FailPolicy::Reload)];
    if uses_grpc_web(cfg) {
        v.push(grpc_web_filter());
    }
    v
}

/// The route every virtual host needs first: send a request the filter routed to the cluster
/// it named, removing the filter's headers before forwarding. A request without the header
/// (one the config does not own) skips it and meets the proxy's own routes. It retries as
/// istiod's routes do by default (no route timeout, two retries on connection failures and
/// resets, another host each time); a VirtualService's own retries, hash policy or subsets do
/// not apply to it.
pub fn routing_route() -> Value {
    json!({
        "name": ROUTE_NAME,
        "match": {
            "prefix": "/",
            "headers": [{ "name": UPSTREAM_HEADER, "present_match": true }],
        },
        "route": {
            "cluster_header": UPSTREAM_HEADER,
            "timeout": "0s",
            "retry_policy": istio_default_retry_policy(),
        },
        "request_headers_to_remove": RESERVED_HEADERS,
    })
}

/// istiod's default retry policy for a route without a VirtualService `retries`
/// (`pilot/pkg/networking/core/route/retry`).
pub fn istio_default_retry_policy() -> Value {
    json!({
        "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
        "num_retries": 2,
        "retry_host_predicate": [{
            "name": "envoy.retry_host_predicates.previous_hosts",
            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate" },
        }],
        "host_selection_retry_max_attempts": 5,
    })
}

/// The `typed_extension_protocol_options` that make a cluster speak HTTP/2 to its endpoints
/// (a gRPC server): istiod gives a Service port without a gRPC/HTTP2 name or `appProtocol`
/// HTTP/1.1 at a gateway and the client's protocol at a sidecar, and an HTTP/2-only server
/// resets either.
pub fn http2_protocol_options() -> Value {
    json!({
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": { "http2_protocol_options": {} },
        }
    })
}

/// The HTTP connection manager fields that remove a client-sent reserved header before any
/// filter or route sees it (Envoy's early header mutation), so no client can pick the
/// upstream or ask for translation, also while the filter's VM is down.
pub fn strip_reserved_headers() -> Value {
    let mutations: Vec<Value> = RESERVED_HEADERS
        .iter()
        .map(|h| json!({ "remove": h }))
        .collect();
    json!({ "early_header_mutation_extensions": [{
        "name": "envoy.http.early_header_mutation.header_mutation",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation",
            "mutations": mutations,
        },
    }]})
}

/// The reserved-header strip for proxies without early header mutation: a Lua filter, first in
/// the chain, removing them before any other filter or route sees them.
pub fn strip_reserved_headers_lua() -> Value {
    let removes: String = RESERVED_HEADERS
        .iter()
        .map(|h| format!("  h:remove(\"{h}\")\n"))
        .collect();
    json!({
        "name": STRIP_FILTER_NAME,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": { "inline_string": format!(
                "function envoy_on_request(handle)\n  local h = handle:headers()\n{removes}end\n"
            )},
        },
    })
}

/// The router filter.
pub fn router_filter() -> Value {
    json!({
        "name": ROUTER_NAME,
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
    })
}

/// The route configuration of a local Envoy running the filter: the routing route, then a
/// plain 404 for requests the config does not own (what a proxy without other routes would
/// answer). The 404 is a route rather than Envoy's "no route", so that Envoy checks a request
/// against a route before the filter runs, as it does in Istio and with native routes (it
/// rejects a WebSocket upgrade no route allows, for one).
pub fn local_route_config() -> Value {
    json!({
        "name": FILTER_NAME,
        "virtual_hosts": [{ "name": "all", "domains": ["*"], "routes": [
            routing_route(),
            { "name": "not-in-config", "match": { "prefix": "/" }, "direct_response": { "status": 404 } },
        ]}],
    })
}

/// One STATIC cluster of a local Envoy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticCluster {
    /// Cluster name (Istio's naming: `outbound|6000||server.digimon.svc.cluster.local`).
    pub name: String,
    /// Where its requests go.
    pub address: SocketAddr,
    /// Speak HTTP/2 upstream (gRPC servers behind gRPC-Web routes).
    pub http2: bool,
}

/// A local Envoy: one HTTP listener with the given filters (the router is appended) and route
/// configuration, STATIC clusters, and an optional admin listener.
#[derive(Debug, Clone)]
pub struct LocalEnvoy {
    /// The listener's address.
    pub listen: SocketAddr,
    /// The admin listener, if any.
    pub admin: Option<SocketAddr>,
    /// HTTP filters before the router.
    pub http_filters: Vec<Value>,
    /// The route configuration.
    pub route_config: Value,
    /// Upstream clusters.
    pub clusters: Vec<StaticCluster>,
    /// Extra HTTP connection manager fields (merged over the defaults), e.g.
    /// `strip_any_host_port` for native configs or [`strip_reserved_headers`].
    pub hcm_extra: serde_json::Map<String, Value>,
}

impl LocalEnvoy {
    /// A local Envoy running the mesh filter with `cfg` the way `render` puts it into Istio's
    /// gateway: the filters, the routing route and the reserved-header strip.
    pub fn mesh(
        cfg: &MeshConfig,
        code: Value,
        listen: SocketAddr,
        clusters: Vec<StaticCluster>,
    ) -> Self {
        Self::mesh_with(
            mesh_http_filters(cfg, Delivery::Upstream, code),
            listen,
            clusters,
        )
    }

    /// [`LocalEnvoy::mesh`] with the HTTP filters given (tests build them from raw text).
    pub fn mesh_with(
        http_filters: Vec<Value>,
        listen: SocketAddr,
        clusters: Vec<StaticCluster>,
    ) -> Self {
        let hcm_extra = match strip_reserved_headers() {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        LocalEnvoy {
            listen,
            admin: None,
            http_filters,
            route_config: local_route_config(),
            clusters,
            hcm_extra,
        }
    }

    /// The bootstrap document.
    pub fn bootstrap(&self) -> Value {
        let mut filters = self.http_filters.clone();
        filters.push(router_filter());
        let mut hcm = json!({
            "@type": HCM_TYPE,
            "stat_prefix": "kubectl_mesh",
            "codec_type": "AUTO",
            "route_config": self.route_config,
            "http_filters": filters,
        });
        if let Some(m) = hcm.as_object_mut() {
            m.extend(self.hcm_extra.clone());
        }
        let clusters: Vec<Value> = self.clusters.iter().map(static_cluster).collect();
        let mut doc = json!({
            "static_resources": {
                "listeners": [{
                    "name": FILTER_NAME,
                    "address": socket_address(self.listen),
                    "filter_chains": [{ "filters": [{ "name": HCM_NAME, "typed_config": hcm }] }],
                }],
                "clusters": clusters,
            },
        });
        if let (Some(admin), Some(m)) = (self.admin, doc.as_object_mut()) {
            m.insert("admin".into(), json!({ "address": socket_address(admin) }));
        }
        doc
    }
}

fn socket_address(a: SocketAddr) -> Value {
    json!({ "socket_address": { "address": a.ip().to_string(), "port_value": a.port() } })
}

fn static_cluster(c: &StaticCluster) -> Value {
    let mut v = json!({
        "name": c.name,
        "type": "STATIC",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": c.name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket_address(c.address) } }] }],
        },
    });
    if c.http2 {
        v["typed_extension_protocol_options"] = http2_protocol_options();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(grpc_web: bool) -> MeshConfig {
        let text = format!(
            "apiVersion: kubectl-mesh/v1alpha1\nkind: MeshConfig\nhosts:\n- domains: [a.test]\n  routes:\n  - grpcWeb: {grpc_web}\n    to: {{service: s, port: 80}}\n"
        );
        MeshConfig::from_yaml(&text).unwrap()
    }

    #[test]
    fn grpc_web_filter_only_with_grpc_web_routes() {
        let with = mesh_http_filters(&cfg(true), Delivery::Upstream, local_code("/m"));
        assert_eq!(with.len(), 2);
        assert_eq!(with[1]["name"], GRPC_WEB_FILTER_NAME);
        let without = mesh_http_filters(&cfg(false), Delivery::Upstream, local_code("/m"));
        assert_eq!(without.len(), 1);
    }

    #[test]
    fn filter_carries_delivery_and_fail_policy() {
        for d in [Delivery::Upstream, Delivery::Local] {
            let f = wasm_filter(&cfg(false), d, local_code("/m"), legacy_fail_policy(d));
            let c = &f["typed_config"]["config"];
            assert_eq!(c.get("fail_open").is_some(), d == Delivery::Upstream);
            assert!(c.get("failure_policy").is_none());
            let text = c["configuration"]["value"].as_str().unwrap();
            let fc = mesh_core::FilterConfig::from_json(text).unwrap();
            assert_eq!(fc.delivery, d);
            let f = wasm_filter(&cfg(false), d, local_code("/m"), FailPolicy::Reload);
            let c = &f["typed_config"]["config"];
            assert_eq!(c["failure_policy"], "FAIL_RELOAD");
            assert!(c.get("fail_open").is_none(), "Envoy refuses both fields");
        }
    }

    #[test]
    fn lua_strip_removes_every_reserved_header() {
        let f = strip_reserved_headers_lua();
        let code = f["typed_config"]["default_source_code"]["inline_string"]
            .as_str()
            .unwrap();
        for h in RESERVED_HEADERS {
            assert!(code.contains(&format!("h:remove(\"{h}\")")), "{code}");
        }
    }

    #[test]
    fn routing_route_removes_every_reserved_header() {
        let r = routing_route();
        for h in RESERVED_HEADERS {
            assert!(r["request_headers_to_remove"]
                .as_array()
                .unwrap()
                .contains(&json!(h)));
        }
    }

    #[test]
    fn local_bootstrap_has_router_last_and_http2_where_asked() {
        let b = LocalEnvoy::mesh(
            &cfg(true),
            local_code("/m"),
            "127.0.0.1:10000".parse().unwrap(),
            vec![StaticCluster {
                name: "c".into(),
                address: "127.0.0.1:9000".parse().unwrap(),
                http2: true,
            }],
        )
        .bootstrap();
        let hcm = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        let filters = hcm["http_filters"].as_array().unwrap();
        assert_eq!(filters.last().unwrap()["name"], ROUTER_NAME);
        assert!(hcm.get("early_header_mutation_extensions").is_some());
        assert_eq!(
            b["static_resources"]["clusters"][0]["typed_extension_protocol_options"],
            http2_protocol_options()
        );
        assert!(b.get("admin").is_none());
    }
}
