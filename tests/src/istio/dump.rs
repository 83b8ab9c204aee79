//! Istio config dumps (`/config_dump` JSON): the listeners and route configurations istiod
//! generated for one proxy, as [`Proxy`].

use anyhow::{anyhow, bail, Context as _};
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

impl Proxy {
    /// Loads a full dump (listeners and routes).
    pub fn load(path: &Path, kind: ProxyKind) -> anyhow::Result<Proxy> {
        let dump = read(path)?;
        let listeners = of_type(&dump, "ListenersConfigDump")
            .ok_or_else(|| anyhow!("{}: no ListenersConfigDump", path.display()))?;
        let listeners = listeners["dynamic_listeners"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["active_state"]["listener"].as_object())
            .map(|l| resource(&Value::Object(l.clone())))
            .collect();
        let stats_config = of_type(&dump, "BootstrapConfigDump")
            .map(|b| b["bootstrap"]["stats_config"].clone())
            .filter(|s| !s.is_null());
        Ok(Proxy {
            name: file_name(path),
            kind,
            listeners,
            routes: routes(&dump, path)?,
            stats_config,
        })
    }

    /// Loads a routes-only dump (Istio's own gateway route test data) and serves its route
    /// configurations through `template`'s HTTP listener (a gateway listener from a full dump),
    /// one listener per route configuration.
    pub fn routes_only(path: &Path, template: &Proxy) -> anyhow::Result<Proxy> {
        let dump = read(path)?;
        let routes = routes(&dump, path)?;
        let base = template
            .listeners
            .iter()
            .find(|l| rds_names(l).next().is_some())
            .ok_or_else(|| anyhow!("{}: no RDS listener to serve routes with", template.name))?;
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

fn read(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn routes(dump: &Value, path: &Path) -> anyhow::Result<BTreeMap<String, Value>> {
    let routes = of_type(dump, "RoutesConfigDump")
        .ok_or_else(|| anyhow!("{}: no RoutesConfigDump", path.display()))?;
    let mut out = BTreeMap::new();
    for r in routes["dynamic_route_configs"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let rc = resource(&r["route_config"]);
        let Some(name) = rc["name"].as_str() else {
            bail!(
                "{}: a dynamic route configuration without a name",
                path.display()
            );
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
