//! The services the applied config routes to: the protocol Istio speaks to each, whether
//! kubectl-mesh makes it HTTP/2, and the DestinationRule settings that patch overrides.

use super::{check, pass, Check, Status};
use crate::istio::targets;
use k8s_openapi::api::core::v1::Service;
use mesh_core::upstream::service_fqdn;
use mesh_core::{FilterConfig, MeshConfig};
use serde_json::Value;

const GROUP: &str = "Upstreams";

/// One service target of the applied config, with what the cluster says about it.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The service's FQDN.
    pub fqdn: String,
    /// The port the config names.
    pub port: u16,
    /// Whether kubectl-mesh makes the proxy speak HTTP/2 to it (`to.http2`, or `grpcWeb`).
    pub http2: bool,
    /// The Service, if it exists.
    pub service: Option<Service>,
    /// DestinationRules (any namespace) whose host covers the service.
    pub destination_rules: Vec<Value>,
}

/// The mesh config inside an applied filter object: the Wasm filter's `configuration` in an
/// EnvoyFilter patch, or a WasmPlugin/TrafficExtension's `pluginConfig`.
pub fn applied_config(filter: &Value) -> Option<MeshConfig> {
    let spec = &filter["spec"];
    let text = match filter["kind"].as_str()? {
        "EnvoyFilter" => spec["configPatches"]
            .as_array()?
            .iter()
            .filter_map(|p| {
                let v = &p["patch"]["value"];
                v["typed_config"]["config"]["configuration"]["value"]
                    .as_str()
                    .map(str::to_owned)
            })
            .next()?,
        "WasmPlugin" => spec["pluginConfig"].to_string(),
        "TrafficExtension" => spec["wasm"]["pluginConfig"].to_string(),
        _ => return None,
    };
    FilterConfig::from_json(&text).ok().map(|f| f.mesh)
}

/// `(FQDN, port, http2)` of every service target of `cfg`.
pub fn service_targets(cfg: &MeshConfig) -> Vec<(String, u16, bool)> {
    let mut out: Vec<(String, u16, bool)> = targets(cfg)
        .into_iter()
        .map(|(fqdn, port)| (fqdn, port, false))
        .collect();
    for route in cfg.hosts.iter().flat_map(|h| &h.routes) {
        let Some(to) = &route.to else { continue };
        let (Some(s), Some(p)) = (&to.service, to.port) else {
            continue;
        };
        let fqdn = service_fqdn(s, &cfg.namespace, &cfg.cluster_domain);
        if let Some(t) = out.iter_mut().find(|t| t.0 == fqdn && t.1 == p) {
            t.2 |= to.wants_http2(route.grpc_web);
        }
    }
    out
}

/// The protocol Istio infers for a Service port: `appProtocol`, else the name's prefix before
/// `-`; `None` when it is neither (Istio then sniffs at sidecars and speaks HTTP/1.1 from a
/// gateway).
pub fn port_protocol(service: &Service, port: u16) -> Option<String> {
    let p = service
        .spec
        .as_ref()?
        .ports
        .iter()
        .flatten()
        .find(|p| p.port == i32::from(port))?;
    if let Some(app) = &p.app_protocol {
        return Some(app.to_ascii_lowercase());
    }
    let name = p.name.as_deref().unwrap_or_default().to_ascii_lowercase();
    let prefix = name.split('-').next().unwrap_or_default();
    // `grpc-web` is a name of its own; other prefixes stop at the first dash.
    let known = [
        "grpc", "http", "http2", "https", "tcp", "tls", "mongo", "mysql", "redis", "udp", "h2c",
    ];
    if name.starts_with("grpc-web") {
        return Some("grpc-web".into());
    }
    known.contains(&prefix).then(|| prefix.to_owned())
}

fn speaks_http2(protocol: &str) -> bool {
    matches!(protocol, "grpc" | "grpc-web" | "http2" | "h2c")
}

/// The DestinationRule connection-pool settings kubectl-mesh's HTTP/2 patch replaces for
/// `port` (it replaces the cluster's whole `HttpProtocolOptions`).
fn overridden_settings(dr: &Value, port: u16) -> Vec<String> {
    let mut pools = vec![&dr["spec"]["trafficPolicy"]["connectionPool"]];
    for pls in dr["spec"]["trafficPolicy"]["portLevelSettings"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if pls["port"]["number"].as_u64() == Some(u64::from(port)) {
            pools.push(&pls["connectionPool"]);
        }
    }
    let mut out = Vec::new();
    for pool in pools {
        for key in [
            "idleTimeout",
            "maxRequestsPerConnection",
            "maxConcurrentStreams",
            "h2UpgradePolicy",
            "useClientProtocol",
        ] {
            if !pool["http"][key].is_null() {
                out.push(format!("connectionPool.http.{key}"));
            }
        }
        if !pool["tcp"]["maxConnectionDuration"].is_null() {
            out.push("connectionPool.tcp.maxConnectionDuration".into());
        }
    }
    out.dedup();
    out
}

fn service_name(fqdn: &str) -> String {
    let mut parts = fqdn.split('.');
    match (parts.next(), parts.next()) {
        (Some(n), Some(ns)) => format!("{ns}/{n}"),
        _ => fqdn.to_owned(),
    }
}

/// The checks of the upstreams.
pub fn evaluate(upstreams: &[Upstream]) -> Vec<Check> {
    let mut out = Vec::new();
    for u in upstreams {
        let what = format!("{}:{}", u.fqdn, u.port);
        let Some(service) = &u.service else {
            out.push(check(
                "upstreams.service-exists",
                GROUP,
                format!("{what}: Service exists"),
                Status::Warn,
                Some(format!("Service {} is not there: requests the config routes to it get 503 (no healthy upstream); create it or fix `to.service`", service_name(&u.fqdn))),
            ));
            continue;
        };
        let has_port = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .is_some_and(|ports| ports.iter().any(|p| p.port == i32::from(u.port)));
        if !has_port {
            out.push(check(
                "upstreams.service-port",
                GROUP,
                format!("{what}: Service has the port"),
                Status::Warn,
                Some(format!(
                    "Service {} has no port {}: fix `to.port`",
                    service_name(&u.fqdn),
                    u.port
                )),
            ));
            continue;
        }
        let protocol = port_protocol(service, u.port);
        let known = protocol.as_deref().map_or(
            "unknown to Istio (no protocol name prefix, no appProtocol)".to_owned(),
            |p| format!("`{p}` to Istio"),
        );
        match (u.http2, protocol.as_deref().is_some_and(speaks_http2)) {
            (true, true) => out.push(pass(
                "upstreams.protocol",
                GROUP,
                format!("{what} speaks HTTP/2 (the port is {known}; kubectl-mesh's patch changes nothing)"),
            )),
            (true, false) => out.push(pass(
                "upstreams.protocol",
                GROUP,
                format!("{what} speaks HTTP/2 through kubectl-mesh's cluster patch (the port is {known}, so Istio alone would speak HTTP/1.1 from a gateway and the client's protocol from a sidecar)"),
            )),
            (false, _) => out.push(pass(
                "upstreams.protocol",
                GROUP,
                format!("{what}: the port is {known}; kubectl-mesh leaves the protocol to Istio (a gRPC server behind a non-grpcWeb route needs `to.http2: true`)"),
            )),
        }
        for dr in &u.destination_rules {
            out.extend(route_level_settings(dr, &what));
        }
        if !u.http2 {
            continue;
        }
        for dr in &u.destination_rules {
            let lost = overridden_settings(dr, u.port);
            if lost.is_empty() {
                continue;
            }
            out.push(check(
                "upstreams.destination-rule-kept",
                GROUP,
                format!(
                    "DestinationRule {} keeps its settings for {what}",
                    crate::gateway::object_ref(dr)
                ),
                Status::Warn,
                Some(format!(
                    "{} no longer apply to {what}: kubectl-mesh's HTTP/2 patch replaces the cluster's HTTP protocol options. Fix: name the Service port grpc-... (or set appProtocol: grpc) and set `to.http2: false`, so that Istio speaks HTTP/2 with your settings",
                    lost.join(", ")
                )),
            ));
        }
    }
    out
}

/// What a DestinationRule asks of the routes to a service, which the filter's routing route
/// (one route for every request it routes) does not carry: consistent-hash load balancing
/// needs the route's hash policy, and subsets are chosen by a VirtualService route.
fn route_level_settings(dr: &Value, what: &str) -> Vec<Check> {
    let name = crate::gateway::object_ref(dr);
    let mut out = Vec::new();
    let hashed = !dr["spec"]["trafficPolicy"]["loadBalancer"]["consistentHash"].is_null();
    if hashed {
        out.push(check(
            "upstreams.consistent-hash",
            GROUP,
            format!("DestinationRule {name}'s consistent hashing applies to {what}"),
            Status::Warn,
            Some("no: the filter's routing route has no hash policy (a VirtualService route's would carry it), so its requests are balanced without the hash; sticky sessions to this service do not hold for the config's hosts".into()),
        ));
    }
    if dr["spec"]["subsets"]
        .as_array()
        .is_some_and(|s| !s.is_empty())
    {
        out.push(pass(
            "upstreams.subsets",
            GROUP,
            format!("DestinationRule {name} has subsets: the config's routes to {what} go to the whole service, not a subset (a VirtualService route chooses subsets)"),
        ));
    }
    out
}

/// True when a DestinationRule in `dr_namespace` with `host` applies to `fqdn`.
pub fn rule_covers(host: &str, dr_namespace: &str, fqdn: &str, cluster_domain: &str) -> bool {
    let full = if host.contains('.') || host.starts_with('*') {
        host.to_owned()
    } else {
        format!("{host}.{dr_namespace}.svc.{cluster_domain}")
    };
    crate::gateway::covers(&full, fqdn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use serde_json::json;

    fn service(name: &str, app: Option<&str>) -> Service {
        Service {
            spec: Some(ServiceSpec {
                ports: Some(vec![ServicePort {
                    name: Some(name.into()),
                    port: 6000,
                    app_protocol: app.map(Into::into),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn port_protocols_as_istio_reads_them() {
        assert_eq!(port_protocol(&service("6000", None), 6000), None);
        assert_eq!(
            port_protocol(&service("grpc-api", None), 6000).as_deref(),
            Some("grpc")
        );
        assert_eq!(
            port_protocol(&service("grpc-web", None), 6000).as_deref(),
            Some("grpc-web")
        );
        assert_eq!(
            port_protocol(&service("x", Some("grpc")), 6000).as_deref(),
            Some("grpc")
        );
        assert_eq!(
            port_protocol(&service("HTTP", None), 6000).as_deref(),
            Some("http")
        );
        assert_eq!(
            port_protocol(&service("grpc", None), 7),
            None,
            "no such port"
        );
    }

    #[test]
    fn the_digimon_server_port_and_a_destination_rule() {
        let dr = json!({
            "metadata": { "namespace": "digimon", "name": "server" },
            "spec": { "host": "server", "trafficPolicy": {
                "connectionPool": { "http": { "idleTimeout": "30s" } },
                "loadBalancer": { "simple": "LEAST_REQUEST" },
            }},
        });
        let up = Upstream {
            fqdn: "server.digimon.svc.cluster.local".into(),
            port: 6000,
            http2: true,
            service: Some(service("6000", None)),
            destination_rules: vec![dr],
        };
        let c = evaluate(std::slice::from_ref(&up));
        assert!(
            c[0].description
                .contains("through kubectl-mesh's cluster patch"),
            "{c:#?}"
        );
        assert_eq!(c[1].status, Status::Warn, "{c:#?}");
        assert!(c[1]
            .hint
            .as_deref()
            .unwrap()
            .starts_with("connectionPool.http.idleTimeout"));
        // Without HTTP/2 the patch is not there, so nothing is overridden.
        let c = evaluate(&[Upstream {
            http2: false,
            ..up.clone()
        }]);
        assert_eq!(c.len(), 1);
        assert!(c[0].description.contains("unknown to Istio"), "{c:#?}");
        let c = evaluate(&[Upstream {
            service: None,
            ..up
        }]);
        assert_eq!(c[0].status, Status::Warn);
    }

    #[test]
    fn what_the_routing_route_does_not_carry_is_said() {
        let dr = json!({
            "metadata": { "namespace": "digimon", "name": "sticky" },
            "spec": { "host": "server", "subsets": [{ "name": "v1", "labels": { "v": "1" } }],
                      "trafficPolicy": { "loadBalancer": { "consistentHash": { "httpHeaderName": "x-user" } } } },
        });
        let up = Upstream {
            fqdn: "server.digimon.svc.cluster.local".into(),
            port: 6000,
            http2: false,
            service: Some(service("grpc", None)),
            destination_rules: vec![dr],
        };
        let c = evaluate(&[up]);
        assert!(
            c.iter()
                .any(|c| c.status == Status::Warn && c.description.contains("consistent hashing")),
            "{c:#?}"
        );
        assert!(
            c.iter().any(|c| c.description.contains("subsets")),
            "{c:#?}"
        );
    }

    #[test]
    fn destination_rule_hosts() {
        let d = "cluster.local";
        let f = "server.digimon.svc.cluster.local";
        assert!(rule_covers("server", "digimon", f, d));
        assert!(!rule_covers("server", "other", f, d));
        assert!(rule_covers(f, "other", f, d));
        assert!(rule_covers("*.digimon.svc.cluster.local", "x", f, d));
        assert!(!rule_covers("web", "digimon", f, d));
    }

    #[test]
    fn the_config_comes_back_out_of_the_applied_objects() {
        let cfg = crate::render::parse_config(
            "t.yaml",
            "apiVersion: kubectl-mesh/v1alpha1\nkind: MeshConfig\nnamespace: d\nhosts:\n- domains: [a]\n  routes:\n  - grpcWeb: true\n    to: {service: s, port: 1}\n",
        )
        .unwrap();
        let ef = json!({ "kind": "EnvoyFilter", "spec": { "configPatches": [
            { "patch": { "value": { "typed_config": { "config": { "configuration": {
                "value": cfg.to_filter_json(mesh_core::Delivery::Upstream) } } } } } },
        ]}});
        let got = applied_config(&ef).unwrap();
        assert_eq!(
            service_targets(&got),
            vec![("s.d.svc.cluster.local".to_owned(), 1, true)]
        );
        let plugin: Value =
            serde_json::from_str(&cfg.to_filter_json(mesh_core::Delivery::Upstream)).unwrap();
        let wp = json!({ "kind": "WasmPlugin", "spec": { "pluginConfig": plugin } });
        assert_eq!(applied_config(&wp), Some(got));
    }
}
