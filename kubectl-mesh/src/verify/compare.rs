//! `verify`'s comparison: the original Envoy config runs natively (changed only as [`native`]
//! lists) and the MeshConfig (given, or imported on the fly) runs through the filter; the same
//! requests go to both and every answer is compared. A difference in the scope of something the
//! import notes as not carried is one the MeshConfig cannot express; any other difference is a
//! bug of the MeshConfig (or of the import).

use super::echo::EchoUpstream;
use super::http::{Request, Response};
use super::native;
use super::observe::{describe, diff_text, field_diffs, observe, FieldDiff, Observation};
use super::process::{self, Envoy};
use super::requests;
use super::VerifyError;
use crate::envoy as builder;
use crate::import::{self, ClusterTarget, Imported, Note, Scope};
use mesh_core::MeshConfig;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// What to compare.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// A name for the report (the file, or a suite's config name).
    pub name: String,
    /// The original Envoy config (and Ingress, listener choice).
    pub source: import::Source<'a>,
    /// The MeshConfig to run; `None`: the import of `source`.
    pub config: Option<MeshConfig>,
    /// Requests of the user's own, sent after the generated ones.
    pub extra: Vec<Request>,
}

/// The programs a comparison runs.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The Envoy binary.
    pub envoy: PathBuf,
    /// The filter module (`.wasm`).
    pub wasm: PathBuf,
}

/// One request the two sides answered differently.
#[derive(Debug, Clone)]
pub struct Difference {
    /// The request, on one line.
    pub request: String,
    /// The fields that differ.
    pub fields: Vec<FieldDiff>,
    /// `None`: the MeshConfig can express what the original did here (it should be fixed).
    /// `Some(note)`: the import notes this behaviour as not carried, `PATH: reason`.
    pub cannot_express: Option<String>,
    /// Both sides in full, every differing line marked.
    pub text: String,
}

/// The outcome of one comparison.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// What was compared.
    pub name: String,
    /// Requests sent to both sides.
    pub requests: usize,
    /// Requests the native side forwarded to an upstream.
    pub forwarded: usize,
    /// Requests answered differently.
    pub differences: Vec<Difference>,
    /// Behaviour of the original that the native run left out because the MeshConfig cannot
    /// carry it (HTTP filters), `PATH: reason`: not compared, so not proven equal.
    pub unverified: Vec<String>,
    /// What the native run changed from the original, `path: what and why`.
    pub changes: Vec<String>,
    /// The import's notes.
    pub notes: Vec<Note>,
    /// The MeshConfig that ran (the given one, or the import).
    pub config: Option<MeshConfig>,
}

impl Report {
    /// True when every request got the same answer and nothing was left out.
    pub fn equal(&self) -> bool {
        self.differences.is_empty() && self.unverified.is_empty()
    }
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

/// The `not carried` note whose scope covers `req` (answered natively by `route`), if any.
fn note_for<'a>(
    imported: &'a Imported,
    req: &Request,
    route: Option<(usize, usize)>,
) -> Option<&'a Note> {
    let host = bare_host(req.host.as_deref().unwrap_or_default());
    let has_origin = req.headers.iter().any(|(k, _)| k == "origin");
    imported
        .notes
        .iter()
        .filter(|n| !n.info)
        .find(|n| match &n.scope {
            Scope::Route { vhost, route: r } => route == Some((*vhost, *r)),
            Scope::VirtualHost { vhost } => route.is_some_and(|(v, _)| v == *vhost),
            Scope::Cors { vhost, route: r } => {
                has_origin && route.is_some_and(|(v, x)| v == *vhost && r.is_none_or(|r| r == x))
            }
            Scope::Domain { domain, .. } => domain_matches(domain, &host),
            _ => false,
        })
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
        .filter(|m| serde_json::from_str::<super::echo::Received>(m).is_ok());
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

/// The imported listener's HTTP connection manager config, as written in the original.
fn original_hcm(original: &Value, listener: usize) -> Value {
    original["static_resources"]["listeners"][listener]["filter_chains"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["filters"].as_array().cloned().unwrap_or_default())
        .find_map(|f| {
            let cfg = f.get("typed_config").or(f.get("config"))?;
            cfg.get("route_config").is_some().then(|| cfg.clone())
        })
        .unwrap_or_default()
}

/// Echo upstreams for both sides: one per Envoy cluster and per other Ingress service, and the
/// mesh cluster names that reach them.
struct Upstreams {
    echoes: BTreeMap<String, EchoUpstream>,
    /// Mesh cluster name -> echo name.
    mesh: BTreeMap<String, String>,
}

impl Upstreams {
    fn new(imported: &Imported, cfg: &MeshConfig, envoy_service: &str) -> std::io::Result<Self> {
        let mut echoes = BTreeMap::new();
        for c in imported.clusters.keys() {
            echoes.insert(c.clone(), EchoUpstream::start(c)?);
        }
        let istio = |svc: &str, port: u16| {
            mesh_core::upstream::istio_cluster(
                &mesh_core::upstream::service_fqdn(svc, &cfg.namespace, &cfg.cluster_domain),
                port,
            )
        };
        let mut mesh = BTreeMap::new();
        for (c, t) in &imported.clusters {
            let name = match t {
                ClusterTarget::Service { service, port, .. } => istio(service, *port),
                ClusterTarget::Raw => c.clone(),
            };
            mesh.insert(name, c.clone());
        }
        if let Some(ing) = &imported.ingress {
            let backends = ing
                .rules
                .iter()
                .flat_map(|r| &r.paths)
                .map(|p| &p.backend)
                .chain(ing.default_backend.as_ref().map(|(b, _)| b));
            for b in backends {
                if let (false, import::ingress::Port::Number(n)) =
                    (b.service == envoy_service, &b.port)
                {
                    let key = format!("{}:{n}", b.service);
                    if !echoes.contains_key(&key) {
                        echoes.insert(key.clone(), EchoUpstream::start(&key)?);
                    }
                    mesh.insert(istio(&b.service, *n), key);
                }
            }
        }
        Ok(Upstreams { echoes, mesh })
    }

    fn ports(&self) -> BTreeMap<String, u16> {
        self.echoes
            .iter()
            .map(|(k, e)| (k.clone(), e.port))
            .collect()
    }

    /// The mesh side's clusters: each one the config routes to, on its echo (a cluster the
    /// original never had gets an echo of its own, so the difference shows in the upstream).
    fn mesh_clusters(&mut self, cfg: &MeshConfig) -> std::io::Result<Vec<builder::StaticCluster>> {
        let mut out = Vec::new();
        let engine = match mesh_core::compile(cfg) {
            Ok(e) => e,
            Err(_) => return Ok(out),
        };
        for c in engine.clusters() {
            let echo = match self.mesh.get(c) {
                Some(e) => e.clone(),
                None => {
                    let name = super::short_name(c);
                    if !self.echoes.contains_key(&name) {
                        self.echoes
                            .insert(name.clone(), EchoUpstream::start(&name)?);
                    }
                    name
                }
            };
            let port = self.echoes.get(&echo).map_or(0, |e| e.port);
            out.push(builder::StaticCluster {
                name: c.to_owned(),
                address: SocketAddr::from(([127, 0, 0, 1], port)),
                http2: false,
            });
        }
        Ok(out)
    }
}

/// The generated requests: from the original's domains, or, behind an Ingress, from its hosts.
fn generated(rc: &Value, imported: &Imported, envoy_service: &str) -> Vec<Request> {
    let origins = requests::origins(rc);
    let Some(ing) = &imported.ingress else {
        return requests::generate(
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
        );
    };
    let domains: Vec<(usize, Vec<String>)> = rc["virtual_hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(v, vh)| {
            let d = vh["domains"].as_array().into_iter().flatten();
            (v, d.filter_map(|d| d.as_str().map(str::to_owned)).collect())
        })
        .collect();
    // An Ingress controller (ingress-nginx) normalizes a trailing dot itself: not sent.
    let hosts = |h: &str| -> Vec<String> {
        requests::domain_hosts(h)
            .into_iter()
            .filter(|x| !x.ends_with('.'))
            .collect()
    };
    let mut reqs = requests::generate(
        rc,
        &|v, _| {
            ing.rules
                .iter()
                .filter(|r| r.paths.iter().any(|p| p.backend.service == envoy_service))
                .filter_map(|r| r.host.clone())
                .filter(|h| import::ingress::envoy_vhost_for(h, &domains) == Some(v))
                .flat_map(|h| hosts(&h))
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
        for h in hosts(&host) {
            let paths = rule.paths.iter().map(|p| p.path.clone());
            for p in paths
                .map(|p| p.unwrap_or_else(|| "/".into()))
                .chain(["/".into(), "/x/y?z=1".into()])
            {
                reqs.push(Request::new("GET", &h, &p));
                reqs.push(Request::new("GET", &h, &p).header("origin", "https://other.example"));
            }
        }
    }
    reqs
}

fn envoy_err(side: &'static str) -> impl Fn(process::ProcessError) -> VerifyError {
    move |source| VerifyError::Envoy { side, source }
}

fn send(side: &'static str, envoy: &Envoy, req: &Request) -> Result<Response, VerifyError> {
    envoy.send(req).map_err(|source| VerifyError::Send {
        side,
        request: describe(req),
        source,
        log: envoy.log(),
    })
}

/// Imports the original (for its notes, clusters and listener), runs both sides and compares
/// every generated request and the user's own.
pub fn run(input: &Input<'_>, tools: &Tools) -> Result<Report, VerifyError> {
    let imported = import::import_source(&input.source)?;
    let cfg = input
        .config
        .clone()
        .unwrap_or_else(|| imported.config.clone());
    let original: Value = serde_yaml_ng::from_str(input.source.envoy_text)
        .map_err(|e| VerifyError::Usage(format!("{}: {e}", input.source.envoy_file)))?;
    let envoy_service = input.source.envoy_service;
    let mut report = Report {
        name: input.name.clone(),
        notes: imported.notes.clone(),
        config: Some(cfg.clone()),
        ..Default::default()
    };
    report.unverified = imported
        .notes
        .iter()
        .filter(|n| matches!(n.scope, Scope::HttpFilter { .. }))
        .map(|n| format!("{}: {}", n.path, n.reason))
        .collect();

    let mut ups = Upstreams::new(&imported, &cfg, envoy_service).map_err(VerifyError::Upstream)?;
    let mesh_clusters = ups.mesh_clusters(&cfg).map_err(VerifyError::Upstream)?;
    let echo_ports = ups.ports();
    let hcm_original = original_hcm(&original, imported.listener);

    // Native: the original (changed as listed), behind the Ingress controller when there is
    // one; the mesh: the config through the filter, with the settings the import notes as the
    // proxy's (those belong to the proxy Istio configures, so both sides run them). Both start
    // at once: Envoy's start-up (and the module's compile) dominates a short comparison.
    let native_changes = std::cell::RefCell::new(Vec::new());
    let wasm = tools.wasm.display().to_string();
    let mut hcm_extra = builder::strip_reserved_headers()
        .as_object()
        .cloned()
        .unwrap_or_default();
    hcm_extra.extend(native::proxy_settings(&hcm_original, &imported));
    let mesh_start = || {
        Envoy::start_with(&tools.envoy, &[], &|admin| {
            let port = process::free_port();
            let mut local = builder::LocalEnvoy::mesh(
                &cfg,
                builder::local_code(&wasm),
                SocketAddr::from(([127, 0, 0, 1], port)),
                mesh_clusters.clone(),
            );
            local.admin = Some(SocketAddr::from(([127, 0, 0, 1], admin)));
            local.hcm_extra = hcm_extra.clone();
            (local.bootstrap(), port)
        })
    };
    let native_start = || {
        Envoy::start_with(&tools.envoy, &[], &|admin| {
            let (p, mut c) = (process::free_port(), Vec::new());
            let b = native::bootstrap(&original, &imported, &echo_ports, p, admin, &mut c);
            *native_changes.borrow_mut() = c;
            (b, p)
        })
    };
    let (mesh_env, native_env) = std::thread::scope(|s| {
        let m = s.spawn(mesh_start);
        let n = native_start();
        (m.join(), n)
    });
    let mesh_env = mesh_env
        .map_err(|_| VerifyError::Usage("the mesh side's start panicked".into()))?
        .map_err(envoy_err("mesh"))?;
    let native_env = native_env.map_err(envoy_err("native"))?;
    report.changes = native_changes.into_inner();
    let outer = match &imported.ingress {
        Some(ing) => Some(
            Envoy::start_with(&tools.envoy, &[], &|admin| {
                let p = process::free_port();
                let b = native::ingress_bootstrap(
                    ing,
                    envoy_service,
                    native_env.port,
                    &echo_ports,
                    p,
                    admin,
                );
                (b, p)
            })
            .map_err(envoy_err("ingress"))?,
        ),
        None => None,
    };
    if outer.is_some() {
        report.changes.push("the Ingress controller is an Envoy in front: a virtual host per Ingress host (port ignored, as ingress-nginx), each path to the native Envoy or to the service's echo upstream".into());
    }
    let front = outer.as_ref().unwrap_or(&native_env);

    let mut reqs = generated(&hcm_original["route_config"], &imported, envoy_service);
    reqs.extend(input.extra.iter().cloned());
    for req in &reqs {
        let mut n = native_view(&send("native", front, req)?);
        if n.route.is_none() && req.method == "OPTIONS" {
            // A preflight the CORS filter answered carries no route header: ask which route the
            // same request without CORS headers takes.
            let mut probe = req.clone();
            probe
                .headers
                .retain(|(k, _)| k != "origin" && !k.starts_with("access-control-request"));
            n.route = native_view(&send("native", front, &probe)?).route;
        }
        let m_resp = unwrap_grpc_web(&send("mesh", &mesh_env, req)?);
        let m = observe(&m_resp);
        let (mut n_host, mut m_host) = (n.host.clone(), forwarded_host(&m_resp));
        if imported.strips_host_header {
            // Listed normalization: the original rewrote the forwarded Host; the filter does not.
            n_host = n_host.map(|h| bare_host(&h));
            m_host = m_host.map(|h| bare_host(&h));
        }
        report.requests += 1;
        if n.obs.upstream.is_some() {
            report.forwarded += 1;
        }
        if n.obs == m && n_host == m_host {
            continue;
        }
        let mut fields = field_diffs(&n.obs, &m);
        let mut text = diff_text(&report.name, req, &n.obs, &m);
        if n_host != m_host {
            let show = |h: &Option<String>| h.clone().unwrap_or_else(|| "-".into());
            fields.push(FieldDiff {
                field: "forwarded host".into(),
                native: show(&n_host),
                mesh: show(&m_host),
            });
            text.push_str(&format!(
                "    forwarded Host: native {n_host:?}, mesh {m_host:?}\n"
            ));
        }
        report.differences.push(Difference {
            request: describe(req),
            fields,
            cannot_express: note_for(&imported, req, n.route)
                .map(|n| format!("{}: {}", n.path, n.reason)),
            text,
        });
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
