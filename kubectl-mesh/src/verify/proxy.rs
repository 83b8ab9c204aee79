//! `verify --proxy-dump` / `--pod`: an Istio proxy's current config (its `/config_dump`) runs
//! in local Envoy as it is and with what `enable` would add; every route of the dump is
//! requested on both, and so are the config's own hosts. What changed for traffic the config
//! does not own (it should be nothing) and what the config's hosts now get are reported.

use super::http::Request;
use super::istio::dump::{self, Proxy, ProxyKind};
use super::istio::rendered;
use super::istio::runnable::{Runnable, Upstreams};
use super::istio::traffic::{istio_probes, Outcome, Probe, Running};
use super::VerifyError;
use crate::render::{self, Api, Context, GatewayOptions, Module, RenderOptions};
use mesh_core::{HeaderList, MeshConfig, RequestOutcome};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// What `--proxy-dump` compares.
#[derive(Debug, Clone)]
pub struct ProxyInput {
    /// Where the dump came from (a file, or `pod NS/POD`), for messages.
    pub source: String,
    /// The `/config_dump` JSON.
    pub dump: Value,
    /// The MeshConfig `enable` would apply.
    pub config: MeshConfig,
    /// The context it would be enabled for; default: gateway for a gateway, sidecar-outbound
    /// for a sidecar.
    pub context: Option<Context>,
}

/// One request and what it got before and after.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The listener and request, on one line.
    pub what: String,
    /// Before `enable`.
    pub before: Outcome,
    /// After.
    pub after: Outcome,
}

/// The outcome of a `--proxy-dump` comparison.
#[derive(Debug, Clone)]
pub struct ProxyReport {
    /// Where the dump came from.
    pub source: String,
    /// Gateway or sidecar.
    pub kind: ProxyKind,
    /// The context `enable` would use.
    pub context: Context,
    /// Runnable listeners (HTTP filter chains).
    pub listeners: usize,
    /// Requests on the proxy's own routes (hosts the config does not own), sent before and
    /// after.
    pub others: usize,
    /// Those whose answer changed (should be none).
    pub changed: Vec<Answer>,
    /// The config's own hosts: every request, before and after, per listener.
    pub config_hosts: Vec<Answer>,
    /// Rendered patches that matched nothing in this proxy (they would do nothing in Istio).
    pub unlanded: Vec<String>,
    /// Services the config routes to that this proxy has no cluster for (its requests there
    /// would get 503): the HTTP/2 patches for them matched nothing.
    pub missing_clusters: Vec<String>,
}

impl ProxyReport {
    /// True when traffic the config does not own is unchanged and every patch landed.
    pub fn clean(&self) -> bool {
        self.changed.is_empty() && self.unlanded.is_empty()
    }
}

/// Whether the config names `host` among its domains (an explicit `notFound` owning every
/// host does not count: Istio's routes for the other hosts are what it must leave alone).
fn owner(cfg: &MeshConfig) -> Option<mesh_core::Engine> {
    let mut c = cfg.clone();
    c.not_found = None;
    mesh_core::compile(&c).ok()
}

fn owns(engine: Option<&mesh_core::Engine>, host: &str) -> bool {
    let Some(e) = engine else { return false };
    let mut h = HeaderList(vec![
        (":authority".into(), host.as_bytes().to_vec()),
        (":path".into(), b"/".to_vec()),
        (":method".into(), b"GET".to_vec()),
    ]);
    let req = h.clone();
    !matches!(
        e.on_request_headers(&req, &mut h),
        Ok(RequestOutcome::PassThrough)
    )
}

/// Requests for the config's own hosts: per host, its first domain (a made-up name under a
/// wildcard) on every route's path, a preflight and a gRPC-Web call from the first allowed
/// origin, and a path no route takes.
fn config_requests(cfg: &MeshConfig) -> Vec<Request> {
    let mut out = Vec::new();
    for h in &cfg.hosts {
        let Some(d) = h.domains.first() else { continue };
        let host = match d.strip_prefix("*.") {
            Some(rest) => format!("a.{rest}"),
            None if d == "*" => "any.example".to_owned(),
            None => d.clone(),
        };
        let origin = h
            .cors
            .as_ref()
            .and_then(|c| c.allow_origins.iter().find_map(|o| o.exact.clone()))
            .unwrap_or_else(|| "https://other.example".to_owned());
        let mut paths: Vec<String> = h
            .routes
            .iter()
            .map(|r| {
                r.matches
                    .prefix
                    .clone()
                    .or_else(|| r.matches.path.clone())
                    .unwrap_or_else(|| "/".into())
            })
            .collect();
        paths.push("/kubectl-mesh-verify/unrouted".into());
        paths.dedup();
        for p in &paths {
            out.push(Request::get(&host, p));
            out.push(
                Request::new("OPTIONS", &host, p)
                    .header("origin", &origin)
                    .header("access-control-request-method", "POST")
                    .header("access-control-request-headers", "content-type,x-grpc-web"),
            );
        }
        for r in h.routes.iter().filter(|r| r.grpc_web) {
            let p = r.matches.prefix.clone().unwrap_or_else(|| "/".into());
            out.push(
                Request::new("POST", &host, &format!("{}Call", p))
                    .header("origin", &origin)
                    .header("content-type", "application/grpc-web-text")
                    .header("x-grpc-web", "1")
                    .body("AAAAAAYKBEFndW1vbg=="),
            );
        }
    }
    out
}

/// What `enable` would apply for `context`, as `kubectl mesh render` prints it.
fn render_objects(cfg: &MeshConfig, context: Context) -> Result<Vec<Value>, VerifyError> {
    let opts = RenderOptions {
        name: "kubectl-mesh".into(),
        namespace: cfg.namespace.clone(),
        // Sidecars need a selector to render; which workload it names does not matter here.
        selector: BTreeMap::from([("app".into(), "verify".into())]),
        context,
        api: Api::Envoyfilter,
        // The module is pointed at the local one anyway.
        module: Module::ConfigMap(b"\0asm\x01\0\0\0".to_vec()),
        gateway_deployment: "istio-ingressgateway".into(),
        gateway: GatewayOptions::default(),
        source: "verify".into(),
        istio_version: render::NEWEST_ISTIO,
    };
    Ok(render::render(cfg, &opts)
        .map_err(|e| VerifyError::Usage(e.to_string()))?
        .objects)
}

/// Runs the dump before and after and compares.
pub fn run(input: &ProxyInput, envoy: &Path, wasm: &Path) -> Result<ProxyReport, VerifyError> {
    let path = Path::new(&input.source);
    let kind = dump::kind_of(&input.dump).ok_or_else(|| {
        VerifyError::Usage(format!(
            "{}: the dump's bootstrap node id does not say gateway (`router~...`) or sidecar (`sidecar~...`); is it a full /config_dump?",
            input.source
        ))
    })?;
    let context = match (kind, input.context) {
        (ProxyKind::Gateway, None | Some(Context::Gateway)) => Context::Gateway,
        (ProxyKind::Gateway, Some(c)) => {
            return Err(VerifyError::Usage(format!(
                "{}: this is a gateway's dump, and --envoy-context {c:?} is for sidecars",
                input.source
            )))
        }
        (ProxyKind::Sidecar, Some(Context::Gateway)) => {
            return Err(VerifyError::Usage(format!(
                "{}: this is a sidecar's dump; pass --envoy-context sidecar-outbound or sidecar-inbound",
                input.source
            )))
        }
        (ProxyKind::Sidecar, c) => c.unwrap_or(Context::SidecarOutbound),
    };
    let base = Proxy::from_dump(path, &input.dump, kind)?;
    let objects = render_objects(&input.config, context)?;
    let wasm_text = wasm.display().to_string();
    let (after, landed) = rendered::apply(&base, &objects, context, &wasm_text)?;
    let missing_clusters = landed
        .patches
        .iter()
        .zip(&landed.gated)
        .filter(|((p, n), gated)| *n == 0 && !**gated && p["applyTo"] == "CLUSTER")
        .map(|((p, _), _)| {
            let c = &p["match"]["cluster"];
            format!(
                "{}:{}",
                c["service"].as_str().or(c["name"].as_str()).unwrap_or("?"),
                c["portNumber"]
            )
        })
        .collect();
    let unlanded = landed
        .patches
        .iter()
        .zip(&landed.gated)
        .filter(|((p, n), gated)| *n == 0 && !**gated && p["applyTo"] != "CLUSTER")
        .map(|((p, _), _)| {
            format!(
                "{} {} ({}) matched nothing in this proxy",
                p["applyTo"].as_str().unwrap_or_default(),
                p["patch"]["operation"].as_str().unwrap_or_default(),
                p["match"]
            )
        })
        .collect();

    let mut ups = Upstreams::default();
    let before_rt = Runnable::new(&base, &mut ups, &[])?;
    let clusters: Vec<String> = mesh_core::compile(&input.config)
        .map(|e| e.clusters().into_iter().map(str::to_owned).collect())
        .unwrap_or_default();
    let after_rt = Runnable::new(&after, &mut ups, &clusters)?;
    let before = Running::start_on(envoy, &before_rt)?;
    let after = Running::start_on(envoy, &after_rt)?;

    let engine = owner(&input.config);
    let probes: Vec<Probe> = istio_probes(&before_rt)
        .into_iter()
        .filter(|p| !owns(engine.as_ref(), p.req.host.as_deref().unwrap_or_default()))
        .collect();
    // The same requests again, each claiming an upstream and a translation: a client must
    // not be able to pick either.
    let spoofed: Vec<Probe> = probes
        .iter()
        .cloned()
        .map(|mut p| {
            p.req = p
                .req
                .header(
                    mesh_core::UPSTREAM_HEADER,
                    clusters.first().map_or("x", |c| c),
                )
                .header(mesh_core::GRPC_WEB_HEADER, "1");
            p.what += " (with x-mesh-upstream and x-mesh-grpc-web)";
            p
        })
        .collect();
    let all: Vec<Probe> = probes.into_iter().chain(spoofed).collect();
    let (b, a) = (before.outcomes(&all)?, after.outcomes(&all)?);
    let changed = all
        .iter()
        .zip(b.into_iter().zip(a))
        .filter(|(_, (b, a))| b != a)
        .map(|(p, (before, after))| Answer {
            what: p.what.clone(),
            before,
            after,
        })
        .collect();

    let mut config_hosts = Vec::new();
    for (li, l) in after_rt.listeners.iter().enumerate() {
        for req in config_requests(&input.config) {
            let before = Outcome::from(&before.send(li, &req)?);
            let after = Outcome::from(&after.send(li, &req)?);
            config_hosts.push(Answer {
                what: format!(
                    "{}: {} {}{}",
                    l.label,
                    req.method,
                    req.host.as_deref().unwrap_or_default(),
                    req.path
                ),
                before,
                after,
            });
        }
    }
    Ok(ProxyReport {
        source: input.source.clone(),
        kind,
        context,
        listeners: after_rt.listeners.len(),
        others: all.len(),
        changed,
        config_hosts,
        unlanded,
        missing_clusters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digimon() -> MeshConfig {
        render::load_config(&std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/digimon/mesh.yaml"
        )))
        .unwrap()
    }

    #[test]
    fn the_config_owns_the_hosts_it_names_not_those_a_catch_all_not_found_takes() {
        let mut cfg = digimon();
        cfg.not_found = Some(mesh_core::config::DirectResponse {
            status: 404,
            body: String::new(),
            content_type: None,
        });
        let e = owner(&cfg);
        assert!(owns(e.as_ref(), "api.backend.com"));
        assert!(owns(e.as_ref(), "web.backend.com:80"));
        assert!(!owns(e.as_ref(), "probe.unlisted.example"));
    }

    #[test]
    fn the_config_hosts_get_their_routes_a_preflight_and_a_grpc_web_call() {
        let reqs = config_requests(&digimon());
        let shown: Vec<String> = reqs
            .iter()
            .map(|r| format!("{} {}{}", r.method, r.host.as_deref().unwrap_or(""), r.path))
            .collect();
        for want in [
            "GET api.backend.com/digimon.Digimon/",
            "OPTIONS api.backend.com/digimon.Digimon/",
            "POST api.backend.com/digimon.Digimon/Call",
            "GET web.backend.com/kubectl-mesh-verify/unrouted",
        ] {
            assert!(shown.iter().any(|s| s == want), "{want}: {shown:#?}");
        }
        let preflight = reqs.iter().find(|r| r.method == "OPTIONS").unwrap();
        assert!(preflight
            .headers
            .iter()
            .any(|(k, v)| k == "origin" && v == b"http://web.backend.com"));
    }
}
