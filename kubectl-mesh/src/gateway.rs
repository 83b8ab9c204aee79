//! Istio Gateway logic, pure: which Gateway serves which hosts to which VirtualServices, which
//! VirtualServices share the config's hosts, and which Gateway `enable` binds the hosts to.
//!
//! The rules follow Istio's `networking.istio.io/v1beta1` semantics: a server host is
//! `[NAMESPACE/]DNS` (`*/` any namespace, `./` the Gateway's own), `*` and `*.suffix` are
//! wildcards, a VirtualService's short gateway name means its own namespace, and an empty
//! Gateway selector selects every gateway workload.

use crate::names::{MANAGED_BY_LABEL, MANAGER};
use serde_json::Value;
use std::collections::BTreeMap;

/// `NAMESPACE/NAME` of an object.
pub fn object_ref(o: &Value) -> String {
    format!(
        "{}/{}",
        o["metadata"]["namespace"].as_str().unwrap_or_default(),
        o["metadata"]["name"].as_str().unwrap_or_default()
    )
}

/// True when the host pattern `pattern` (`*`, `*.example.com` or `api.example.com`) covers
/// `host`, which may itself be a wildcard (`*.example.com` covers `*.a.example.com`).
/// Case-insensitive, as DNS names are.
pub fn covers(pattern: &str, host: &str) -> bool {
    let (p, h) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
    if p == "*" || p == h {
        return true;
    }
    match p.strip_prefix("*.") {
        // A wildcard covers subdomains only, never its apex.
        Some(suffix) => h.len() > suffix.len() + 1 && h.ends_with(&format!(".{suffix}")),
        None => false,
    }
}

/// True when two host patterns share at least one name (either covers the other).
pub fn overlaps(a: &str, b: &str) -> bool {
    covers(a, b) || covers(b, a)
}

/// Whether a Gateway server host entry lets a VirtualService in `vs_namespace` bind `host`.
/// `entry` is `DNS`, `*/DNS`, `./DNS` (the Gateway's namespace) or `NAMESPACE/DNS`.
pub fn admits(entry: &str, gateway_namespace: &str, vs_namespace: &str, host: &str) -> bool {
    let (namespace, dns) = entry.split_once('/').unwrap_or(("*", entry));
    let namespace_ok = match namespace {
        "*" => true,
        "." => gateway_namespace == vs_namespace,
        ns => ns == vs_namespace,
    };
    namespace_ok && covers(dns, host)
}

/// Whether the Gateway's `spec.selector` selects workloads with these pod labels (every
/// selector label present with the same value; an empty selector selects all, as in Istio).
pub fn selects(gateway: &Value, labels: &BTreeMap<String, String>) -> bool {
    gateway["spec"]["selector"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| {
            v.as_str()
                .is_some_and(|v| labels.get(k).is_some_and(|l| l == v))
        })
}

/// How a request for a host must reach the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Listen {
    /// Plain HTTP on this port.
    Http(u16),
    /// HTTPS terminated by the gateway on this port.
    Https(u16),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Http(p) => write!(f, "HTTP port {p}"),
            Listen::Https(p) => write!(f, "HTTPS port {p}"),
        }
    }
}

/// Whether a Gateway server speaks `listen`: plain HTTP (HTTP, HTTP2, GRPC) on the port, or
/// HTTPS the gateway terminates (not a TLS passthrough, where Envoy never sees HTTP).
fn server_speaks(server: &Value, listen: Listen) -> bool {
    let port = server["port"]["number"].as_u64();
    let protocol = server["port"]["protocol"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_uppercase();
    let mode = server["tls"]["mode"].as_str().unwrap_or_default();
    match listen {
        Listen::Http(p) => {
            port == Some(u64::from(p)) && matches!(protocol.as_str(), "HTTP" | "HTTP2" | "GRPC")
        }
        Listen::Https(p) => {
            port == Some(u64::from(p))
                && protocol == "HTTPS"
                && !matches!(mode, "PASSTHROUGH" | "AUTO_PASSTHROUGH")
        }
    }
}

/// Whether `gateway` serves `host` on `listen` to a VirtualService in `vs_namespace`.
pub fn serves(gateway: &Value, host: &str, listen: Listen, vs_namespace: &str) -> bool {
    let gateway_namespace = gateway["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default();
    gateway["spec"]["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| server_speaks(s, listen))
        .flat_map(|s| s["hosts"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .any(|entry| admits(entry, gateway_namespace, vs_namespace, host))
}

/// Whether `host` is served by any server of `gateway`, whatever the port (for `check`).
pub fn serves_anywhere(gateway: &Value, host: &str, vs_namespace: &str) -> bool {
    let gateway_namespace = gateway["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default();
    gateway["spec"]["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["hosts"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .any(|entry| admits(entry, gateway_namespace, vs_namespace, host))
}

/// The Gateways (`NAMESPACE/NAME`) a VirtualService binds to: `spec.gateways` with short names
/// resolved in the VirtualService's namespace (and the old `NAME.NAMESPACE.svc...` form);
/// `mesh` (the sidecars) is left out.
pub fn bound_gateways(vs: &Value) -> Vec<String> {
    let ns = vs["metadata"]["namespace"].as_str().unwrap_or_default();
    vs["spec"]["gateways"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|g| *g != "mesh")
        .map(|g| match g.split_once('/') {
            Some(_) => g.to_owned(),
            None => match g.split('.').collect::<Vec<_>>().as_slice() {
                [name, namespace, ..] => format!("{namespace}/{name}"),
                _ => format!("{ns}/{g}"),
            },
        })
        .collect()
}

/// Where the config's hosts must be reachable: `--http-port`, plus `--https-port` with
/// `--tls-secret`.
pub fn required_listens(http_port: u16, https_port: Option<u16>) -> Vec<Listen> {
    let mut v = vec![Listen::Http(http_port)];
    v.extend(https_port.map(Listen::Https));
    v
}

/// Which Gateway the anchor VirtualService binds to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayChoice {
    /// An existing Gateway; `unserved` lists what it does not serve (only when it was chosen
    /// because creating another would conflict with its HTTPS servers).
    Existing {
        /// `NAMESPACE/NAME`.
        gateway: String,
        /// Hosts and listeners it does not serve.
        unserved: Vec<(String, Listen)>,
    },
    /// None serves them: kubectl-mesh creates its own.
    Create,
}

/// Chooses the Gateway for `hosts`. Candidates are the Gateways that select every gateway
/// workload (`workload_labels`: the pod template labels of each selected Deployment) and that
/// kubectl-mesh did not create (those go away with `disable`). The first candidate (by
/// `NAMESPACE/NAME`) serving every host on every listener of `listens` to a VirtualService in
/// `anchor_namespace` wins. Otherwise, if a candidate already serves one of the hosts with
/// HTTPS on the HTTPS port, it is chosen anyway: a second Gateway with the same host on the
/// same HTTPS port conflicts in Istio. Otherwise kubectl-mesh creates its own.
pub fn choose(
    gateways: &[Value],
    workload_labels: &[BTreeMap<String, String>],
    hosts: &[String],
    anchor_namespace: &str,
    listens: &[Listen],
) -> GatewayChoice {
    let mut candidates: Vec<&Value> = gateways
        .iter()
        .filter(|g| g["metadata"]["labels"][MANAGED_BY_LABEL] != MANAGER)
        .filter(|g| workload_labels.iter().all(|l| selects(g, l)))
        .collect();
    candidates.sort_by_key(|g| object_ref(g));
    let unserved = |g: &Value| -> Vec<(String, Listen)> {
        listens
            .iter()
            .flat_map(|l| hosts.iter().map(move |h| (h.clone(), *l)))
            .filter(|(h, l)| !serves(g, h, *l, anchor_namespace))
            .collect()
    };
    if let Some(g) = candidates.iter().find(|g| unserved(g).is_empty()) {
        return GatewayChoice::Existing {
            gateway: object_ref(g),
            unserved: Vec::new(),
        };
    }
    let https: Vec<Listen> = listens
        .iter()
        .copied()
        .filter(|l| matches!(l, Listen::Https(_)))
        .collect();
    let conflicting = candidates
        .iter()
        .filter(|g| {
            https
                .iter()
                .any(|l| hosts.iter().any(|h| serves(g, h, *l, anchor_namespace)))
        })
        // The one serving the most; `min_by_key` keeps the first (by name) among equals.
        .min_by_key(|g| unserved(g).len());
    match conflicting {
        Some(g) => GatewayChoice::Existing {
            gateway: object_ref(g),
            unserved: unserved(g),
        },
        None => GatewayChoice::Create,
    }
}

/// Where a VirtualService other than the anchor also claims the config's hosts on a Gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// The VirtualService, `NAMESPACE/NAME`.
    pub virtual_service: String,
    /// Its hosts that share names with the config's.
    pub hosts: Vec<String>,
    /// Whether any of its HTTP routes sets `corsPolicy` (Istio's CORS filter still applies it).
    pub cors: bool,
    /// Whether any of its HTTP routes sets `fault` (Istio's fault filter still applies it).
    pub fault: bool,
}

/// The VirtualServices bound to `gateway` (`NAMESPACE/NAME`) whose hosts share names with
/// `hosts`, leaving out `anchor` (`NAMESPACE/NAME`, kubectl-mesh's own).
pub fn overlaps_on(
    virtual_services: &[Value],
    gateway: &str,
    hosts: &[String],
    anchor: &str,
) -> Vec<Overlap> {
    let mut out: Vec<Overlap> = virtual_services
        .iter()
        .filter(|vs| object_ref(vs) != anchor)
        .filter(|vs| bound_gateways(vs).iter().any(|g| g == gateway))
        .filter_map(|vs| {
            let shared: Vec<String> = vs["spec"]["hosts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|h| hosts.iter().any(|c| overlaps(h, c)))
                .map(str::to_owned)
                .collect();
            let routes = || vs["spec"]["http"].as_array().into_iter().flatten();
            (!shared.is_empty()).then(|| Overlap {
                virtual_service: object_ref(vs),
                hosts: shared,
                cors: routes().any(|r| r.get("corsPolicy").is_some_and(|c| !c.is_null())),
                fault: routes().any(|r| r.get("fault").is_some_and(|f| !f.is_null())),
            })
        })
        .collect();
    out.sort_by(|a, b| a.virtual_service.cmp(&b.virtual_service));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn gateway(ns: &str, name: &str, selector: Value, servers: Value) -> Value {
        json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "Gateway",
            "metadata": { "namespace": ns, "name": name },
            "spec": { "selector": selector, "servers": servers },
        })
    }

    fn http(port: u16, hosts: &[&str]) -> Value {
        json!({ "port": { "number": port, "name": "http", "protocol": "HTTP" }, "hosts": hosts })
    }

    fn https(port: u16, hosts: &[&str]) -> Value {
        json!({
            "port": { "number": port, "name": "https", "protocol": "HTTPS" },
            "tls": { "mode": "SIMPLE", "credentialName": "cert" }, "hosts": hosts,
        })
    }

    fn hosts() -> Vec<String> {
        vec!["api.backend.com".into(), "web.backend.com".into()]
    }

    fn ingress() -> Vec<BTreeMap<String, String>> {
        vec![labels(&[
            ("istio", "ingressgateway"),
            ("app", "istio-ingressgateway"),
        ])]
    }

    #[test]
    fn host_patterns() {
        assert!(covers("*", "api.backend.com"));
        assert!(covers("API.backend.com", "api.BACKEND.com"));
        assert!(covers("*.backend.com", "api.backend.com"));
        assert!(covers("*.backend.com", "*.eu.backend.com"));
        assert!(!covers("*.backend.com", "backend.com"), "not the apex");
        assert!(!covers("*.backend.com", "api.backend.com.evil"));
        assert!(!covers("*.backend.com", "xbackend.com"));
        assert!(!covers("api.backend.com", "*.backend.com"));
        assert!(!covers("*.backend.com", "*"));
        assert!(overlaps("api.backend.com", "*.backend.com"));
        assert!(!overlaps("api.backend.com", "web.backend.com"));
    }

    #[test]
    fn server_host_namespaces() {
        assert!(admits("api.backend.com", "gw", "other", "api.backend.com"));
        assert!(admits(
            "*/api.backend.com",
            "gw",
            "other",
            "api.backend.com"
        ));
        assert!(admits("./api.backend.com", "gw", "gw", "api.backend.com"));
        assert!(!admits(
            "./api.backend.com",
            "gw",
            "other",
            "api.backend.com"
        ));
        assert!(admits("other/*", "gw", "other", "api.backend.com"));
        assert!(!admits("apps/*", "gw", "other", "api.backend.com"));
    }

    #[test]
    fn selector_is_a_subset_of_the_pod_labels() {
        let g = |sel: Value| gateway("istio-system", "g", sel, json!([]));
        let pods = &ingress()[0];
        assert!(selects(&g(json!({ "istio": "ingressgateway" })), pods));
        assert!(selects(&g(json!({})), pods), "empty selects all");
        assert!(!selects(&g(json!({ "istio": "egressgateway" })), pods));
        assert!(!selects(
            &g(json!({ "istio": "ingressgateway", "zone": "a" })),
            pods
        ));
    }

    #[test]
    fn an_existing_gateway_serving_every_host_is_used() {
        let gws = [
            gateway(
                "istio-system",
                "partial",
                json!({ "istio": "ingressgateway" }),
                json!([http(80, &["api.backend.com"])]),
            ),
            gateway(
                "istio-system",
                "public",
                json!({ "istio": "ingressgateway" }),
                json!([http(80, &["*.backend.com"])]),
            ),
        ];
        let choice = choose(
            &gws,
            &ingress(),
            &hosts(),
            "istio-system",
            &required_listens(80, None),
        );
        assert_eq!(
            choice,
            GatewayChoice::Existing {
                gateway: "istio-system/public".into(),
                unserved: vec![]
            }
        );
    }

    #[test]
    fn gateways_that_do_not_fit_are_not_used() {
        let listens = required_listens(80, None);
        let choose1 = |g: Value| choose(&[g], &ingress(), &hosts(), "istio-system", &listens);
        let sel = json!({ "istio": "ingressgateway" });
        // Another workload, another port, a namespace restriction, a passthrough, only one
        // host, or one kubectl-mesh created: all create.
        for g in [
            gateway(
                "a",
                "other-pods",
                json!({ "istio": "eastwest" }),
                json!([http(80, &["*"])]),
            ),
            gateway("a", "port", sel.clone(), json!([http(8080, &["*"])])),
            gateway("a", "ns", sel.clone(), json!([http(80, &["apps/*"])])),
            gateway("a", "dot", sel.clone(), json!([http(80, &["./*"])])),
            gateway(
                "a",
                "one",
                sel.clone(),
                json!([http(80, &["api.backend.com"])]),
            ),
            gateway(
                "a",
                "tcp",
                sel.clone(),
                json!([{ "port": { "number": 80, "protocol": "TCP" }, "hosts": ["*"] }]),
            ),
        ] {
            assert_eq!(choose1(g.clone()), GatewayChoice::Create, "{g}");
        }
        let mut ours = gateway(
            "istio-system",
            "kubectl-mesh",
            sel.clone(),
            json!([http(80, &["*"])]),
        );
        ours["metadata"]["labels"] = json!({ MANAGED_BY_LABEL: MANAGER });
        assert_eq!(choose1(ours), GatewayChoice::Create, "never its own");
        // `./` admits the anchor when the Gateway lives in the anchor's namespace.
        let here = gateway("istio-system", "here", sel, json!([http(80, &["./*"])]));
        assert!(matches!(choose1(here), GatewayChoice::Existing { .. }));
    }

    #[test]
    fn tls_needs_the_https_server_too_and_an_https_host_is_never_duplicated() {
        let sel = json!({ "istio": "ingressgateway" });
        let listens = required_listens(80, Some(443));
        let http_only = gateway("a", "http-only", sel.clone(), json!([http(80, &["*"])]));
        assert_eq!(
            choose(
                std::slice::from_ref(&http_only),
                &ingress(),
                &hosts(),
                "istio-system",
                &listens
            ),
            GatewayChoice::Create
        );
        let both = gateway(
            "a",
            "both",
            sel.clone(),
            json!([http(80, &["*"]), https(443, &["*.backend.com"])]),
        );
        assert_eq!(
            choose(
                &[http_only.clone(), both],
                &ingress(),
                &hosts(),
                "istio-system",
                &listens
            ),
            GatewayChoice::Existing {
                gateway: "a/both".into(),
                unserved: vec![]
            }
        );
        // A Gateway terminating TLS for api.backend.com on 443: a second one would conflict,
        // so it is used, and what it lacks is reported.
        let api_tls = gateway(
            "a",
            "api-tls",
            sel,
            json!([https(443, &["api.backend.com"])]),
        );
        assert_eq!(
            choose(
                &[http_only, api_tls],
                &ingress(),
                &hosts(),
                "istio-system",
                &listens
            ),
            GatewayChoice::Existing {
                gateway: "a/api-tls".into(),
                unserved: vec![
                    ("api.backend.com".into(), Listen::Http(80)),
                    ("web.backend.com".into(), Listen::Http(80)),
                    ("web.backend.com".into(), Listen::Https(443)),
                ],
            }
        );
    }

    #[test]
    fn overlapping_virtual_services_on_the_gateway() {
        let vs = |ns: &str, name: &str, gateways: Value, hosts: Value, http: Value| {
            json!({
                "metadata": { "namespace": ns, "name": name },
                "spec": { "gateways": gateways, "hosts": hosts, "http": http },
            })
        };
        let all = [
            vs(
                "istio-system",
                "kubectl-mesh",
                json!(["istio-system/kubectl-mesh"]),
                json!(["api.backend.com"]),
                json!([]),
            ),
            vs(
                "digimon",
                "legacy",
                json!(["istio-system/kubectl-mesh"]),
                json!(["api.backend.com", "other.com"]),
                json!([{ "corsPolicy": { "allowOrigins": [] } }]),
            ),
            vs(
                "istio-system",
                "short",
                json!(["kubectl-mesh"]),
                json!(["*.backend.com"]),
                json!([{ "fault": { "abort": {} } }]),
            ),
            vs(
                "digimon",
                "short-elsewhere",
                json!(["kubectl-mesh"]),
                json!(["api.backend.com"]),
                json!([]),
            ),
            vs(
                "digimon",
                "fqdn",
                json!(["kubectl-mesh.istio-system.svc.cluster.local"]),
                json!(["web.backend.com"]),
                json!([]),
            ),
            vs(
                "digimon",
                "mesh-only",
                json!(["mesh"]),
                json!(["api.backend.com"]),
                json!([]),
            ),
            vs(
                "digimon",
                "no-gateways",
                Value::Null,
                json!(["api.backend.com"]),
                json!([]),
            ),
            vs(
                "digimon",
                "other-host",
                json!(["istio-system/kubectl-mesh"]),
                json!(["shop.com"]),
                json!([]),
            ),
        ];
        let found = overlaps_on(
            &all,
            "istio-system/kubectl-mesh",
            &hosts(),
            "istio-system/kubectl-mesh",
        );
        let names: Vec<&str> = found.iter().map(|o| o.virtual_service.as_str()).collect();
        assert_eq!(
            names,
            ["digimon/fqdn", "digimon/legacy", "istio-system/short"]
        );
        assert_eq!(found[1].hosts, ["api.backend.com"]);
        assert!(found[1].cors && !found[1].fault);
        assert!(found[2].fault && !found[2].cors);
    }
}
