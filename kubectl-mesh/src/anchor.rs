//! What binds the config's hosts to a gateway, so istiod builds a virtual host for them (where
//! the filter's routing route lands first): the Istio Gateway kubectl-mesh creates when none
//! serves them, and the anchor VirtualService (the Gateway API's HTTPRoute is in
//! [`crate::gateway_api`]); and the config's domains and service targets both are made of.

use crate::names::meta;
use crate::options::RenderOptions;
use mesh_core::upstream::service_fqdn;
use mesh_core::MeshConfig;
use serde_json::{json, Value};

/// Path the anchor VirtualService routes; nothing requests it, so while the filter is not in
/// the gateway the config's hosts answer 404 instead of reaching a backend without its rules.
pub const ANCHOR_PATH: &str = "/.well-known/kubectl-mesh/anchor";

/// Every domain of the config, in order (the hosts the gateway must serve).
pub fn domains(cfg: &MeshConfig) -> Vec<String> {
    let mut v: Vec<String> = cfg
        .hosts
        .iter()
        .flat_map(|h| h.domains.iter().map(|d| d.to_ascii_lowercase()))
        .collect();
    v.dedup();
    v
}

/// The Istio Gateway serving the config's hosts on the gateway workloads (`--http-port`, and
/// `--https-port` with `--tls-secret`).
pub fn gateway(cfg: &MeshConfig, opts: &RenderOptions, hash: &str) -> Value {
    let hosts = domains(cfg);
    let g = &opts.gateway;
    let mut servers = vec![json!({
        "port": { "number": g.http_port, "name": format!("http-{}", opts.name), "protocol": "HTTP" },
        "hosts": hosts,
    })];
    if let Some(secret) = &g.tls_secret {
        servers.push(json!({
            "port": { "number": g.https_port, "name": format!("https-{}", opts.name), "protocol": "HTTPS" },
            "tls": { "mode": "SIMPLE", "credentialName": secret },
            "hosts": hosts,
        }));
    }
    json!({
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "Gateway",
        "metadata": meta(&opts.name, &opts.namespace, hash, &cfg.namespace),
        "spec": { "selector": opts.selector, "servers": servers },
    })
}

/// The Gateway the anchor VirtualService binds to: `--gateway`, else the one kubectl-mesh
/// creates.
pub fn gateway_ref(opts: &RenderOptions) -> String {
    match &opts.gateway.existing {
        Some(g) => g.clone(),
        None => format!("{}/{}", opts.namespace, opts.name),
    }
}

/// Every service target of the config as `(FQDN, port)`, in order, without repeats.
pub fn targets(cfg: &MeshConfig) -> Vec<(String, u16)> {
    let mut v: Vec<(String, u16)> = Vec::new();
    for t in cfg
        .hosts
        .iter()
        .flat_map(|h| &h.routes)
        .filter_map(|r| r.to.as_ref())
    {
        if let (Some(s), Some(p)) = (&t.service, t.port) {
            let key = (service_fqdn(s, &cfg.namespace, &cfg.cluster_domain), p);
            if !v.contains(&key) {
                v.push(key);
            }
        }
    }
    v
}

/// The anchor VirtualService: it binds the config's hosts to the gateway, so istiod builds a
/// virtual host for them (the routing route lands there first) whatever other VirtualServices
/// exist; istiod merges it with any other VirtualService for the same host on that gateway.
/// It has one route per service the config routes to, each matching a path under
/// [`ANCHOR_PATH`] that nobody requests: a gateway that keeps only the clusters its routes name
/// (`PILOT_FILTER_GATEWAY_CLUSTER_CONFIG`) then keeps every cluster the filter may choose.
pub fn anchor_virtual_service(cfg: &MeshConfig, opts: &RenderOptions, hash: &str) -> Option<Value> {
    let targets = targets(cfg);
    if targets.is_empty() {
        return None;
    }
    let routes: Vec<Value> = targets
        .iter()
        .enumerate()
        .map(|(i, (host, port))| {
            let path = if i == 0 {
                ANCHOR_PATH.to_owned()
            } else {
                format!("{ANCHOR_PATH}/{i}")
            };
            json!({
                "name": format!("{}-anchor-{i}", opts.name),
                "match": [{ "uri": { "exact": path } }],
                "route": [{ "destination": { "host": host, "port": { "number": port } } }],
            })
        })
        .collect();
    Some(json!({
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": meta(&opts.name, &opts.namespace, hash, &cfg.namespace),
        "spec": {
            "hosts": domains(cfg),
            "gateways": [gateway_ref(opts)],
            "http": routes,
        },
    }))
}
