//! Ingress rules (extensions/v1beta1, networking.k8s.io/v1beta1 and v1) as the hosts in front of
//! the Envoy: rules whose backend is the Envoy's Service get the Envoy's virtual host for that
//! name; rules to other services become plain routes.

use super::notes::{At, Notes, Scope};
use super::routes::ImportedHost;
use super::ImportError;
use mesh_core::config::{HostConfig, RouteConfig, RouteMatch, Target};
use serde_json::Value;

/// Ingress apiVersions read.
pub const VERSIONS: &[&str] = &[
    "extensions/v1beta1",
    "networking.k8s.io/v1beta1",
    "networking.k8s.io/v1",
];

/// A backend service port: a number or a port name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Port {
    /// `servicePort: 8080` / `port.number`.
    Number(u16),
    /// `servicePort: http` / `port.name`.
    Name(String),
}

/// A backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Service name.
    pub service: String,
    /// Service port.
    pub port: Port,
}

/// One `http.paths[]` entry.
#[derive(Debug, Clone)]
pub struct PathRule {
    /// `path` (absent: every path).
    pub path: Option<String>,
    /// `pathType` (absent in v1beta1: the controller's choice, prefix for ingress-nginx).
    pub path_type: Option<String>,
    /// Where it goes.
    pub backend: Backend,
    /// Its location in the file, for notes.
    pub at: String,
}

/// One rule: a host (absent: every host) and its paths.
#[derive(Debug, Clone)]
pub struct Rule {
    /// `host`.
    pub host: Option<String>,
    /// The paths.
    pub paths: Vec<PathRule>,
    /// Its location in the file, for notes.
    pub at: String,
}

/// Everything read from the Ingress file.
#[derive(Debug, Clone, Default)]
pub struct Ingresses {
    /// `metadata.namespace` of the first Ingress that has one.
    pub namespace: Option<String>,
    /// Every rule of every Ingress, in file order.
    pub rules: Vec<Rule>,
    /// `spec.backend` / `spec.defaultBackend`, with its location.
    pub default_backend: Option<(Backend, String)>,
}

fn backend(at: &At<'_>) -> Option<Backend> {
    if let Some(name) = at.get("serviceName").str() {
        let p = at.get("servicePort");
        let port = match (p.v.as_u64(), p.str()) {
            (Some(n), _) => Port::Number(u16::try_from(n).ok()?),
            (None, Some(s)) => match s.parse::<u16>() {
                Ok(n) => Port::Number(n),
                Err(_) => Port::Name(s.to_owned()),
            },
            _ => return None,
        };
        return Some(Backend {
            service: name.to_owned(),
            port,
        });
    }
    let svc = at.get("service");
    let name = svc.get("name").str()?;
    let p = svc.get("port");
    let port = match (p.get("number").uint(), p.get("name").str()) {
        (Some(n), _) => Port::Number(u16::try_from(n).ok()?),
        (None, Some(s)) => Port::Name(s.to_owned()),
        _ => return None,
    };
    Some(Backend {
        service: name.to_owned(),
        port,
    })
}

/// Reads every Ingress in a (multi-document) file.
pub fn parse(file: &str, text: &str) -> Result<Ingresses, ImportError> {
    let mut out = Ingresses::default();
    let mut found = 0;
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let v: Value = serde::Deserialize::deserialize(doc).map_err(|e| ImportError::Parse {
            file: file.to_owned(),
            message: format!("document {}: {e}", i + 1),
        })?;
        let name = format!("{file}#{}", i + 1);
        let root = At::root(&v, &name);
        let items: Vec<At<'_>> = if root.get("kind").str() == Some("List") {
            root.get("items")
                .items()
                .into_iter()
                .map(|(_, x)| x)
                .collect()
        } else {
            vec![root.clone()]
        };
        for ing in items {
            if ing.get("kind").str() != Some("Ingress") {
                continue;
            }
            let av = ing.get("apiVersion").str().unwrap_or_default();
            if !VERSIONS.contains(&av) {
                return Err(ImportError::Parse {
                    file: file.to_owned(),
                    message: format!(
                        "{}: Ingress apiVersion `{av}` is not one of {}",
                        ing.path(),
                        VERSIONS.join(", ")
                    ),
                });
            }
            found += 1;
            if out.namespace.is_none() {
                out.namespace = ing
                    .get("metadata")
                    .get("namespace")
                    .str()
                    .map(str::to_owned);
            }
            let spec = ing.get("spec");
            for key in ["backend", "defaultBackend"] {
                if let Some(b) = backend(&spec.get(key)) {
                    out.default_backend
                        .get_or_insert((b, spec.get(key).path().to_owned()));
                }
            }
            for (_, rule) in spec.get("rules").items() {
                let mut paths = Vec::new();
                for (_, p) in rule.get("http").get("paths").items() {
                    let Some(b) = backend(&p.get("backend")) else {
                        return Err(ImportError::Parse {
                            file: file.to_owned(),
                            message: format!(
                                "{}: backend needs a service name and port",
                                p.get("backend").path()
                            ),
                        });
                    };
                    paths.push(PathRule {
                        path: p.get("path").str().map(str::to_owned),
                        path_type: p.get("pathType").str().map(str::to_owned),
                        backend: b,
                        at: p.path().to_owned(),
                    });
                }
                out.rules.push(Rule {
                    host: rule.get("host").str().map(|h| h.to_ascii_lowercase()),
                    paths,
                    at: rule.path().to_owned(),
                });
            }
        }
    }
    if found == 0 {
        return Err(ImportError::Parse {
            file: file.to_owned(),
            message: "no Ingress in this file (kind: Ingress, apiVersion extensions/v1beta1, networking.k8s.io/v1beta1 or v1)".into(),
        });
    }
    Ok(out)
}

/// The port the Ingress sends to the Envoy's Service (for picking the listener).
pub fn envoy_port(ing: &Ingresses, envoy_service: &str) -> Option<u16> {
    ing.rules
        .iter()
        .flat_map(|r| &r.paths)
        .map(|p| &p.backend)
        .chain(ing.default_backend.as_ref().map(|(b, _)| b))
        .find(|b| b.service == envoy_service)
        .and_then(|b| match b.port {
            Port::Number(n) => Some(n),
            Port::Name(_) => None,
        })
}

/// Envoy's virtual host selection for `host`: exact, then the longest suffix wildcard, then
/// the longest prefix wildcard, then `*`. Returns the index into `domains` lists.
pub fn envoy_vhost_for(host: &str, vhost_domains: &[(usize, Vec<String>)]) -> Option<usize> {
    let h = host.to_ascii_lowercase();
    let mut best: Option<(u8, usize, usize)> = None;
    for (v, domains) in vhost_domains {
        for d in domains {
            let d = d.to_ascii_lowercase();
            let rank = if d == h {
                Some((3, d.len()))
            } else if d == "*" {
                Some((0, 0))
            } else if let Some(suffix) = d.strip_prefix('*') {
                (h.len() > suffix.len() && h.ends_with(suffix)).then_some((2, d.len()))
            } else if let Some(prefix) = d.strip_suffix('*') {
                (h.len() > prefix.len() && h.starts_with(prefix)).then_some((1, d.len()))
            } else {
                None
            };
            if let Some((class, len)) = rank {
                if best.is_none_or(|(c, l, _)| (class, len) > (c, l)) {
                    best = Some((class, len, *v));
                }
            }
        }
    }
    best.map(|(_, _, v)| v)
}

fn is_whole_host(p: &PathRule) -> bool {
    let path = p.path.as_deref().unwrap_or("/");
    path == "/" && p.path_type.as_deref() != Some("Exact")
}

/// A plain route for an Ingress path to another service.
fn service_route(p: &PathRule) -> Option<RouteConfig> {
    let Port::Number(port) = p.backend.port else {
        return None;
    };
    let path = p.path.clone().unwrap_or_else(|| "/".to_owned());
    let mut m = RouteMatch::default();
    match p.path_type.as_deref() {
        Some("Exact") => m.path = Some(path),
        // Prefix matches whole path elements: /foo matches /foo and /foo/bar, not /foobar.
        Some("Prefix") if path != "/" => {
            let base = path.trim_end_matches('/');
            m.regex = Some(format!("{}(/.*)?", super::strings::escape(base)));
        }
        _ if path != "/" => m.prefix = Some(path),
        _ => {}
    }
    Some(RouteConfig {
        name: Some(p.backend.service.clone()),
        matches: m,
        grpc_web: false,
        cors: None,
        request_headers: Default::default(),
        response_headers: Default::default(),
        to: Some(Target {
            service: Some(p.backend.service.clone()),
            port: Some(port),
            cluster: None,
            prefix_rewrite: None,
            host_rewrite: None,
            http2: None,
        }),
        direct_response: None,
        redirect: None,
    })
}

/// Builds the MeshConfig hosts: one per Ingress host (the Envoy's matching virtual host for
/// rules to the Envoy, plain routes otherwise), plus the Envoy's own hosts when the Envoy is
/// the default backend. `vhost_domains` are every virtual host's original domains.
pub fn assemble(
    ing: &Ingresses,
    envoy_service: &str,
    imported: &[ImportedHost],
    vhost_domains: &[(usize, Vec<String>)],
    notes: &mut Notes,
) -> Vec<HostConfig> {
    let root = Value::Null;
    let at = |path: &str| At::root(&root, path);
    let mut hosts: Vec<HostConfig> = Vec::new();
    // Envoy vhost index -> position in `hosts`, so hosts sharing a vhost share one entry.
    let mut by_vhost: Vec<(usize, usize)> = Vec::new();
    let mut used_domains: Vec<String> = Vec::new();
    for rule in &ing.rules {
        let domain = rule.host.clone().unwrap_or_else(|| "*".to_owned());
        let scope = Scope::Domain {
            vhost: None,
            domain: domain.clone(),
        };
        if used_domains.contains(&domain) {
            notes.add(
                &at(&rule.at),
                scope,
                "this host is already taken by an earlier rule",
            );
            continue;
        }
        let (to_envoy, others): (Vec<&PathRule>, Vec<&PathRule>) = rule
            .paths
            .iter()
            .partition(|p| p.backend.service == envoy_service);
        let mut routes: Vec<RouteConfig> = Vec::new();
        let mut ordered = others.clone();
        // Ingress precedence: Exact paths, then longer paths first.
        ordered.sort_by_key(|p| {
            (
                p.path_type.as_deref() != Some("Exact"),
                std::cmp::Reverse(p.path.as_deref().unwrap_or("/").len()),
            )
        });
        for p in ordered {
            match service_route(p) {
                Some(r) => routes.push(r),
                None => notes.add(&at(&p.at), scope.clone(), format!("backend port `{:?}` is a port name; MeshConfig needs the Service's port number; path not carried", p.backend.port)),
            }
        }
        let mut vhost = None;
        for p in &to_envoy {
            if !is_whole_host(p) || to_envoy.len() > 1 {
                notes.add(&at(&p.at), scope.clone(), "only a whole host (path `/`) can be sent to the Envoy's routes; this path is not carried");
                continue;
            }
            let Some(v) = envoy_vhost_for(&domain, vhost_domains) else {
                notes.add(
                    &at(&p.at),
                    scope.clone(),
                    "no virtual host of the Envoy matches this host: the Envoy answered 404",
                );
                continue;
            };
            match imported.iter().find(|h| h.vhost == v) {
                Some(h) => {
                    vhost = Some(v);
                    routes.extend(h.host.routes.iter().cloned());
                }
                None => notes.add(
                    &at(&p.at),
                    scope.clone(),
                    format!(
                        "the Envoy's virtual host {v}, which serves this host, was not carried"
                    ),
                ),
            }
        }
        if routes.is_empty() {
            continue;
        }
        used_domains.push(domain.clone());
        let source = vhost.and_then(|v| imported.iter().find(|h| h.vhost == v));
        // Only hosts served by one Envoy vhost alone can share a host entry with others.
        if let (Some(v), true) = (vhost, others.is_empty()) {
            if let Some(&(_, i)) = by_vhost.iter().find(|(x, _)| *x == v) {
                hosts[i].domains.push(domain);
                continue;
            }
            by_vhost.push((v, hosts.len()));
        }
        hosts.push(HostConfig {
            name: source
                .and_then(|h| h.host.name.clone())
                .or_else(|| rule.host.clone()),
            domains: vec![domain],
            cors: source.and_then(|h| h.host.cors.clone()),
            request_headers: source
                .map(|h| h.host.request_headers.clone())
                .unwrap_or_default(),
            response_headers: source
                .map(|h| h.host.response_headers.clone())
                .unwrap_or_default(),
            routes,
        });
    }
    if let Some((b, path)) = &ing.default_backend {
        if b.service == envoy_service {
            for h in imported {
                let domains: Vec<String> = h
                    .host
                    .domains
                    .iter()
                    .filter(|d| !used_domains.contains(d))
                    .cloned()
                    .collect();
                if domains.is_empty() {
                    continue;
                }
                used_domains.extend(domains.iter().cloned());
                hosts.push(HostConfig {
                    domains,
                    ..h.host.clone()
                });
            }
        } else if !used_domains.iter().any(|d| d == "*") {
            let p = PathRule {
                path: None,
                path_type: None,
                backend: b.clone(),
                at: path.clone(),
            };
            match service_route(&p) {
                Some(r) => hosts.push(HostConfig {
                    name: Some("default-backend".into()),
                    domains: vec!["*".into()],
                    cors: None,
                    request_headers: Default::default(),
                    response_headers: Default::default(),
                    routes: vec![r],
                }),
                None => notes.add(
                    &at(path),
                    Scope::Domain {
                        vhost: None,
                        domain: "*".into(),
                    },
                    "the default backend's port is a name; MeshConfig needs the number",
                ),
            }
        }
    }
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v1beta1_and_v1() {
        let text = "apiVersion: extensions/v1beta1\nkind: Ingress\nmetadata: {name: a, namespace: shop}\nspec:\n  backend: {serviceName: d, servicePort: http}\n  rules:\n  - host: Web.Example\n    http:\n      paths:\n      - backend: {serviceName: web, servicePort: 8060}\n---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: b}\nspec:\n  rules:\n  - http:\n      paths:\n      - path: /api\n        pathType: Prefix\n        backend: {service: {name: envoy, port: {number: 8080}}}\n";
        let ing = parse("i.yaml", text).unwrap();
        assert_eq!(ing.namespace.as_deref(), Some("shop"));
        assert_eq!(ing.rules.len(), 2);
        assert_eq!(ing.rules[0].host.as_deref(), Some("web.example"));
        assert_eq!(
            ing.rules[1].paths[0].backend,
            Backend {
                service: "envoy".into(),
                port: Port::Number(8080)
            }
        );
        assert_eq!(
            ing.default_backend.as_ref().unwrap().0.port,
            Port::Name("http".into())
        );
        assert_eq!(envoy_port(&ing, "envoy"), Some(8080));
        assert!(parse("x.yaml", "kind: Service\n").is_err());
    }

    #[test]
    fn envoy_vhost_selection_follows_envoy() {
        let v = vec![
            (0, vec!["*".to_owned()]),
            (1, vec!["*.example.com".to_owned()]),
            (
                2,
                vec!["api.example.com".to_owned(), "*-x.example.com".to_owned()],
            ),
            (3, vec!["api.*".to_owned()]),
        ];
        assert_eq!(envoy_vhost_for("API.example.com", &v), Some(2));
        assert_eq!(envoy_vhost_for("b-x.example.com", &v), Some(2));
        assert_eq!(envoy_vhost_for("b.example.com", &v), Some(1));
        assert_eq!(envoy_vhost_for("api.other", &v), Some(3));
        assert_eq!(envoy_vhost_for("other", &v), Some(0));
        assert_eq!(envoy_vhost_for("other", &v[1..]), None);
    }
}
