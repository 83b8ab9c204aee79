//! Istio's EnvoyFilter semantics, for the operations kubectl-mesh renders: which proxies
//! (`match.proxy.proxyVersion`), listeners, filter chains, filters, route configurations,
//! virtual hosts, routes and clusters a patch matches, and what `MERGE`, `INSERT_BEFORE` and
//! `INSERT_FIRST` do there (after istiod's `pilot/pkg/networking/core/envoyfilter` and
//! `pilot/pkg/model/envoyfilter.go`). Any other operation or match field is an error: a patch
//! this code cannot apply faithfully is an error, never skipped.

use super::dump::{Proxy, ProxyKind};
use super::IstioError;
use serde_json::{Map, Value};

/// What went wrong in one patch (the caller adds which patch).
type Step<T> = Result<T, String>;

fn at_patch(i: usize) -> impl Fn(String) -> IstioError {
    move |message| IstioError::Patch { patch: i, message }
}

/// How many places each patch changed, in patch order, and which patches did not apply to
/// this proxy at all (their `match.proxy.proxyVersion` leaves its Istio version out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied(pub Vec<usize>, pub Vec<bool>);

impl Applied {
    /// Whether patch `i` was for another proxy version.
    pub fn gated_out(&self, i: usize) -> bool {
        self.1.get(i).copied().unwrap_or(false)
    }
}

/// The (applyTo, operation) pairs kubectl-mesh renders and this harness implements.
const SUPPORTED: &[(&str, &str)] = &[
    ("NETWORK_FILTER", "MERGE"),
    ("HTTP_FILTER", "INSERT_BEFORE"),
    ("HTTP_FILTER", "INSERT_FIRST"),
    ("HTTP_FILTER", "MERGE"),
    ("HTTP_ROUTE", "INSERT_FIRST"),
    ("HTTP_ROUTE", "MERGE"),
    ("CLUSTER", "MERGE"),
];

/// Whether `p` is for a proxy of Istio version `version`: istiod matches
/// `match.proxy.proxyVersion` as a regular expression against it, and a proxy without a
/// version matches no such patch.
fn proxy_matches(p: &Value, version: Option<&str>) -> Step<bool> {
    let pm = &p["match"]["proxy"];
    only_keys(pm, &["proxyVersion"], "match.proxy")?;
    let Some(re) = pm["proxyVersion"].as_str() else {
        return Ok(true);
    };
    let rx = regex_lite::Regex::new(re).map_err(|e| format!("proxyVersion {re:?}: {e}"))?;
    Ok(version.is_some_and(|v| rx.is_match(v)))
}

/// Applies `patches` (EnvoyFilter `configPatches`, in order) to `proxy`, in the order istiod
/// applies them: listener patches (network filters, then HTTP filters) when it builds
/// listeners, route patches when it builds route configurations, cluster patches when it
/// builds clusters. Patches for other proxy versions are left out.
pub fn apply(proxy: &mut Proxy, patches: &[Value]) -> Result<Applied, IstioError> {
    let mut counts = vec![0; patches.len()];
    let mut gated = vec![false; patches.len()];
    for (i, p) in patches.iter().enumerate() {
        let key = (str_of(p, "applyTo"), str_of(&p["patch"], "operation"));
        if !SUPPORTED.contains(&key) {
            return Err(at_patch(i)(format!(
                "{} {} is not an operation this implements (kubectl-mesh does not render it)",
                key.0, key.1
            )));
        }
        gated[i] = !proxy_matches(p, proxy.istio_version.as_deref()).map_err(at_patch(i))?;
    }
    for (i, p) in patches.iter().enumerate() {
        if str_of(p, "applyTo") != "CLUSTER" || gated[i] {
            continue;
        }
        for c in &mut proxy.clusters {
            counts[i] += patch_cluster(c, proxy.kind, p).map_err(at_patch(i))?;
        }
    }
    for apply_to in ["NETWORK_FILTER", "HTTP_FILTER"] {
        for (i, p) in patches.iter().enumerate() {
            if str_of(p, "applyTo") != apply_to || gated[i] {
                continue;
            }
            let ctx: Vec<&'static str> = proxy
                .listeners
                .iter()
                .map(|l| proxy.listener_context(l))
                .collect();
            for (l, ctx) in proxy.listeners.iter_mut().zip(ctx) {
                counts[i] += patch_listener(l, ctx, p).map_err(at_patch(i))?;
            }
        }
    }
    for (i, p) in patches.iter().enumerate() {
        if str_of(p, "applyTo") != "HTTP_ROUTE" || gated[i] {
            continue;
        }
        let rds_ctx = proxy.rds_context();
        for rc in proxy.routes.values_mut() {
            counts[i] += patch_route_config(rc, rds_ctx, p).map_err(at_patch(i))?;
        }
        // Inline route configurations (the sidecar's inbound listener) are patched in their
        // listener's context.
        let ctx: Vec<&'static str> = proxy
            .listeners
            .iter()
            .map(|l| proxy.listener_context(l))
            .collect();
        for (l, ctx) in proxy.listeners.iter_mut().zip(ctx) {
            for hcm in hcms(l) {
                if let Some(rc) = hcm.get_mut("route_config") {
                    counts[i] += patch_route_config(rc, ctx, p).map_err(at_patch(i))?;
                }
            }
        }
    }
    Ok(Applied(counts, gated))
}

/// A cluster's `(direction, port, subset, host)` from istiod's name
/// (`outbound|6000||server.digimon.svc.cluster.local`).
fn cluster_parts(name: &str) -> Option<(&str, u64, &str, &str)> {
    let mut parts = name.split('|');
    let direction = parts.next()?;
    let port = parts.next()?.parse().ok()?;
    Some((direction, port, parts.next()?, parts.next()?))
}

fn patch_cluster(c: &mut Value, kind: ProxyKind, p: &Value) -> Step<usize> {
    let m = &p["match"];
    only_keys(m, &["context", "cluster", "proxy"], "match")?;
    let cm = &m["cluster"];
    only_keys(cm, &["name", "service", "portNumber"], "match.cluster")?;
    let name = str_of(c, "name");
    let parts = cluster_parts(name);
    // A gateway's clusters are all in the GATEWAY context; a sidecar's by direction.
    let context = match (kind, parts.map(|p| p.0)) {
        (ProxyKind::Gateway, _) => "GATEWAY",
        (ProxyKind::Sidecar, Some("inbound")) => "SIDECAR_INBOUND",
        (ProxyKind::Sidecar, _) => "SIDECAR_OUTBOUND",
    };
    if !context_matches(m, context) {
        return Ok(0);
    }
    if cm["name"].is_string() && cm["name"] != name {
        return Ok(0);
    }
    if let Some(port) = cm["portNumber"].as_u64() {
        if parts.map(|p| p.1) != Some(port) {
            return Ok(0);
        }
    }
    if let Some(service) = cm["service"].as_str() {
        if parts.map(|p| p.3) != Some(service) {
            return Ok(0);
        }
    }
    merge_message(c, &p["patch"]["value"]);
    Ok(1)
}

/// [`merge`] for a message with map fields: protobuf merge replaces a map entry whole (the
/// cluster's `typed_extension_protocol_options` entries).
fn merge_message(dst: &mut Value, src: &Value) {
    let maps = ["typed_extension_protocol_options", "metadata"];
    if let (Value::Object(d), Value::Object(s)) = (&mut *dst, src) {
        for (k, v) in s {
            match (maps.contains(&k.as_str()), d.get_mut(k), v) {
                (true, Some(Value::Object(entries)), Value::Object(new)) => {
                    for (ek, ev) in new {
                        entries.insert(ek.clone(), ev.clone());
                    }
                }
                (_, Some(existing), _) => merge(existing, v),
                (_, None, _) => {
                    d.insert(k.clone(), v.clone());
                }
            }
        }
    } else {
        merge(dst, src);
    }
}

/// The HTTP filters istiod puts after the WasmPlugins/TrafficExtensions (which come right
/// after its authentication and authorization filters), in `listener_builder.go`'s order.
const AFTER_PLUGINS: [&str; 7] = [
    "envoy.filters.http.grpc_web",
    "envoy.filters.http.grpc_stats",
    "istio.alpn",
    "envoy.filters.http.fault",
    "envoy.filters.http.cors",
    "istio.stats",
    ROUTER,
];

/// Inserts `filter` in every HTTP connection manager of `context` where istiod places a
/// WasmPlugin/TrafficExtension without a phase: before the first of [`AFTER_PLUGINS`], so
/// before Istio's gRPC-Web, fault and CORS filters (which then see the route the filter chose).
pub fn place_plugin(proxy: &mut Proxy, context: &str, filter: &Value) -> usize {
    let ctx: Vec<&'static str> = proxy
        .listeners
        .iter()
        .map(|l| proxy.listener_context(l))
        .collect();
    let mut n = 0;
    for (l, c) in proxy.listeners.iter_mut().zip(ctx) {
        if c != context {
            continue;
        }
        for hcm in hcms(l) {
            if let Some(filters) = hcm.get_mut("http_filters").and_then(Value::as_array_mut) {
                let after = |f: &Value| AFTER_PLUGINS.iter().any(|a| f["name"] == *a);
                if let Some(at) = filters.iter().position(after) {
                    filters.insert(at, filter.clone());
                    n += 1;
                }
            }
        }
    }
    n
}

const ROUTER: &str = "envoy.filters.http.router";
const HCM: &str = "envoy.filters.network.http_connection_manager";

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

/// Fails on match fields the harness does not implement, so none is silently ignored.
fn only_keys(v: &Value, allowed: &[&str], what: &str) -> Step<()> {
    for k in v.as_object().into_iter().flat_map(Map::keys) {
        if !allowed.contains(&k.as_str()) {
            return Err(format!("{what}.{k} is not implemented"));
        }
    }
    Ok(())
}

fn context_matches(m: &Value, context: &str) -> bool {
    matches!(m["context"].as_str(), None | Some("ANY")) || m["context"] == context
}

/// Every filter chain of a listener, including the default one.
fn chains(l: &mut Value) -> Vec<&mut Value> {
    let mut out: Vec<&mut Value> = Vec::new();
    let obj = match l.as_object_mut() {
        Some(o) => o,
        None => return out,
    };
    for (k, v) in obj.iter_mut() {
        match k.as_str() {
            "filter_chains" => out.extend(v.as_array_mut().into_iter().flatten()),
            "default_filter_chain" => out.push(v),
            _ => {}
        }
    }
    out
}

/// The HTTP connection managers' typed configs of a listener.
fn hcms(l: &mut Value) -> Vec<&mut Map<String, Value>> {
    chains(l)
        .into_iter()
        .flat_map(|c| c["filters"].as_array_mut().into_iter().flatten())
        .filter(|f| f["name"] == HCM)
        .filter_map(|f| f["typed_config"].as_object_mut())
        .collect()
}

fn patch_listener(l: &mut Value, context: &str, p: &Value) -> Step<usize> {
    let m = &p["match"];
    only_keys(m, &["context", "listener", "proxy"], "match")?;
    if !context_matches(m, context) {
        return Ok(0);
    }
    let lm = &m["listener"];
    only_keys(lm, &["name", "portNumber", "filterChain"], "match.listener")?;
    if lm["name"].is_string() && lm["name"] != l["name"] {
        return Ok(0);
    }
    if let Some(port) = lm["portNumber"].as_u64() {
        if l["address"]["socket_address"]["port_value"].as_u64() != Some(port) {
            return Ok(0);
        }
    }
    let fcm = &lm["filterChain"];
    only_keys(fcm, &["filter"], "match.listener.filterChain")?;
    let fm = &fcm["filter"];
    only_keys(
        fm,
        &["name", "subFilter"],
        "match.listener.filterChain.filter",
    )?;
    only_keys(
        &fm["subFilter"],
        &["name"],
        "match.listener.filterChain.filter.subFilter",
    )?;
    let value = &p["patch"]["value"];
    let mut n = 0;
    for chain in chains(l) {
        for f in chain["filters"].as_array_mut().into_iter().flatten() {
            if fm["name"].is_string() && fm["name"] != f["name"] {
                continue;
            }
            match (str_of(p, "applyTo"), str_of(&p["patch"], "operation")) {
                ("NETWORK_FILTER", "MERGE") => {
                    if fm["subFilter"].is_object() {
                        return Err("NETWORK_FILTER with a subFilter match".into());
                    }
                    merge(f, value);
                    n += 1;
                }
                ("HTTP_FILTER", "INSERT_FIRST") => {
                    if fm["subFilter"].is_object() {
                        return Err("INSERT_FIRST with a subFilter match is not implemented".into());
                    }
                    let Some(filters) = f["typed_config"]["http_filters"].as_array_mut() else {
                        continue;
                    };
                    filters.insert(0, value.clone());
                    n += 1;
                }
                // As istiod: the named HTTP filter's typed config merged with the patch's
                // (both the same type), its name replaced when the patch gives one.
                ("HTTP_FILTER", "MERGE") => {
                    let Some(sub) = fm["subFilter"]["name"].as_str() else {
                        return Err(
                            "HTTP_FILTER MERGE without a subFilter name is not implemented".into(),
                        );
                    };
                    let Some(filters) = f["typed_config"]["http_filters"].as_array_mut() else {
                        continue;
                    };
                    for h in filters.iter_mut().filter(|h| h["name"] == sub) {
                        if value["typed_config"]["@type"] != h["typed_config"]["@type"] {
                            return Err(format!(
                                "HTTP_FILTER MERGE of {sub}: the patch's type is not the filter's"
                            ));
                        }
                        merge(&mut h["typed_config"], &value["typed_config"]);
                        n += 1;
                    }
                }
                ("HTTP_FILTER", "INSERT_BEFORE") => {
                    let Some(sub) = fm["subFilter"]["name"].as_str() else {
                        return Err("INSERT_BEFORE without match.listener.filterChain.filter.subFilter.name is not implemented".into());
                    };
                    let Some(filters) = f["typed_config"]["http_filters"].as_array_mut() else {
                        continue;
                    };
                    if let Some(at) = filters.iter().position(|h| h["name"] == sub) {
                        filters.insert(at, value.clone());
                        n += 1;
                    }
                }
                (a, o) => return Err(format!("{a} {o} on a listener")),
            }
        }
    }
    Ok(n)
}

/// The port istiod encodes in a sidecar route configuration's name (`80`,
/// `inbound|8080||`, `svc.ns.svc.cluster.local:8080`).
fn route_port(name: &str) -> Option<u64> {
    if let Some(rest) = name.strip_prefix("inbound|") {
        return rest.split('|').next()?.parse().ok();
    }
    name.parse().ok()
}

fn patch_route_config(rc: &mut Value, context: &str, p: &Value) -> Step<usize> {
    let m = &p["match"];
    only_keys(m, &["context", "routeConfiguration", "proxy"], "match")?;
    if !context_matches(m, context) {
        return Ok(0);
    }
    let rm = &m["routeConfiguration"];
    only_keys(
        rm,
        &["name", "portNumber", "vhost"],
        "match.routeConfiguration",
    )?;
    let name = str_of(rc, "name");
    if rm["name"].is_string() && rm["name"] != name {
        return Ok(0);
    }
    if let Some(port) = rm["portNumber"].as_u64() {
        if context == "GATEWAY" {
            return Err("routeConfiguration.portNumber at a gateway is not implemented".into());
        }
        if route_port(name) != Some(port) {
            return Ok(0);
        }
    }
    let vm = &rm["vhost"];
    only_keys(vm, &["name", "route"], "match.routeConfiguration.vhost")?;
    only_keys(
        &vm["route"],
        &["name"],
        "match.routeConfiguration.vhost.route",
    )?;
    let value = &p["patch"]["value"];
    let op = str_of(&p["patch"], "operation");
    let mut n = 0;
    for vh in rc["virtual_hosts"].as_array_mut().into_iter().flatten() {
        if vm["name"].is_string() && vm["name"] != vh["name"] {
            continue;
        }
        let routes = match vh.get_mut("routes").and_then(Value::as_array_mut) {
            Some(r) => r,
            None => continue,
        };
        match op {
            // As istiod: merges into every matching route of the vhost.
            "MERGE" => {
                for r in routes.iter_mut() {
                    if vm["route"]["name"].is_string() && vm["route"]["name"] != r["name"] {
                        continue;
                    }
                    merge(r, value);
                    n += 1;
                }
            }
            // Without a route match, INSERT_FIRST puts the route first in the vhost.
            "INSERT_FIRST" if vm["route"].is_null() => {
                routes.insert(0, value.clone());
                n += 1;
            }
            _ => {
                return Err(format!(
                    "HTTP_ROUTE {op} with a route match is not implemented"
                ))
            }
        }
    }
    Ok(n)
}

/// istiod's merge (protobuf `Merge` on the JSON form): objects merge field by field, lists
/// are appended to, anything else is replaced.
pub fn merge(dst: &mut Value, src: &Value) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, v) in s {
                match d.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(d), Value::Array(s)) => d.extend(s.iter().cloned()),
        (d, s) => *d = s.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_is_protobuf_merge() {
        let mut d = json!({"a": {"b": 1, "l": [1]}, "s": "x"});
        merge(&mut d, &json!({"a": {"c": 2, "l": [2]}, "s": "y"}));
        assert_eq!(d, json!({"a": {"b": 1, "c": 2, "l": [1, 2]}, "s": "y"}));
    }

    #[test]
    fn route_ports_follow_istio_names() {
        assert_eq!(route_port("80"), Some(80));
        assert_eq!(route_port("inbound|8080||"), Some(8080));
        assert_eq!(route_port("svc.ns.svc.cluster.local:8080"), None);
    }
}
