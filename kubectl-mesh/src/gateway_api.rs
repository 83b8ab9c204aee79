//! Kubernetes Gateway API gateways (`gateway.networking.k8s.io`), pure: which hosts a Gateway's
//! listeners admit, and the anchor HTTPRoute that binds the config's hosts to it.
//!
//! istiod cannot bind a VirtualService to a Gateway API `Gateway`, so at such a gateway the
//! anchor is an HTTPRoute (parentRefs the Gateway, hostnames the config's domains, one rule per
//! service target matching an exact path under the anchor path nobody requests): istiod then
//! builds a virtual host for the hosts, where the filter's routing route lands first, and a
//! gateway that keeps only the clusters its routes name keeps every cluster the filter may pick.

use crate::anchor::{domains, targets, ANCHOR_PATH};
use crate::gateway::covers;
use crate::names::{meta, GATEWAY_API_GROUP};
use crate::options::RenderOptions;
use mesh_core::MeshConfig;
use serde_json::{json, Value};

/// The Gateway API version kubectl-mesh writes and reads.
pub const API_VERSION: &str = "gateway.networking.k8s.io/v1";

/// Whether a listener takes HTTP requests for `host`: an HTTP listener, or an HTTPS one that
/// terminates TLS, whose `hostname` (none: every host) covers it.
pub fn listener_admits(listener: &Value, host: &str) -> bool {
    let protocol = listener["protocol"].as_str().unwrap_or_default();
    let http = match protocol {
        "HTTP" => true,
        "HTTPS" => listener["tls"]["mode"].as_str().unwrap_or("Terminate") == "Terminate",
        _ => false,
    };
    http && listener["hostname"]
        .as_str()
        .is_none_or(|pattern| covers(pattern, host))
}

/// Whether a listener takes routes from `namespace` (`allowedRoutes.namespaces.from`: `Same`, the
/// default, or `All`; `Selector` is taken as no, since its labels are not known here).
fn admits_routes_from(listener: &Value, gateway_namespace: &str, namespace: &str) -> bool {
    match listener["allowedRoutes"]["namespaces"]["from"]
        .as_str()
        .unwrap_or("Same")
    {
        "All" => true,
        "Same" => gateway_namespace == namespace,
        _ => false,
    }
}

/// The config hosts `gateway` serves to an HTTPRoute in `route_namespace`.
pub fn served_hosts(gateway: &Value, hosts: &[String], route_namespace: &str) -> Vec<String> {
    let gateway_namespace = gateway["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default();
    let listeners: Vec<&Value> = gateway["spec"]["listeners"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| admits_routes_from(l, gateway_namespace, route_namespace))
        .collect();
    hosts
        .iter()
        .filter(|h| listeners.iter().any(|l| listener_admits(l, h)))
        .cloned()
        .collect()
}

/// The anchor HTTPRoute for the Gateway `opts` names (see the module docs); `None` without a
/// Gateway API gateway or without a service target.
pub fn anchor_http_route(cfg: &MeshConfig, opts: &RenderOptions, hash: &str) -> Option<Value> {
    let gateway = opts.gateway_api()?;
    let targets = targets(cfg);
    if targets.is_empty() {
        return None;
    }
    let rules: Vec<Value> = targets
        .iter()
        .enumerate()
        .map(|(i, (fqdn, port))| {
            let path = match i {
                0 => ANCHOR_PATH.to_owned(),
                _ => format!("{ANCHOR_PATH}/{i}"),
            };
            let mut parts = fqdn.split('.');
            let (service, namespace) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            json!({
                "matches": [{ "path": { "type": "Exact", "value": path } }],
                "backendRefs": [{ "name": service, "namespace": namespace, "port": port }],
            })
        })
        .collect();
    Some(json!({
        "apiVersion": API_VERSION,
        "kind": "HTTPRoute",
        "metadata": meta(&opts.name, &opts.namespace, hash, &cfg.namespace),
        "spec": {
            "parentRefs": [{
                "group": GATEWAY_API_GROUP, "kind": "Gateway",
                "namespace": opts.namespace, "name": gateway,
            }],
            "hostnames": domains(cfg),
            "rules": rules,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(listeners: Value) -> Value {
        json!({ "metadata": { "namespace": "web", "name": "public" }, "spec": { "listeners": listeners } })
    }

    #[test]
    fn listeners_admit_hosts_as_gateway_api_says() {
        let hosts = vec!["api.backend.com".to_owned(), "web.backend.com".to_owned()];
        let all = gateway(json!([{ "name": "http", "port": 80, "protocol": "HTTP" }]));
        assert_eq!(served_hosts(&all, &hosts, "web"), hosts);
        assert_eq!(
            served_hosts(&all, &hosts, "other"),
            Vec::<String>::new(),
            "routes from the Gateway's own namespace only, by default"
        );
        let one = gateway(json!([
            { "name": "api", "port": 80, "protocol": "HTTP", "hostname": "api.backend.com",
              "allowedRoutes": { "namespaces": { "from": "All" } } },
            { "name": "tcp", "port": 9000, "protocol": "TCP" },
            { "name": "pass", "port": 443, "protocol": "TLS", "tls": { "mode": "Passthrough" } },
        ]));
        assert_eq!(served_hosts(&one, &hosts, "other"), ["api.backend.com"]);
        let wild = gateway(json!([{ "name": "https", "port": 443, "protocol": "HTTPS",
            "hostname": "*.backend.com", "tls": { "mode": "Terminate" } }]));
        assert_eq!(served_hosts(&wild, &hosts, "web"), hosts);
    }
}
