//! Istio config dumps (`/config_dump` JSON, as the admin port or `istioctl proxy-config all -o
//! json` give it): the listeners and route configurations istiod generated for one proxy, as
//! [`Proxy`].

use super::IstioError;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// What kind of proxy a dump comes from; it decides the EnvoyFilter context of each piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// An ingress gateway: everything is in the `GATEWAY` context.
    Gateway,
    /// A sidecar: outbound listeners and RDS routes are `SIDECAR_OUTBOUND`, the inbound
    /// listener and its inline routes `SIDECAR_INBOUND`.
    Sidecar,
}

/// The generated config of one proxy.
#[derive(Debug, Clone)]
pub struct Proxy {
    /// Fixture name, for messages.
    pub name: String,
    /// Gateway or sidecar.
    pub kind: ProxyKind,
    /// Listeners istiod sent (LDS), as Envoy `Listener` JSON.
    pub listeners: Vec<Value>,
    /// Route configurations istiod sent (RDS), by name.
    pub routes: BTreeMap<String, Value>,
    /// The bootstrap's `stats_config` (Istio's stats inclusion list), if the dump has one.
    pub stats_config: Option<Value>,
    /// Clusters istiod sent (CDS), as Envoy `Cluster` JSON.
    pub clusters: Vec<Value>,
    /// The proxy's `ISTIO_VERSION` (its bootstrap node's metadata), which EnvoyFilter
    /// `match.proxy.proxyVersion` is matched against.
    pub istio_version: Option<String>,
}

fn configs(dump: &Value) -> impl Iterator<Item = &Value> {
    dump["configs"].as_array().into_iter().flatten()
}

fn of_type<'a>(dump: &'a Value, suffix: &str) -> Option<&'a Value> {
    configs(dump).find(|c| {
        c["@type"]
            .as_str()
            .is_some_and(|t| t.rsplit('.').next() == Some(suffix))
    })
}

/// Strips the `@type` an admin dump puts on every top-level resource.
fn resource(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("@type");
    }
    v
}

fn dump_err(path: &Path, message: impl Into<String>) -> IstioError {
    IstioError::Dump {
        file: path.display().to_string(),
        message: message.into(),
    }
}

/// The kind of proxy a dump's bootstrap names (`router~...` for gateways, `sidecar~...`).
pub fn kind_of(dump: &Value) -> Option<ProxyKind> {
    let id = of_type(dump, "BootstrapConfigDump")?["bootstrap"]["node"]["id"].as_str()?;
    match id.split('~').next() {
        Some("router") => Some(ProxyKind::Gateway),
        Some("sidecar") => Some(ProxyKind::Sidecar),
        _ => None,
    }
}

impl Proxy {
    /// Loads a full dump (listeners and routes).
    pub fn load(path: &Path, kind: ProxyKind) -> Result<Proxy, IstioError> {
        let dump = read(path)?;
        Proxy::from_dump(path, &dump, kind)
    }

    /// A full dump already read (`path` names it in messages).
    pub fn from_dump(path: &Path, dump: &Value, kind: ProxyKind) -> Result<Proxy, IstioError> {
        let listeners = of_type(dump, "ListenersConfigDump")
            .ok_or_else(|| dump_err(path, "no ListenersConfigDump: not a full /config_dump (istioctl proxy-config all -o json, or the admin port's /config_dump)"))?;
        let listeners = listeners["dynamic_listeners"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["active_state"]["listener"].as_object())
            .map(|l| resource(&Value::Object(l.clone())))
            .collect();
        let stats_config = of_type(dump, "BootstrapConfigDump")
            .map(|b| b["bootstrap"]["stats_config"].clone())
            .filter(|s| !s.is_null());
        let istio_version = of_type(dump, "BootstrapConfigDump")
            .and_then(|b| b["bootstrap"]["node"]["metadata"]["ISTIO_VERSION"].as_str())
            .map(str::to_owned);
        let clusters = of_type(dump, "ClustersConfigDump")
            .into_iter()
            .flat_map(|c| ["static_clusters", "dynamic_active_clusters"].map(|k| &c[k]))
            .flat_map(|list| list.as_array().into_iter().flatten())
            .map(|c| resource(&c["cluster"]))
            .collect();
        Ok(Proxy {
            name: file_name(path),
            kind,
            listeners,
            routes: routes(dump, path)?,
            stats_config,
            clusters,
            istio_version,
        })
    }

    /// Loads a routes-only dump (Istio's own gateway route test data) and serves its route
    /// configurations through `template`'s HTTP listener (a gateway listener from a full dump),
    /// one listener per route configuration.
    pub fn routes_only(path: &Path, template: &Proxy) -> Result<Proxy, IstioError> {
        let dump = read(path)?;
        let routes = routes(&dump, path)?;
        let base = template
            .listeners
            .iter()
            .find(|l| rds_names(l).next().is_some())
            .ok_or_else(|| {
                dump_err(
                    Path::new(&template.name),
                    "no RDS listener to serve routes with",
                )
            })?;
        let mut listeners = Vec::new();
        for name in routes.keys() {
            let mut l = base.clone();
            l["name"] = Value::String(format!("gateway-for-{name}"));
            for chain in l["filter_chains"].as_array_mut().into_iter().flatten() {
                for f in chain["filters"].as_array_mut().into_iter().flatten() {
                    if f["typed_config"]["rds"].is_object() {
                        f["typed_config"]["rds"]["route_config_name"] = Value::String(name.clone());
                    }
                }
            }
            listeners.push(l);
        }
        Ok(Proxy {
            name: file_name(path),
            kind: ProxyKind::Gateway,
            listeners,
            routes,
            stats_config: template.stats_config.clone(),
            clusters: template.clusters.clone(),
            istio_version: template.istio_version.clone(),
        })
    }

    /// The EnvoyFilter context of a listener of this proxy.
    pub fn listener_context(&self, listener: &Value) -> &'static str {
        match (self.kind, listener["traffic_direction"].as_str()) {
            (ProxyKind::Gateway, _) => "GATEWAY",
            (ProxyKind::Sidecar, Some("INBOUND")) => "SIDECAR_INBOUND",
            (ProxyKind::Sidecar, _) => "SIDECAR_OUTBOUND",
        }
    }

    /// The EnvoyFilter context of the RDS route configurations (inbound routes are inline).
    pub fn rds_context(&self) -> &'static str {
        match self.kind {
            ProxyKind::Gateway => "GATEWAY",
            ProxyKind::Sidecar => "SIDECAR_OUTBOUND",
        }
    }
}

/// Reads a dump file.
pub fn read(path: &Path) -> Result<Value, IstioError> {
    let text = std::fs::read_to_string(path).map_err(|e| dump_err(path, e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| dump_err(path, format!("not JSON: {e}")))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn routes(dump: &Value, path: &Path) -> Result<BTreeMap<String, Value>, IstioError> {
    let routes =
        of_type(dump, "RoutesConfigDump").ok_or_else(|| dump_err(path, "no RoutesConfigDump"))?;
    let mut out = BTreeMap::new();
    for r in routes["dynamic_route_configs"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let rc = resource(&r["route_config"]);
        let Some(name) = rc["name"].as_str() else {
            return Err(dump_err(
                path,
                "a dynamic route configuration without a name",
            ));
        };
        out.insert(name.to_owned(), rc);
    }
    Ok(out)
}

/// The RDS route configuration names a listener's HTTP connection managers use.
pub fn rds_names(listener: &Value) -> impl Iterator<Item = &str> {
    listener["filter_chains"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["filters"].as_array().into_iter().flatten())
        .filter_map(|f| f["typed_config"]["rds"]["route_config_name"].as_str())
}
