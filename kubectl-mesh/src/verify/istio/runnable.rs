//! A proxy's generated config made runnable in a plain Envoy, with as few changes as possible
//! (each listed in `tests/istio/README.md`): RDS becomes inline routes, Istio-proxy-only filters
//! go, listener filters, TLS and original-destination matching go (one plain listener per
//! HTTP filter chain instead), and every cluster becomes a local echo upstream of that name.

use super::dump::Proxy;
use super::IstioError;
use crate::verify::echo::EchoUpstream;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

const HCM: &str = "envoy.filters.network.http_connection_manager";

/// Echo upstreams by cluster name, shared by the runs before and after the patches.
#[derive(Debug, Default)]
pub struct Upstreams(pub BTreeMap<String, EchoUpstream>);

impl Upstreams {
    /// The upstream for `cluster`, started on first use.
    pub fn get(&mut self, cluster: &str) -> Result<&EchoUpstream, IstioError> {
        if !self.0.contains_key(cluster) {
            let up = EchoUpstream::start(cluster).map_err(IstioError::Upstream)?;
            self.0.insert(cluster.to_owned(), up);
        }
        self.0
            .get(cluster)
            .ok_or_else(|| IstioError::Upstream(std::io::ErrorKind::NotFound.into()))
    }
}

/// One plain listener made from one HTTP filter chain of the proxy.
#[derive(Debug, Clone)]
pub struct Listener {
    /// `LISTENER/CHAIN`, for messages.
    pub label: String,
    /// The EnvoyFilter context it came from.
    pub context: &'static str,
    /// Its route configuration (inline now).
    pub route_config: Value,
}

/// The runnable form: listeners (ports assigned at start) and the bootstrap around them.
#[derive(Debug, Clone)]
pub struct Runnable {
    /// Listeners, in bootstrap order.
    pub listeners: Vec<Listener>,
    listener_json: Vec<Value>,
    clusters: Vec<Value>,
    stats_config: Option<Value>,
}

/// Filters only istio-proxy has (Istio's own extensions); upstream Envoy cannot load them.
fn istio_only(name: &str) -> bool {
    name.starts_with("istio.")
}

impl Runnable {
    /// Converts `proxy`; `extra_clusters` are clusters only a `cluster_header` route names
    /// (the config's upstreams), which get echo upstreams too.
    pub fn new(
        proxy: &Proxy,
        upstreams: &mut Upstreams,
        extra_clusters: &[String],
    ) -> Result<Runnable, IstioError> {
        let mut listeners = Vec::new();
        let mut listener_json = Vec::new();
        for l in &proxy.listeners {
            let context = proxy.listener_context(l);
            let lname = l["name"].as_str().unwrap_or("listener");
            let mut all_chains: Vec<&Value> = l["filter_chains"]
                .as_array()
                .into_iter()
                .flatten()
                .collect();
            if l["default_filter_chain"].is_object() {
                all_chains.push(&l["default_filter_chain"]);
            }
            for (ci, chain) in all_chains.into_iter().enumerate() {
                if chain["filter_chain_match"]["transport_protocol"] == "tls" {
                    continue;
                }
                let Some(hcm) = chain["filters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|f| f["name"] == HCM)
                else {
                    continue;
                };
                let label = format!(
                    "{lname}/{}",
                    chain["name"].as_str().map_or(ci.to_string(), str::to_owned)
                );
                let hcm = runnable_hcm(hcm, proxy).map_err(|message| IstioError::Runnable {
                    what: label.clone(),
                    message,
                })?;
                listeners.push(Listener {
                    label: label.clone(),
                    context,
                    route_config: hcm["typed_config"]["route_config"].clone(),
                });
                listener_json.push(json!({
                    "name": label,
                    "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
                    "filter_chains": [{ "filters": [hcm] }],
                }));
            }
        }
        let mut names: Vec<String> = extra_clusters.to_vec();
        for l in &listeners {
            collect_clusters(&l.route_config, &mut names);
        }
        names.sort();
        names.dedup();
        let mut clusters = Vec::with_capacity(names.len());
        for name in &names {
            let port = upstreams.get(name)?.port;
            clusters.push(json!({
                    "name": name, "type": "STATIC", "connect_timeout": "1s",
                    "load_assignment": { "cluster_name": name, "endpoints": [{ "lb_endpoints": [{
                        "endpoint": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": port } } }
                    }]}]},
            }));
        }
        Ok(Runnable {
            listeners,
            listener_json,
            clusters,
            stats_config: proxy.stats_config.clone(),
        })
    }

    /// The bootstrap with listeners on `ports` (one per listener) and admin on `admin_port`.
    pub fn bootstrap(&self, ports: &[u16], admin_port: u16) -> Value {
        let listeners: Vec<Value> = self
            .listener_json
            .iter()
            .zip(ports)
            .map(|(l, p)| {
                let mut l = l.clone();
                l["address"]["socket_address"]["port_value"] = json!(p);
                l
            })
            .collect();
        let mut b = json!({
            "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin_port } } },
            "static_resources": { "listeners": listeners, "clusters": self.clusters },
        });
        if let Some(s) = &self.stats_config {
            b["stats_config"] = s.clone();
        }
        b
    }
}

/// The HTTP connection manager, runnable: inline routes instead of RDS, no Istio-only
/// filters or per-route configs, and no tracing provider lookups.
fn runnable_hcm(hcm: &Value, proxy: &Proxy) -> Result<Value, String> {
    let mut hcm = hcm.clone();
    let tc = hcm["typed_config"]
        .as_object_mut()
        .ok_or("HTTP connection manager without typed_config")?;
    if let Some(rds) = tc.remove("rds") {
        let name = rds["route_config_name"].as_str().unwrap_or_default();
        let rc = proxy
            .routes
            .get(name)
            .ok_or_else(|| format!("RDS route configuration {name} is not in the dump"))?;
        tc.insert("route_config".into(), rc.clone());
    }
    if let Some(filters) = tc.get_mut("http_filters").and_then(Value::as_array_mut) {
        filters.retain(|f| !istio_only(f["name"].as_str().unwrap_or_default()));
    }
    if let Some(rc) = tc.get_mut("route_config") {
        for vh in rc["virtual_hosts"].as_array_mut().into_iter().flatten() {
            drop_istio_configs(vh);
            for r in vh["routes"].as_array_mut().into_iter().flatten() {
                drop_istio_configs(r);
            }
        }
    }
    Ok(hcm)
}

fn drop_istio_configs(v: &mut Value) {
    if let Some(m) = v["typed_per_filter_config"].as_object_mut() {
        m.retain(|k, _| !istio_only(k));
    }
}

fn collect_clusters(rc: &Value, out: &mut Vec<String>) {
    for vh in rc["virtual_hosts"].as_array().into_iter().flatten() {
        for r in vh["routes"].as_array().into_iter().flatten() {
            let route: &Map<String, Value> = match r["route"].as_object() {
                Some(m) => m,
                None => continue,
            };
            if let Some(c) = route.get("cluster").and_then(Value::as_str) {
                out.push(c.to_owned());
            }
            for w in route
                .get("weighted_clusters")
                .and_then(|w| w["clusters"].as_array())
                .into_iter()
                .flatten()
            {
                if let Some(c) = w["name"].as_str() {
                    out.push(c.to_owned());
                }
            }
        }
    }
}
