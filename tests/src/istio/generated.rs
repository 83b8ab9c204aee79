//! A config dump istiod generated (`istiod.rs`) made runnable in real Envoy with as little
//! changed as possible: its clusters keep their settings and send to local processes
//! (`clusters.rs`), its extension configs reach Envoy through file-based ECDS after what
//! istio-agent does to them (`agent.rs`), and each HTTP filter chain becomes one plain
//! listener with its routes inline and Istio-only filters left out (see
//! `tests/istio/README.md` for the full list).

use super::agent::{self, Pod};
use super::clusters::runnable_cluster;
use anyhow::{anyhow, Context as _};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

const HCM: &str = "envoy.filters.network.http_connection_manager";

/// The parts of a generated dump.
#[derive(Debug, Clone)]
pub struct Dump {
    /// Listeners (LDS).
    pub listeners: Vec<Value>,
    /// Route configurations (RDS) by name.
    pub routes: BTreeMap<String, Value>,
    /// Clusters (CDS).
    pub clusters: Vec<Value>,
    /// Extension configs (ECDS) by name.
    pub ecds: BTreeMap<String, Value>,
    /// The bootstrap's node (id, cluster, metadata such as `ISTIO_VERSION`).
    pub node: Value,
}

fn section<'a>(dump: &'a Value, suffix: &str) -> Option<&'a Value> {
    dump["configs"].as_array()?.iter().find(|c| {
        c["@type"]
            .as_str()
            .is_some_and(|t| t.rsplit('.').next() == Some(suffix))
    })
}

fn without_type(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("@type");
    }
    v
}

impl Dump {
    /// Reads istiod-gen's `/config_dump` JSON.
    pub fn parse(dump: &Value) -> anyhow::Result<Dump> {
        let listeners = section(dump, "ListenersConfigDump")
            .ok_or_else(|| anyhow!("no ListenersConfigDump"))?["dynamic_listeners"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| without_type(&l["active_state"]["listener"]))
            .collect();
        let mut routes = BTreeMap::new();
        for r in section(dump, "RoutesConfigDump")
            .and_then(|s| s["dynamic_route_configs"].as_array())
            .into_iter()
            .flatten()
        {
            let rc = without_type(&r["route_config"]);
            let name = rc["name"].as_str().unwrap_or_default().to_owned();
            routes.insert(name, rc);
        }
        let clusters = section(dump, "ClustersConfigDump")
            .and_then(|s| s["dynamic_active_clusters"].as_array())
            .into_iter()
            .flatten()
            .map(|c| c["cluster"].clone())
            .collect();
        let mut ecds = BTreeMap::new();
        for e in section(dump, "EcdsConfigDump")
            .and_then(|s| s["ecds_filters"].as_array())
            .into_iter()
            .flatten()
        {
            let ec = without_type(&e["ecds_filter"]);
            let name = ec["name"].as_str().unwrap_or_default().to_owned();
            ecds.insert(name, ec);
        }
        let node = section(dump, "BootstrapConfigDump")
            .map(|b| b["bootstrap"]["node"].clone())
            .unwrap_or_default();
        Ok(Dump {
            listeners,
            routes,
            clusters,
            ecds,
            node,
        })
    }

    /// The route configuration `name`.
    pub fn route(&self, name: &str) -> Option<&Value> {
        self.routes.get(name)
    }

    /// The cluster `name`.
    pub fn cluster(&self, name: &str) -> Option<&Value> {
        self.clusters.iter().find(|c| c["name"] == name)
    }

    /// The names of the HTTP filters of every HTTP connection manager, per listener and chain.
    pub fn http_filter_names(&self) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        for l in &self.listeners {
            for (chain, hcm) in hcms(l) {
                let names = hcm["typed_config"]["http_filters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f["name"].as_str().map(str::to_owned))
                    .collect();
                out.push((chain, names));
            }
        }
        out
    }
}

/// `(LISTENER/CHAIN, HTTP connection manager)` of every plain-text HTTP filter chain.
fn hcms(l: &Value) -> Vec<(String, &Value)> {
    let lname = l["name"].as_str().unwrap_or("listener");
    let mut chains: Vec<&Value> = l["filter_chains"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    if l["default_filter_chain"].is_object() {
        chains.push(&l["default_filter_chain"]);
    }
    chains
        .into_iter()
        .enumerate()
        .filter(|(_, c)| c["filter_chain_match"]["transport_protocol"] != "tls")
        .filter_map(|(i, c)| {
            let hcm = c["filters"].as_array()?.iter().find(|f| f["name"] == HCM)?;
            let chain = c["name"].as_str().map_or(i.to_string(), str::to_owned);
            Some((format!("{lname}/{chain}"), hcm))
        })
        .collect()
}

/// One plain listener made from one HTTP filter chain.
#[derive(Debug, Clone)]
pub struct Listener {
    /// `LISTENER/CHAIN`.
    pub label: String,
    /// Its route configuration, inline now.
    pub route_config: Value,
}

/// A generated dump as a bootstrap for real Envoy (ports filled in at start).
#[derive(Debug, Clone)]
pub struct Runnable {
    /// Listeners in bootstrap order.
    pub listeners: Vec<Listener>,
    listener_json: Vec<Value>,
    clusters: Vec<Value>,
    node: Value,
}

/// Where things are for [`Runnable::new`].
pub struct Setting<'a> {
    /// The local address serving a cluster (`None`: an echo or nothing, the caller decides
    /// by returning `None` only for clusters that should have no endpoint).
    pub address: &'a dyn Fn(&str) -> Option<SocketAddr>,
    /// The pod, for istio-agent's conversion of extension configs.
    pub pod: &'a Pod,
    /// Where ECDS files go.
    pub dir: &'a Path,
}

fn istio_only(name: &str) -> bool {
    name.starts_with("istio.")
}

impl Runnable {
    /// Converts `dump` (see the module documentation).
    pub fn new(dump: &Dump, s: &Setting<'_>) -> anyhow::Result<Runnable> {
        let mut listeners = Vec::new();
        let mut listener_json = Vec::new();
        let mut ecds_files = 0;
        for l in &dump.listeners {
            for (label, hcm) in hcms(l) {
                let mut hcm = hcm.clone();
                let tc = hcm["typed_config"]
                    .as_object_mut()
                    .ok_or_else(|| anyhow!("{label}: no typed_config"))?;
                if let Some(rds) = tc.remove("rds") {
                    let name = rds["route_config_name"].as_str().unwrap_or_default();
                    let rc = dump.route(name).ok_or_else(|| {
                        anyhow!("{label}: route configuration {name} not in the dump")
                    })?;
                    tc.insert("route_config".into(), rc.clone());
                }
                // Tracing and request-id providers name Istio's own extensions or clusters.
                tc.remove("tracing");
                let filters = tc
                    .get_mut("http_filters")
                    .and_then(Value::as_array_mut)
                    .ok_or_else(|| anyhow!("{label}: no http_filters"))?;
                filters.retain(|f| !istio_only(f["name"].as_str().unwrap_or_default()));
                for f in filters.iter_mut() {
                    if f["config_discovery"].is_object() {
                        let name = f["name"].as_str().unwrap_or_default().to_owned();
                        let ec = dump
                            .ecds
                            .get(&name)
                            .ok_or_else(|| anyhow!("{label}: ECDS {name} not in the dump"))?;
                        let converted = agent::convert(ec, s.pod)?;
                        ecds_files += 1;
                        let path = agent::write_ecds_file(s.dir, ecds_files, &converted)?;
                        agent::discover_from_file(f, &path)?;
                    } else {
                        local_module_paths(f, s.pod);
                    }
                }
                if let Some(rc) = tc.get_mut("route_config") {
                    drop_istio_per_route_configs(rc);
                }
                listeners.push(Listener {
                    label: label.clone(),
                    route_config: hcm["typed_config"]["route_config"].clone(),
                });
                listener_json.push(json!({
                    "name": label,
                    "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
                    "filter_chains": [{ "filters": [hcm] }],
                }));
            }
        }
        let clusters = dump
            .clusters
            .iter()
            .map(|c| runnable_cluster(c, (s.address)(c["name"].as_str().unwrap_or_default())))
            .collect();
        // Envoy needs a node for file-based ECDS; the dump's is the proxy's own.
        let node = json!({
            "id": dump.node["id"].as_str().unwrap_or("sidecar~127.0.0.1~test.default~default.svc.cluster.local"),
            "cluster": dump.node["cluster"].as_str().unwrap_or("test"),
            "metadata": dump.node["metadata"],
        });
        Ok(Runnable {
            listeners,
            listener_json,
            clusters,
            node,
        })
    }

    /// The bootstrap with listeners on `ports` and admin on `admin`.
    pub fn bootstrap(&self, ports: &[u16], admin: u16) -> Value {
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
        json!({
            "node": self.node,
            "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin } } },
            "static_resources": { "listeners": listeners, "clusters": self.clusters },
        })
    }

    /// The index of the first listener whose label contains `part`.
    pub fn listener(&self, part: &str) -> anyhow::Result<usize> {
        self.listeners
            .iter()
            .position(|l| l.label.contains(part))
            .with_context(|| {
                let all: Vec<&str> = self.listeners.iter().map(|l| l.label.as_str()).collect();
                format!("no listener like {part}; there are {all:?}")
            })
    }
}

/// An inline Wasm filter's module path as the pod sees it, rewritten to the mounted file (or
/// left as it is when the pod lacks it: Envoy then refuses the listener, as in the pod).
fn local_module_paths(filter: &mut Value, pod: &Pod) {
    let ec = json!({ "name": filter["name"], "typed_config": filter["typed_config"] });
    if let Ok(converted) = agent::convert(&ec, pod) {
        if converted["typed_config"]["@type"] == filter["typed_config"]["@type"] {
            filter["typed_config"] = converted["typed_config"].clone();
        }
    }
}

fn drop_istio_per_route_configs(rc: &mut Value) {
    for vh in rc["virtual_hosts"].as_array_mut().into_iter().flatten() {
        if let Some(m) = vh["typed_per_filter_config"].as_object_mut() {
            m.retain(|k, _| !istio_only(k));
        }
        for r in vh["routes"].as_array_mut().into_iter().flatten() {
            if let Some(m) = r["typed_per_filter_config"].as_object_mut() {
                m.retain(|k, _| !istio_only(k));
            }
        }
    }
}
