//! Traffic through a runnable proxy: one request per (virtual host domain, route) of Istio's
//! own routes, what each got (status and which upstream), and the running proxy to send
//! through.

use super::runnable::Runnable;
use super::IstioError;
use crate::verify::echo::Received;
use crate::verify::http::{Request, Response};
use crate::verify::process::{self, Envoy};
use serde_json::Value;
use std::cell::RefCell;
use std::fmt;
use std::path::Path;

/// A request sent to one listener of a runnable proxy.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Index of the listener in the runnable.
    pub listener: usize,
    /// The request.
    pub req: Request,
    /// Where it came from (listener, vhost, route), for messages.
    pub what: String,
}

/// What a request got: status, which upstream, the CORS headers of the answer, and the
/// content type the upstream received (a gRPC-Web translation would change it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Status code.
    pub status: u16,
    /// The echo upstream (cluster name) that answered, if any.
    pub upstream: Option<String>,
    /// `access-control-*` response headers, sorted.
    pub cors: Vec<(String, String)>,
    /// `content-type` as the upstream received it.
    pub upstream_content_type: Option<String>,
}

impl Outcome {
    /// An answer from `upstream` (or the proxy) without CORS headers and content type.
    pub fn plain(status: u16, upstream: Option<&str>) -> Outcome {
        Outcome {
            status,
            upstream: upstream.map(str::to_owned),
            cors: vec![],
            upstream_content_type: None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.upstream {
            Some(u) => write!(f, "{} from {u}", self.status)?,
            None => write!(f, "{} answered by the proxy", self.status)?,
        }
        if let Some(ct) = &self.upstream_content_type {
            write!(f, " (it got content-type {ct})")?;
        }
        for (k, v) in &self.cors {
            write!(f, ", {k}: {v}")?;
        }
        Ok(())
    }
}

impl From<&Response> for Outcome {
    fn from(r: &Response) -> Outcome {
        let mut cors: Vec<(String, String)> = r
            .headers
            .iter()
            .filter(|(k, _)| k.starts_with("access-control-"))
            .cloned()
            .collect();
        cors.sort();
        Outcome {
            status: r.status,
            upstream: r.header("x-upstream").map(str::to_owned),
            cors,
            // A gRPC-Web answer carries the echo upstream's report in `grpc-message`.
            upstream_content_type: r
                .received()
                .or_else(|| serde_json::from_str(r.header("grpc-message")?).ok())
                .and_then(|got: Received| got.header("content-type").map(str::to_owned)),
        }
    }
}

/// A host that matches `domain` (`*` and wildcards get a made-up name under them).
fn host_for(domain: &str) -> String {
    if domain == "*" {
        "probe.unlisted.example".into()
    } else if let Some(rest) = domain.strip_prefix('*') {
        format!("probe{rest}")
    } else if let Some(rest) = domain.strip_suffix('*') {
        format!("{rest}probe")
    } else {
        domain.to_owned()
    }
}

/// A path the route's match takes, or `None` for matches the probes do not construct.
fn path_for(m: &Value) -> Option<String> {
    if let Some(p) = m["path"].as_str() {
        return Some(p.to_owned());
    }
    let prefix = m["prefix"]
        .as_str()
        .or_else(|| m["path_separated_prefix"].as_str())?;
    Some(if prefix.ends_with('/') {
        format!("{prefix}probe")
    } else {
        format!("{prefix}/probe")
    })
}

/// Headers that satisfy the route's header matchers, or `None` if one cannot be satisfied
/// simply (inverted, regex, range).
fn headers_for(m: &Value) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for h in m["headers"].as_array().into_iter().flatten() {
        let name = h["name"].as_str()?.to_owned();
        if h["invert_match"] == true {
            return None;
        }
        let sm = &h["string_match"];
        let value = if let Some(v) = h["exact_match"].as_str().or(sm["exact"].as_str()) {
            v.to_owned()
        } else if let Some(v) = h["prefix_match"].as_str().or(sm["prefix"].as_str()) {
            format!("{v}probe")
        } else if h["present_match"] == true {
            "1".to_owned()
        } else {
            return None;
        };
        out.push((name, value));
    }
    if m["query_parameters"].is_array() {
        return None;
    }
    Some(out)
}

/// Requests any host may get: a plain GET, a CORS preflight and a cross-origin gRPC-Web call
/// (the shapes the filter acts on for its own hosts, which it must not act on here).
fn generic(host: &str) -> Vec<Request> {
    vec![
        Request::get(host, "/"),
        Request::new("OPTIONS", host, "/probe")
            .header("origin", "http://web.backend.com")
            .header("access-control-request-method", "POST"),
        Request::new("POST", host, "/probe")
            .header("origin", "http://web.backend.com")
            .header("content-type", "application/grpc-web-text")
            .body("AAAAAAYKBEFndW1vbg=="),
    ]
}

/// One probe per domain (at most three per virtual host) and route of every listener's route
/// configuration (kubectl-mesh's own routes skipped), plus [`generic`] requests per domain and
/// for a host no virtual host names.
pub fn istio_probes(rt: &Runnable) -> Vec<Probe> {
    let listeners: Vec<(&str, &Value)> = rt
        .listeners
        .iter()
        .map(|l| (l.label.as_str(), &l.route_config))
        .collect();
    probes_for(&listeners)
}

/// [`istio_probes`] for listeners given as `(label, route configuration)`, in order.
pub fn probes_for(listeners: &[(&str, &Value)]) -> Vec<Probe> {
    let mut out = Vec::new();
    for (li, (label, route_config)) in listeners.iter().enumerate() {
        for req in generic("unlisted.example") {
            out.push(Probe {
                listener: li,
                what: format!("{}: {} unlisted.example{}", label, req.method, req.path),
                req,
            });
        }
        for vh in route_config["virtual_hosts"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let vname = vh["name"].as_str().unwrap_or_default();
            for d in vh["domains"].as_array().into_iter().flatten().take(3) {
                let host = host_for(d.as_str().unwrap_or("*"));
                for req in generic(&host) {
                    out.push(Probe {
                        listener: li,
                        what: format!("{} vhost {vname}: {} {host}{}", label, req.method, req.path),
                        req,
                    });
                }
                for r in vh["routes"].as_array().into_iter().flatten() {
                    if r["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("kubectl-mesh"))
                    {
                        continue;
                    }
                    let (Some(path), Some(headers)) =
                        (path_for(&r["match"]), headers_for(&r["match"]))
                    else {
                        continue;
                    };
                    let mut req = Request::get(&host, &path);
                    for (k, v) in headers {
                        req = req.header(&k, v);
                    }
                    out.push(Probe {
                        listener: li,
                        req,
                        what: format!("{} vhost {vname}: GET {host}{path}", label),
                    });
                }
            }
        }
    }
    out
}

/// A runnable proxy running in Envoy, with its listeners' ports.
pub struct Running {
    /// The Envoy process.
    pub envoy: Envoy,
    /// Listener ports, in the runnable's order.
    pub ports: Vec<u16>,
}

impl Running {
    /// Starts Envoy (`$MESH_ENVOY`, else `envoy` on PATH) with `rt`.
    pub fn start(rt: &Runnable) -> Result<Running, IstioError> {
        let binary = process::envoy_binary(None).map_err(IstioError::Envoy)?;
        Running::start_on(&binary, rt)
    }

    /// Starts the Envoy `binary` with `rt`.
    pub fn start_on(binary: &Path, rt: &Runnable) -> Result<Running, IstioError> {
        let ports = RefCell::new(Vec::new());
        let envoy = Envoy::start_with(binary, &[], &|admin| {
            let p: Vec<u16> = rt.listeners.iter().map(|_| process::free_port()).collect();
            let b = rt.bootstrap(&p, admin);
            let first = p.first().copied().unwrap_or(0);
            *ports.borrow_mut() = p;
            (b, first)
        })
        .map_err(IstioError::Envoy)?;
        Ok(Running {
            envoy,
            ports: ports.into_inner(),
        })
    }

    /// Sends `req` to listener `listener`.
    pub fn send(&self, listener: usize, req: &Request) -> Result<Response, IstioError> {
        let port = self.ports.get(listener).copied().unwrap_or(0);
        req.send(port).map_err(|source| IstioError::Send {
            request: format!(
                "{} {}{} on port {port}",
                req.method,
                req.host.as_deref().unwrap_or(""),
                req.path
            ),
            source,
            log: self.envoy.log(),
        })
    }

    /// The outcome of every probe.
    pub fn outcomes(&self, probes: &[Probe]) -> Result<Vec<Outcome>, IstioError> {
        probes
            .iter()
            .map(|p| Ok(Outcome::from(&self.send(p.listener, &p.req)?)))
            .collect()
    }
}

/// The index of the listener whose label contains `part`.
pub fn listener(rt: &Runnable, part: &str) -> Option<usize> {
    rt.listeners.iter().position(|l| l.label.contains(part))
}
