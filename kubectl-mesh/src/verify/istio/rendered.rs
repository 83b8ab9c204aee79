//! What `enable` adds, applied to a proxy's config as Istio would: the anchor VirtualService
//! as istiod builds it at a gateway, the WasmPlugin/TrafficExtension filter where istiod places
//! it, then the EnvoyFilter patches with [`super::envoyfilter`]'s semantics. The module path in
//! the rendered objects is pointed at a local `.wasm`.
//!
//! The VirtualService step stands in for istiod (the one piece `verify --proxy-dump` cannot take
//! from a dump or from Envoy): the config's hosts get one virtual host on every route
//! configuration of the gateway, named `FIRST-HOST:PORT` with all of them as domains (istiod
//! collapses hosts whose routes are the same), routes with `case_sensitive` matches and
//! `outbound|PORT||FQDN` clusters; a host that already has a virtual host gets the routes
//! appended, as istiod merges VirtualServices on a gateway. tests/tests/istiod_verify.rs holds
//! it against istiod's own output.

use super::dump::{Proxy, ProxyKind};
use super::envoyfilter;
use super::IstioError;
use crate::envoy as builder;
use crate::names::{MODULE_DIR, MODULE_FILE};
use crate::options::Context;
use serde_json::{json, Value};

/// How many places each rendered patch changed, with the patch.
#[derive(Debug, Clone, Default)]
pub struct Landed {
    /// Each EnvoyFilter patch and the number of places it changed (0: it would do nothing).
    pub patches: Vec<(Value, usize)>,
    /// Per patch: it is for other proxy versions (`match.proxy.proxyVersion`), so it does
    /// nothing here by design.
    pub gated: Vec<bool>,
    /// Virtual hosts the VirtualService added or extended.
    pub virtual_hosts: usize,
    /// HTTP connection managers a WasmPlugin/TrafficExtension filter was placed in.
    pub plugins: usize,
}

fn kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// Points every module path in `v` at `wasm`.
fn local_module(v: &mut Value, wasm: &str) {
    let path = format!("{MODULE_DIR}/{MODULE_FILE}");
    match v {
        Value::String(s) if *s == path => *s = wasm.to_owned(),
        Value::Array(a) => a.iter_mut().for_each(|x| local_module(x, wasm)),
        Value::Object(m) => m.values_mut().for_each(|x| local_module(x, wasm)),
        _ => {}
    }
}

/// `base` with `objects` (what `kubectl mesh render` prints for `context`) applied, the module
/// read from `wasm`.
pub fn apply(
    base: &Proxy,
    objects: &[Value],
    context: Context,
    wasm: &str,
) -> Result<(Proxy, Landed), IstioError> {
    let mut p = base.clone();
    let mut landed = Landed::default();
    if let Some(vs) = kind(objects, "VirtualService").first() {
        if p.kind == ProxyKind::Gateway {
            let port = kind(objects, "Gateway")
                .first()
                .and_then(|g| g["spec"]["servers"][0]["port"]["number"].as_u64())
                .unwrap_or(80);
            landed.virtual_hosts = add_virtual_service(&mut p, vs, port)?;
        }
    }
    for plugin in kind(objects, "WasmPlugin")
        .into_iter()
        .chain(kind(objects, "TrafficExtension"))
    {
        let spec = &plugin["spec"];
        let wasm_spec = if spec["wasm"].is_object() {
            &spec["wasm"]
        } else {
            spec
        };
        // istiod hands pluginConfig to the filter as JSON text; the module comes from `url`.
        let filter = builder::http_filter(builder::plugin_config_json(
            &wasm_spec["pluginConfig"].to_string(),
            match wasm_spec["failStrategy"].as_str() {
                Some("FAIL_RELOAD") => builder::FailPolicy::Reload,
                Some("FAIL_OPEN") => builder::FailPolicy::LegacyOpen,
                _ => builder::FailPolicy::LegacyClosed,
            },
            builder::local_code(wasm),
        ));
        landed.plugins += envoyfilter::place_plugin(&mut p, context.istio(), &filter);
    }
    let mut patches: Vec<Value> = kind(objects, "EnvoyFilter")
        .into_iter()
        .flat_map(|f| {
            f["spec"]["configPatches"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    patches.iter_mut().for_each(|x| local_module(x, wasm));
    let applied = envoyfilter::apply(&mut p, &patches)?;
    landed.gated.clone_from(&applied.1);
    landed.patches = patches.into_iter().zip(applied.0).collect();
    Ok((p, landed))
}

/// Adds the virtual hosts of `vs` (a rendered VirtualService bound to a gateway whose HTTP
/// server listens on `port`) to every route configuration of the gateway `proxy`, as istiod
/// would. Returns how many virtual hosts were added or extended.
pub fn add_virtual_service(proxy: &mut Proxy, vs: &Value, port: u64) -> Result<usize, IstioError> {
    if proxy.kind != ProxyKind::Gateway {
        return Err(IstioError::Rendered(format!(
            "{}: VirtualServices bound to a gateway only reach gateways",
            proxy.name
        )));
    }
    let routes: Vec<Value> = vs["spec"]["http"]
        .as_array()
        .into_iter()
        .flatten()
        .map(http_route)
        .collect::<Result<_, _>>()?;
    let mut n = 0;
    for rc in proxy.routes.values_mut() {
        let Some(vhosts) = rc["virtual_hosts"].as_array_mut() else {
            continue;
        };
        // Hosts with a virtual host of their own (another VirtualService's) get the routes
        // appended; the others share one virtual host, as istiod collapses hosts whose routes
        // are the same (named after the first, all their domains).
        let mut fresh: Vec<&str> = Vec::new();
        for host in vs["spec"]["hosts"].as_array().into_iter().flatten() {
            let host = host.as_str().unwrap_or_default();
            let existing = vhosts.iter_mut().find(|v| {
                v["domains"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|x| x == host))
            });
            match existing {
                Some(v) => {
                    if let Some(r) = v["routes"].as_array_mut() {
                        r.extend(routes.iter().cloned());
                    }
                    n += 1;
                }
                None => fresh.push(host),
            }
        }
        if let Some(first) = fresh.first() {
            vhosts.push(json!({
                "name": format!("{first}:{port}"),
                "domains": fresh,
                "routes": routes,
                "include_request_attempt_count": true,
            }));
            n += 1;
        }
    }
    Ok(n)
}

fn http_route(h: &Value) -> Result<Value, IstioError> {
    let m = &h["match"][0]["uri"];
    let route_match = match (m["exact"].as_str(), m["prefix"].as_str()) {
        (Some(p), _) => json!({ "path": p, "case_sensitive": true }),
        (None, Some(p)) => json!({ "prefix": p, "case_sensitive": true }),
        _ => {
            return Err(IstioError::Rendered(
                "VirtualService: only uri exact/prefix matches are translated".into(),
            ))
        }
    };
    let d = &h["route"][0]["destination"];
    let (Some(host), Some(port)) = (d["host"].as_str(), d["port"]["number"].as_u64()) else {
        return Err(IstioError::Rendered(
            "VirtualService: a route destination needs host and port.number".into(),
        ));
    };
    Ok(json!({
        "name": h["name"],
        "match": route_match,
        "route": { "cluster": format!("outbound|{port}||{host}"), "timeout": "0s" },
    }))
}
