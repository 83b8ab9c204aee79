//! The differential "import" mode: a real-world Envoy config runs natively (changed only as
//! [`native`] lists) and its `kubectl mesh import-envoy` result runs through the filter; the
//! same generated requests go to both and every answer is compared, except where the import
//! itself notes that it does not carry the behaviour (`tests/import/README.md`).

pub mod native;
pub mod requests;

use crate::client::{Request, Response};
use crate::conformance::{diff_text, observe, Observation};
use crate::envoy::{Envoy, EnvoySpec};
use crate::upstream::EchoUpstream;
use kubectl_mesh::import::{self, ClusterTarget, Imported, Scope};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `tests/import/configs/NAME/case.yaml` (optional): where the inputs are.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// The Envoy config, relative to the workspace root; default `envoy.yaml` in the folder.
    #[serde(default)]
    pub envoy: Option<String>,
    /// Ingress manifests, relative to the workspace root.
    #[serde(default)]
    pub ingress: Option<String>,
    /// The Envoy's Service in the Ingress (default `envoy`).
    #[serde(default)]
    pub envoy_service: Option<String>,
}

/// The outcome of one config.
#[derive(Debug, Default)]
pub struct Report {
    /// Config name (its folder).
    pub name: String,
    /// Requests compared.
    pub comparisons: usize,
    /// Compared requests the native side forwarded to an upstream.
    pub forwarded: usize,
    /// Requests not compared, by the note that explains why.
    pub skipped: BTreeMap<String, usize>,
    /// One block per differing request.
    pub diffs: Vec<String>,
    /// What the native side changed from the original, as listed lines.
    pub changes: Vec<String>,
    /// The import's notes (`not carried` and `info`).
    pub notes: Vec<String>,
}

/// The config folders: `tests/import/configs/*`, sorted; `$IMPORT_ONLY` keeps the names that
/// contain it.
pub fn config_dirs() -> Vec<PathBuf> {
    let dir = crate::workspace_root().join("tests/import/configs");
    let only = std::env::var("IMPORT_ONLY").unwrap_or_default();
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    v.retain(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().contains(only.as_str()))
    });
    v.sort();
    v
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// A host without `:port` and trailing dot, lower-cased.
fn bare_host(h: &str) -> String {
    let h = h.to_ascii_lowercase();
    let h = match h.rsplit_once(':') {
        Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty() => n.to_owned(),
        _ => h,
    };
    h.trim_end_matches('.').to_owned()
}

/// Envoy's domain pattern match (exact, `*suffix`, `prefix*`, `*`).
fn domain_matches(pattern: &str, host: &str) -> bool {
    let p = pattern.to_ascii_lowercase();
    if p == "*" || p == host {
        return true;
    }
    if let Some(s) = p.strip_prefix('*') {
        return host.len() > s.len() && host.ends_with(s);
    }
    if let Some(s) = p.strip_suffix('*') {
        return host.len() > s.len() && host.starts_with(s);
    }
    false
}

/// Why a request is not compared, from the import's own notes (`None`: compare it).
fn skip_reason(
    imported: &Imported,
    req: &Request,
    route: Option<(usize, usize)>,
) -> Option<String> {
    let host = bare_host(req.host.as_deref().unwrap_or_default());
    let has_origin = req.headers.iter().any(|(k, _)| k == "origin");
    for n in imported.notes.iter().filter(|n| !n.info) {
        let hit = match &n.scope {
            Scope::Route { vhost, route: r } => route == Some((*vhost, *r)),
            Scope::VirtualHost { vhost } => route.is_some_and(|(v, _)| v == *vhost),
            Scope::Cors { vhost, route: r } => {
                has_origin && route.is_some_and(|(v, x)| v == *vhost && r.is_none_or(|r| r == x))
            }
            Scope::Domain { domain, .. } => domain_matches(domain, &host),
            _ => false,
        };
        if hit {
            return Some(n.path.clone());
        }
    }
    None
}

/// What the native side showed, with the marker turned into the route it names.
struct Native {
    obs: Observation,
    route: Option<(usize, usize)>,
    host: Option<String>,
}

/// A gRPC-Web answer carries the echo upstream's (non-gRPC) report in `grpc-message`, where the
/// grpc_web filter put it (listed normalization): read the report from there, as from a body.
fn unwrap_grpc_web(resp: &Response) -> Response {
    let report = resp
        .header("grpc-message")
        .filter(|m| serde_json::from_str::<crate::upstream::Received>(m).is_ok());
    match report {
        Some(m) => Response {
            status: resp.status,
            headers: resp
                .headers
                .iter()
                .filter(|(k, _)| k != "grpc-message")
                .cloned()
                .collect(),
            body: m.as_bytes().to_vec(),
        },
        None => resp.clone(),
    }
}

fn forwarded_host(resp: &Response) -> Option<String> {
    resp.received()
        .and_then(|r| r.header("host").map(str::to_owned))
}

fn native_view(resp: &Response) -> Native {
    let resp = &unwrap_grpc_web(resp);
    let route = resp.header(native::MARKER).and_then(|m| {
        let (v, r) = m.split_once('.')?;
        Some((v.parse().ok()?, r.parse().ok()?))
    });
    let mut obs = observe(resp);
    obs.response_headers.retain(|(k, _)| k != native::MARKER);
    Native {
        obs,
        route,
        host: forwarded_host(resp),
    }
}

/// Imports one config, runs both sides and compares every generated request.
pub fn run_config(dir: &Path) -> anyhow::Result<Report> {
    run_config_with(dir, &|_| {})
}

/// [`run_config`] with `tweak` applied to the import's result first (to prove the comparison
/// sees a wrong import).
pub fn run_config_with(dir: &Path, tweak: &dyn Fn(&mut Imported)) -> anyhow::Result<Report> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let root = crate::workspace_root();
    let case: CaseFile = match std::fs::read_to_string(dir.join("case.yaml")) {
        Ok(t) => serde_yaml_ng::from_str(&t)?,
        Err(_) => CaseFile::default(),
    };
    let envoy_path = case
        .envoy
        .as_ref()
        .map_or_else(|| dir.join("envoy.yaml"), |p| root.join(p));
    let envoy_text = read(&envoy_path)?;
    let ingress_path = case.ingress.as_ref().map(|p| root.join(p));
    let ingress_text = ingress_path.as_deref().map(read).transpose()?;
    let envoy_service = case.envoy_service.clone().unwrap_or_else(|| "envoy".into());
    let file = envoy_path.display().to_string();
    let ing_file = ingress_path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let imported = import::import(
        &file,
        &envoy_text,
        ingress_text.as_deref().map(|t| (ing_file.as_str(), t)),
        &envoy_service,
        None,
    )
    .map_err(|e| anyhow::anyhow!("{name}: import failed: {e}"))?;
    let mut imported = imported;
    tweak(&mut imported);
    let original: Value = serde_yaml_ng::from_str(&envoy_text)?;
    let mut report = Report {
        name: name.clone(),
        notes: imported.notes.iter().map(ToString::to_string).collect(),
        ..Default::default()
    };

    // One echo upstream per Envoy cluster, and one per other service the Ingress names.
    let mut echoes: BTreeMap<String, EchoUpstream> = imported
        .clusters
        .keys()
        .map(|c| (c.clone(), EchoUpstream::start(c)))
        .collect();
    let cfg = &imported.config;
    let istio = |svc: &str, port: u16| {
        mesh_core::upstream::istio_cluster(
            &mesh_core::upstream::service_fqdn(svc, &cfg.namespace, &cfg.cluster_domain),
            port,
        )
    };
    let mut mesh_clusters: BTreeMap<String, String> = BTreeMap::new();
    for (c, t) in &imported.clusters {
        let mesh_name = match t {
            ClusterTarget::Service { service, port } => istio(service, *port),
            ClusterTarget::Raw => c.clone(),
        };
        mesh_clusters.insert(mesh_name, c.clone());
    }
    if let Some(ing) = &imported.ingress {
        for p in ing
            .rules
            .iter()
            .flat_map(|r| &r.paths)
            .map(|p| &p.backend)
            .chain(ing.default_backend.as_ref().map(|(b, _)| b))
        {
            if let (false, import::ingress::Port::Number(n)) = (p.service == envoy_service, &p.port)
            {
                let key = format!("{}:{n}", p.service);
                echoes
                    .entry(key.clone())
                    .or_insert_with(|| EchoUpstream::start(&key));
                mesh_clusters.insert(istio(&p.service, *n), key);
            }
        }
    }
    let echo_ports: BTreeMap<String, u16> =
        echoes.iter().map(|(k, e)| (k.clone(), e.port)).collect();
    let engine = mesh_core::compile(cfg).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    let mut mesh_cluster_ports = Vec::new();
    for c in engine.clusters() {
        let echo = mesh_clusters
            .get(c)
            .and_then(|e| echo_ports.get(e))
            .ok_or_else(|| anyhow::anyhow!("{name}: mesh cluster {c} has no upstream"))?;
        mesh_cluster_ports.push((c.to_owned(), *echo));
    }

    // Native: the original (changed as listed), behind the Ingress controller when there is one.
    let li = imported.listener;
    let hcm_original = original["static_resources"]["listeners"][li]["filter_chains"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["filters"].as_array().cloned().unwrap_or_default())
        .find(|f| {
            f.get("typed_config")
                .or(f.get("config"))
                .and_then(|t| t.get("route_config"))
                .is_some()
        })
        .map(|f| {
            f.get("typed_config")
                .or(f.get("config"))
                .cloned()
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let native_changes = std::cell::RefCell::new(Vec::new());
    let native_env = Envoy::start_with(&|a| {
        let (p, mut c) = (crate::free_port(), Vec::new());
        let b = native::bootstrap(&original, &imported, &echo_ports, p, a, &mut c);
        *native_changes.borrow_mut() = c;
        (b, p)
    })
    .map_err(|e| anyhow::anyhow!("{name}: native Envoy: {e}"))?;
    let mut changes = native_changes.into_inner();
    let outer = match &imported.ingress {
        Some(ing) => Some(
            Envoy::start_with(&|a| {
                let p = crate::free_port();
                let b = native::ingress_bootstrap(
                    ing,
                    &envoy_service,
                    native_env.port,
                    &echo_ports,
                    p,
                    a,
                );
                (b, p)
            })
            .map_err(|e| anyhow::anyhow!("{name}: ingress Envoy: {e}"))?,
        ),
        None => None,
    };
    if outer.is_some() {
        changes.push("the Ingress controller is an Envoy in front: a virtual host per Ingress host (port ignored, as ingress-nginx), each path to the native Envoy or to the service's echo upstream".into());
    }
    report.changes = changes;
    let front = outer.as_ref().unwrap_or(&native_env);

    // Mesh: the imported config through the filter, with the gRPC-Web filter the way Istio
    // gets it (the harness's builder adds it for grpcWeb routes); the settings the import notes
    // as the proxy's run on this side too.
    let mut spec = EnvoySpec::mesh(&serde_json::to_string(cfg)?, mesh_cluster_ports);
    spec.hcm_extra
        .extend(native::proxy_settings(&hcm_original, &imported));
    let mesh_env = spec
        .start()
        .map_err(|e| anyhow::anyhow!("{name}: mesh Envoy: {e}"))?;

    // Requests.
    let rc = &hcm_original["route_config"];
    let origins = requests::origins(rc);
    let reqs = match &imported.ingress {
        None => requests::generate(
            rc,
            &|_, vh| {
                vh["domains"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .flat_map(requests::domain_hosts)
                    .collect()
            },
            &origins,
        ),
        Some(ing) => {
            let domains: Vec<(usize, Vec<String>)> = rc["virtual_hosts"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(v, vh)| {
                    (
                        v,
                        vh["domains"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|d| d.as_str().map(str::to_owned))
                            .collect(),
                    )
                })
                .collect();
            let mut reqs = requests::generate(
                rc,
                &|v, _| {
                    ing.rules
                        .iter()
                        .filter(|r| r.paths.iter().any(|p| p.backend.service == envoy_service))
                        .filter_map(|r| r.host.clone())
                        .filter(|h| import::ingress::envoy_vhost_for(h, &domains) == Some(v))
                        // ingress-nginx normalizes a trailing dot itself; not compared.
                        .flat_map(|h| {
                            requests::domain_hosts(&h)
                                .into_iter()
                                .filter(|x| !x.ends_with('.'))
                                .collect::<Vec<_>>()
                        })
                        .collect()
                },
                &origins,
            );
            for rule in &ing.rules {
                if rule
                    .paths
                    .iter()
                    .any(|p| p.backend.service == envoy_service)
                {
                    continue;
                }
                let host = rule.host.clone().unwrap_or_else(|| "any.example".into());
                for h in requests::domain_hosts(&host)
                    .into_iter()
                    .filter(|x| !x.ends_with('.'))
                {
                    for p in rule
                        .paths
                        .iter()
                        .map(|p| p.path.clone().unwrap_or_else(|| "/".into()))
                        .chain(["/".into(), "/x/y?z=1".into()])
                    {
                        reqs.push(Request::new("GET", &h, &p));
                        reqs.push(
                            Request::new("GET", &h, &p).header("origin", "https://other.example"),
                        );
                    }
                }
            }
            reqs
        }
    };

    for req in &reqs {
        let n_resp = front.send(req);
        let mut n = native_view(&n_resp);
        if n.route.is_none() && req.method == "OPTIONS" {
            // A preflight the CORS filter answered carries no route header: ask which route the
            // same request without CORS headers takes.
            let mut probe = req.clone();
            probe
                .headers
                .retain(|(k, _)| k != "origin" && !k.starts_with("access-control-request"));
            n.route = native_view(&front.send(&probe)).route;
        }
        if let Some(why) = skip_reason(&imported, req, n.route) {
            *report.skipped.entry(why).or_default() += 1;
            continue;
        }
        let m_resp = unwrap_grpc_web(&mesh_env.send(req));
        let m = observe(&m_resp);
        let mut m_host = forwarded_host(&m_resp);
        let mut n_host = n.host.clone();
        if imported.strips_host_header {
            // Listed normalization: the original rewrote the forwarded Host; the filter does not.
            n_host = n_host.map(|h| bare_host(&h));
            m_host = m_host.map(|h| bare_host(&h));
        }
        report.comparisons += 1;
        if n.obs.upstream.is_some() {
            report.forwarded += 1;
        }
        if n.obs != m || n_host != m_host {
            let mut d = diff_text(&name, req, &n.obs, &m);
            if n_host != m_host {
                d.push_str(&format!(
                    "    forwarded Host: native {n_host:?}, mesh {m_host:?}\n"
                ));
            }
            report.diffs.push(d);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_and_hosts() {
        assert_eq!(bare_host("API.x:8080"), "api.x");
        assert_eq!(bare_host("api.x."), "api.x");
        assert!(domain_matches("*.x.com", "a.x.com") && !domain_matches("*.x.com", "x.com"));
        assert!(domain_matches("foo.*", "foo.bar") && !domain_matches("foo.*", "foo."));
    }
}
