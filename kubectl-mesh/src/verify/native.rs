//! The native side of `verify`: the ORIGINAL Envoy config, changed only where a
//! local run needs it, every change listed (local ports, echo upstreams, v2 names Envoy 1.40
//! refuses, TLS and what the import said it does not carry), plus route markers.

use crate::import::envoy::{http_filter_kind, HttpFilterKind};
use crate::import::{Imported, Scope};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Response header the native side adds on every route (`V.R`), so the runner knows which
/// original route answered; removed before comparing.
pub const MARKER: &str = "x-kubectl-mesh-verify-route";

/// The HTTP connection manager's v3 type.
const HCM_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// The changes applied, as `path: what and why` lines.
pub type Changes = Vec<String>;

fn v3_filter(kind: HttpFilterKind) -> Option<(&'static str, &'static str)> {
    Some(match kind {
        HttpFilterKind::Router => (
            "envoy.filters.http.router",
            "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
        ),
        HttpFilterKind::Cors => (
            "envoy.filters.http.cors",
            "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors",
        ),
        HttpFilterKind::GrpcWeb => (
            "envoy.filters.http.grpc_web",
            "type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb",
        ),
        HttpFilterKind::Other => return None,
    })
}

/// v2 CORS fields Envoy 1.40 refuses, rewritten to their v3 equivalents in place.
fn upgrade_cors(policy: &mut Value, path: &str, changes: &mut Changes) {
    let Some(p) = policy.as_object_mut() else {
        return;
    };
    let mut matchers: Vec<Value> = p
        .get("allow_origin_string_match")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(list) = p.remove("allow_origin") {
        for o in list.as_array().into_iter().flatten() {
            matchers.push(json!({"exact": o}));
        }
        changes.push(format!(
            "{path}.allow_origin: v2 field, written as allow_origin_string_match exact matchers"
        ));
    }
    if let Some(list) = p.remove("allow_origin_regex") {
        for r in list.as_array().into_iter().flatten() {
            matchers.push(json!({"safe_regex": {"google_re2": {}, "regex": r}}));
        }
        changes.push(format!("{path}.allow_origin_regex: v2 field, written as allow_origin_string_match safe_regex matchers"));
    }
    if !matchers.is_empty() {
        p.insert("allow_origin_string_match".into(), Value::Array(matchers));
    }
    if let Some(e) = p.remove("enabled") {
        let on = e
            .as_bool()
            .or_else(|| e.get("value").and_then(Value::as_bool))
            .unwrap_or(true);
        p.insert(
            "filter_enabled".into(),
            json!({"default_value": {"numerator": if on { 100 } else { 0 }, "denominator": "HUNDRED"}}),
        );
        changes.push(format!(
            "{path}.enabled: v2 field, written as filter_enabled"
        ));
    }
}

/// Applies `f` to every route of every virtual host.
fn each_route(rc: &mut Value, mut f: impl FnMut(usize, usize, &mut Map<String, Value>)) {
    for (v, vh) in rc["virtual_hosts"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for (r, route) in vh["routes"]
            .as_array_mut()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(m) = route.as_object_mut() {
                f(v, r, m);
            }
        }
    }
}

/// The HTTP connection manager's config, upgraded from v2 where Envoy 1.40 refuses the v2 form,
/// with the filters the import did not carry removed and route markers added.
pub fn prepare_hcm(
    filter: &Value,
    imported: &Imported,
    base: &str,
    changes: &mut Changes,
) -> Value {
    let mut hcm = filter
        .get("typed_config")
        .or_else(|| filter.get("config"))
        .cloned()
        .unwrap_or(Value::Null);
    if filter.get("config").is_some() {
        changes.push(format!(
            "{base}.config: v2 untyped config, written as typed_config"
        ));
    }
    let ty = hcm
        .get("@type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if ty != HCM_TYPE {
        hcm["@type"] = HCM_TYPE.into();
        if !ty.is_empty() {
            changes.push(format!(
                "{base}.typed_config.@type: v2 type, written as the v3 type"
            ));
        }
    }
    let cfg = format!("{base}.typed_config");
    let obj = hcm.as_object_mut().map(std::mem::take).unwrap_or_default();
    let mut out = Map::new();
    for (k, v) in obj {
        match k.as_str() {
            // They point at clusters (collectors) that the local run does not have.
            "tracing" | "access_log" => changes.push(format!(
                "{cfg}.{k}: dropped (points at collector clusters; not behaviour)"
            )),
            _ => {
                out.insert(k, v);
            }
        }
    }
    let mut hcm = Value::Object(out);
    // HTTP filters: drop the ones the import did not carry, v3 names and types for the rest.
    let removed: Vec<usize> = imported
        .notes
        .iter()
        .filter_map(|n| match n.scope {
            Scope::HttpFilter { index } => Some(index),
            _ => None,
        })
        .collect();
    let mut removed_names = Vec::new();
    let mut filters = Vec::new();
    for (i, f) in hcm["http_filters"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let at = crate::import::notes::At::root(&f, "");
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if removed.contains(&i) {
            changes.push(format!(
                "{cfg}.http_filters[{i}] ({name}): removed, the import notes it as not carried"
            ));
            removed_names.push(name);
            continue;
        }
        let kind = http_filter_kind(&at);
        let has_type = f.get("typed_config").and_then(|t| t.get("@type")).is_some();
        match v3_filter(kind) {
            Some((v3name, v3type)) if !has_type || name != v3name => {
                changes.push(format!("{cfg}.http_filters[{i}] ({name}): v2 name or missing type, written as {v3name} with its v3 type"));
                filters.push(json!({"name": v3name, "typed_config": {"@type": v3type}}));
            }
            _ => filters.push(f),
        }
    }
    hcm["http_filters"] = Value::Array(filters);
    let rc = &mut hcm["route_config"];
    // v2 `per_filter_config` (untyped) is gone in v3; the configs it held were for filters
    // the import does not carry (they are removed above).
    let strip_pfc = |m: &mut Map<String, Value>, path: String, changes: &mut Changes| {
        if m.remove("per_filter_config").is_some() {
            changes.push(format!("{path}.per_filter_config: v2 untyped per-filter configs (for removed filters), dropped"));
        }
        if let Some(t) = m
            .get_mut("typed_per_filter_config")
            .and_then(Value::as_object_mut)
        {
            for name in &removed_names {
                if t.remove(name).is_some() {
                    changes.push(format!("{path}.typed_per_filter_config.{name}: config of a removed filter, dropped"));
                }
            }
        }
    };
    for (v, vh) in rc["virtual_hosts"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let vp = format!("{cfg}.route_config.virtual_hosts[{v}]");
        if let Some(c) = vh.get_mut("cors") {
            upgrade_cors(c, &format!("{vp}.cors"), changes);
        }
        if let Some(m) = vh.as_object_mut() {
            strip_pfc(m, vp, changes);
        }
    }
    each_route(rc, |v, r, route| {
        let rp = format!("{cfg}.route_config.virtual_hosts[{v}].routes[{r}]");
        if let Some(c) = route.get_mut("route").and_then(|a| a.get_mut("cors")) {
            upgrade_cors(c, &format!("{rp}.route.cors"), changes);
        }
        strip_pfc(route, rp, changes);
        let marker = json!({"header": {"key": MARKER, "value": format!("{v}.{r}")}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"});
        match route
            .get_mut("response_headers_to_add")
            .and_then(Value::as_array_mut)
        {
            Some(list) => list.push(marker),
            None => {
                route.insert("response_headers_to_add".into(), json!([marker]));
            }
        }
    });
    changes.push(format!("{cfg}.route_config: every route also adds the response header `{MARKER}: V.R` (removed before comparing)"));
    hcm
}

/// The native bootstrap: the imported listener only, on `port`; every cluster sent to its
/// echo upstream (`echo` by cluster name); admin on `admin`.
pub fn bootstrap(
    original: &Value,
    imported: &Imported,
    echo: &BTreeMap<String, u16>,
    port: u16,
    admin: u16,
    changes: &mut Changes,
) -> Value {
    let li = imported.listener;
    let listener = &original["static_resources"]["listeners"][li];
    let (ci, fi, filter) = listener["filter_chains"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .find_map(|(ci, chain)| {
            chain["filters"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .find_map(|(fi, f)| {
                    let at = crate::import::notes::At::root(f, "");
                    let hcm = f.get("typed_config").or_else(|| f.get("config")).is_some()
                        && (f["name"]
                            .as_str()
                            .unwrap_or_default()
                            .contains("http_connection_manager")
                            || crate::import::envoy::type_of(&at.get("typed_config"))
                                .ends_with("HttpConnectionManager"));
                    hcm.then(|| (ci, fi, f.clone()))
                })
        })
        .unwrap_or((0, 0, Value::Null));
    let base = format!("static_resources.listeners[{li}].filter_chains[{ci}].filters[{fi}]");
    let hcm = prepare_hcm(&filter, imported, &base, changes);
    changes.push(format!("static_resources.listeners: only listeners[{li}], on 127.0.0.1:PORT, its HTTP filter chain only (no TLS, listener filters or other network filters)"));
    let clusters: Vec<Value> = echo
        .iter()
        .map(|(name, p)| {
            json!({
                "name": name, "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}]}]}
            })
        })
        .collect();
    changes.push("static_resources.clusters: each one STATIC to its local echo upstream over HTTP/1.1 (no DNS, TLS, HTTP/2 or health checks)".into());
    changes.push("bootstrap: admin on 127.0.0.1:PORT; other bootstrap settings dropped".into());
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [{
                "name": "native",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]
            }],
            "clusters": clusters
        }
    })
}

/// The HCM fields the import notes as proxy settings ([`Scope::Proxy`]): both sides run them.
pub fn proxy_settings(original_hcm: &Value, imported: &Imported) -> Map<String, Value> {
    let mut out = Map::new();
    for n in &imported.notes {
        if n.scope != Scope::Proxy {
            continue;
        }
        if let Some(key) = n.path.rsplit('.').next() {
            if let Some(v) = original_hcm.get(key) {
                out.insert(key.to_owned(), v.clone());
            }
        }
    }
    out
}

/// The Ingress controller, played by an Envoy: one virtual host per Ingress host, each path to
/// the native Envoy (`envoy_port`) or to the service's echo upstream; hosts are matched without
/// port, as ingress-nginx does.
pub fn ingress_bootstrap(
    ing: &crate::import::ingress::Ingresses,
    envoy_service: &str,
    envoy_port: u16,
    echo: &BTreeMap<String, u16>,
    port: u16,
    admin: u16,
) -> Value {
    use crate::import::ingress::Port;
    let cluster_of = |svc: &str, p: &Port| -> String {
        if svc == envoy_service {
            "ingress-to-envoy".to_owned()
        } else {
            match p {
                Port::Number(n) => format!("{svc}:{n}"),
                Port::Name(n) => format!("{svc}:{n}"),
            }
        }
    };
    let mut vhosts = Vec::new();
    for (i, rule) in ing.rules.iter().enumerate() {
        let routes: Vec<Value> = rule
            .paths
            .iter()
            .map(|p| {
                let path = p.path.clone().unwrap_or_else(|| "/".into());
                let m = match p.path_type.as_deref() {
                    Some("Exact") => json!({"path": path}),
                    Some("Prefix") if path != "/" => json!({"path_separated_prefix": path.trim_end_matches('/')}),
                    _ => json!({"prefix": path}),
                };
                json!({"match": m, "route": {"cluster": cluster_of(&p.backend.service, &p.backend.port)}})
            })
            .collect();
        vhosts.push(json!({"name": format!("rule{i}"), "domains": [rule.host.clone().unwrap_or_else(|| "*".into())], "routes": routes}));
    }
    if let Some((b, _)) = &ing.default_backend {
        vhosts.push(json!({"name": "default", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster_of(&b.service, &b.port)}}]}));
    }
    let mut clusters: Vec<Value> = echo
        .iter()
        .map(|(name, p)| json!({"name": name, "type": "STATIC", "connect_timeout": "1s", "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}]}]}}))
        .collect();
    clusters.push(json!({"name": "ingress-to-envoy", "type": "STATIC", "connect_timeout": "1s", "load_assignment": {"cluster_name": "ingress-to-envoy", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": envoy_port}}}}]}]}}));
    json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                    "@type": HCM_TYPE,
                    "stat_prefix": "ingress",
                    "route_config": {"name": "ingress", "ignore_port_in_host_matching": true, "virtual_hosts": vhosts},
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]
                }}]}]
            }],
            "clusters": clusters
        }
    })
}
