//! The differential conformance suite: case files, request matrices, and native-vs-mesh diffing.
//!
//! A case (`tests/conformance/cases/NAME.yaml`) holds a native Envoy route configuration, the
//! equivalent mesh config and a matrix of requests. [`run_case`] starts one native Envoy (the
//! oracle) and one Envoy running the filter, both forwarding to the same echo upstreams, sends
//! every request through both and compares what a client and an upstream can observe.
//! Everything that is *not* compared, or compared after normalization, is listed in
//! [`NORMALIZATIONS`] with its reason (`tests/conformance/FINDINGS.md` repeats the table).

use crate::client::{Request, Response};
use crate::envoy::{Envoy, EnvoySpec};
use crate::upstream::{EchoUpstream, Received};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Every normalization the runner applies, with its justification (name, rule, why).
pub const NORMALIZATIONS: &[(&str, &str, &str)] = &[
    (
        "access-control-allow-methods/-headers/-expose-headers",
        "split on `,`, trim each item, re-join with `,` (order and case kept)",
        "Envoy sends the configured string verbatim (`GET, POST`); the filter joins list items \
         with `,`. Browsers parse both as the same list.",
    ),
    (
        "vary (response)",
        "not compared",
        "the filter deliberately adds `Vary: Origin` when the answer depends on the Origin \
         (correct caching); native Envoy's CORS filter does not.",
    ),
    (
        "date, server, x-envoy-upstream-service-time (response)",
        "not compared",
        "time- and process-dependent values, not behaviour.",
    ),
    (
        "content-length (response)",
        "not compared",
        "echo bodies embed per-request values (x-request-id) and the not-found bodies differ on \
         purpose; the upstream's report itself is compared field by field.",
    ),
    (
        "content-type and body of a 404 that no upstream answered",
        "not compared",
        "native Envoy's no-route 404 is empty; the filter answers its documented JSON body.",
    ),
    (
        "response header order",
        "headers sorted by name; values of one name keep their order",
        "the relative order of different header names carries no meaning in HTTP.",
    ),
    (
        "x-request-id (upstream)",
        "not compared",
        "a fresh random UUID per request.",
    ),
    (
        "x-envoy-expected-rq-timeout-ms (upstream)",
        "not compared",
        "set from the route timeout: native routes use Envoy's 15 s default, the filter's \
         forwarding route in the harness uses `timeout: 0s` (the route timeout is not a filter \
         feature).",
    ),
    (
        "host (upstream), when the request's Host carries a port",
        "`:port` removed on both sides",
        "the native side needs `strip_any_host_port` to route `host:port` (its domains have no \
         ports) and then forwards the stripped Host; the filter routes on the port-less host and \
         forwards the Host as sent, as Istio's gateway does.",
    ),
];

/// Response headers never compared (see [`NORMALIZATIONS`]).
const IGNORED_RESPONSE: &[&str] = &[
    "vary",
    "date",
    "server",
    "x-envoy-upstream-service-time",
    "content-length",
];
/// Upstream-received headers never compared (see [`NORMALIZATIONS`]).
const IGNORED_UPSTREAM: &[&str] = &["x-request-id", "x-envoy-expected-rq-timeout-ms"];
/// Comma-list CORS headers whose item spacing is normalized.
const COMMA_LISTS: &[&str] = &[
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-expose-headers",
];

/// One case file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What the case is about (printed with its results).
    #[serde(default)]
    pub description: String,
    /// The native Envoy side.
    pub native: NativeSide,
    /// The equivalent mesh config (`kubectl-mesh/v1alpha1` `MeshConfig`).
    pub mesh: mesh_core::MeshConfig,
    /// Extra clusters (beyond those the mesh config routes to) the native side references.
    #[serde(default)]
    pub clusters: Vec<String>,
    /// The request matrices; every one expands to the cross product of its lists.
    pub requests: Vec<Matrix>,
}

/// The native side of a case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NativeSide {
    /// The HTTP connection manager's `route_config` (Envoy v3 JSON/YAML).
    pub route_config: Value,
    /// HTTP filters before the router; default: the CORS filter alone.
    #[serde(default)]
    pub http_filters: Option<Vec<Value>>,
    /// HTTP connection manager fields; default `strip_any_host_port: true`. `{}` compares
    /// hosts as Envoy does by default (port and trailing dot are part of the host).
    #[serde(default)]
    pub hcm: Option<serde_json::Map<String, Value>>,
}

/// A compact request matrix: the cross product of all lists (each defaults to one entry).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matrix {
    /// Host header values.
    pub hosts: Vec<String>,
    /// Request targets (path and query). Default `/`.
    #[serde(default = "default_paths")]
    pub paths: Vec<String>,
    /// Methods. Default `GET`.
    #[serde(default = "default_methods")]
    pub methods: Vec<String>,
    /// `Origin` values; `~` sends none.
    #[serde(default = "none")]
    pub origins: Vec<Option<String>>,
    /// `Access-Control-Request-Method` values; `~` sends none.
    #[serde(default = "none")]
    pub request_methods: Vec<Option<String>>,
    /// `Access-Control-Request-Headers` values; `~` sends none.
    #[serde(default = "none")]
    pub request_headers: Vec<Option<String>>,
    /// Extra header sets: each entry is a list of `name: value` lines sent together.
    #[serde(default = "no_headers")]
    pub headers: Vec<Vec<String>>,
    /// A version finding (`tests/conformance/FINDINGS.md`): native Envoy older than this
    /// version (`1.40`) answers these requests differently, and the filter follows the newer
    /// behaviour. On older Envoy every request of the matrix must still *differ*, so the finding
    /// is checked on each version instead of skipped.
    #[serde(default)]
    pub envoy_since: Option<String>,
}

fn default_paths() -> Vec<String> {
    vec!["/".into()]
}
fn default_methods() -> Vec<String> {
    vec!["GET".into()]
}
fn none() -> Vec<Option<String>> {
    vec![None]
}
fn no_headers() -> Vec<Vec<String>> {
    vec![vec![]]
}

impl Matrix {
    /// Every request of the matrix, in a stable order.
    pub fn expand(&self) -> Vec<Request> {
        let mut out = Vec::new();
        for host in &self.hosts {
            for path in &self.paths {
                for method in &self.methods {
                    for origin in &self.origins {
                        for acrm in &self.request_methods {
                            for acrh in &self.request_headers {
                                for extra in &self.headers {
                                    let mut r = Request::new(method, host, path);
                                    for (name, v) in [
                                        ("origin", origin),
                                        ("access-control-request-method", acrm),
                                        ("access-control-request-headers", acrh),
                                    ] {
                                        if let Some(v) = v {
                                            r = r.header(name, value_bytes(v));
                                        }
                                    }
                                    for line in extra {
                                        let (k, v) = line.split_once(':').unwrap_or((line, ""));
                                        r = r.header(k.trim(), value_bytes(v.trim()));
                                    }
                                    out.push(r);
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// A matrix value as sent: `bytes:` followed by text with `\xNN` escapes sends those raw
/// bytes (for non-UTF-8 values); anything else is sent as its UTF-8 text.
pub fn value_bytes(v: &str) -> Vec<u8> {
    let Some(rest) = v.strip_prefix("bytes:") else {
        return v.as_bytes().to_vec();
    };
    let mut out = Vec::with_capacity(rest.len());
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 2..i + 4)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (
            b.get(i..i + 2),
            hex.and_then(|h| u8::from_str_radix(h, 16).ok()),
        ) {
            (Some(br"\x"), Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            _ => {
                out.extend_from_slice(b.get(i..i + 1).unwrap_or_default());
                i += 1;
            }
        }
    }
    out
}

impl Case {
    /// Reads a case file.
    pub fn load(path: &Path) -> anyhow::Result<Case> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        // serde_yaml_ng's errors name the field and the line/column.
        serde_yaml_ng::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// Every request of every matrix, with the matrix's `envoy_since`.
    pub fn requests(&self) -> Vec<(Request, Option<&str>)> {
        self.requests
            .iter()
            .flat_map(|m| {
                m.expand()
                    .into_iter()
                    .map(move |r| (r, m.envoy_since.as_deref()))
            })
            .collect()
    }
}

/// The case files: `$CONFORMANCE_CASES` (a directory) or `tests/conformance/cases`, sorted.
/// `$CONFORMANCE_ONLY` keeps only the cases whose name contains it.
pub fn case_files() -> Vec<PathBuf> {
    let dir = std::env::var_os("CONFORMANCE_CASES")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("tests/conformance/cases"));
    let only = std::env::var("CONFORMANCE_ONLY").unwrap_or_default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| {
        p.extension().is_some_and(|e| e == "yaml") && case_name(p).contains(only.as_str())
    });
    files.sort();
    files
}

/// A dotted version as numbers (`1.36.2` -> `[1, 36, 2]`); non-numeric parts end it.
pub fn parse_version(v: &str) -> Vec<u32> {
    v.split('.').map_while(|p| p.parse().ok()).collect()
}

/// The native Envoy's version, from `envoy --version` (`.../1.36.2/Clean/RELEASE/...`).
pub fn envoy_version() -> anyhow::Result<Vec<u32>> {
    let out = std::process::Command::new(crate::envoy::envoy_binary())
        .arg("--version")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split('/')
        .map(parse_version)
        .find(|v| v.len() == 3)
        .ok_or_else(|| anyhow::anyhow!("no version in `envoy --version`: {text}"))
}

/// A case's name: its file name without `.yaml`.
pub fn case_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// What one side showed for one request, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Response status.
    pub status: u16,
    /// Response headers (normalized, sorted by name, ignored ones dropped).
    pub response_headers: Vec<(String, String)>,
    /// The upstream that answered and what it received, or `None` for a local answer.
    pub upstream: Option<UpstreamView>,
}

/// What an upstream received, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamView {
    /// Upstream name (e.g. `server:6000`).
    pub name: String,
    /// Method.
    pub method: String,
    /// Path with query.
    pub path: String,
    /// Headers (sorted by name, ignored ones dropped).
    pub headers: Vec<(String, String)>,
}

fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Normalizes one side's response (see [`NORMALIZATIONS`]).
pub fn observe(resp: &Response) -> Observation {
    let upstream = if resp.header("x-upstream").is_some() {
        serde_json::from_slice::<Received>(&resp.body).ok()
    } else {
        None
    };
    let local_404 = upstream.is_none() && resp.status == 404;
    let mut response_headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .filter(|(k, _)| !IGNORED_RESPONSE.contains(&k.as_str()))
        .filter(|(k, _)| !(local_404 && k == "content-type"))
        .map(|(k, v)| {
            let v = if COMMA_LISTS.contains(&k.as_str()) {
                v.split(',').map(str::trim).collect::<Vec<_>>().join(",")
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    response_headers.sort_by(|a, b| a.0.cmp(&b.0));
    let upstream = upstream.map(|r| {
        let mut headers: Vec<(String, String)> = r
            .headers
            .into_iter()
            .filter(|(k, _)| !IGNORED_UPSTREAM.contains(&k.as_str()))
            .map(|(k, v)| {
                let v = if k == "host" {
                    strip_port(&v).to_owned()
                } else {
                    v
                };
                (k, v)
            })
            .collect();
        headers.sort_by(|a, b| a.0.cmp(&b.0));
        UpstreamView {
            name: r.upstream,
            method: r.method,
            path: r.path,
            headers,
        }
    });
    Observation {
        status: resp.status,
        response_headers,
        upstream,
    }
}

/// The outcome of one case.
#[derive(Debug, Default)]
pub struct CaseReport {
    /// Case name.
    pub name: String,
    /// Requests compared.
    pub comparisons: usize,
    /// Requests that reached an upstream on the native side.
    pub forwarded: usize,
    /// Requests of `envoy_since` matrices that this (older) Envoy answers differently, as
    /// the finding records.
    pub version_findings: usize,
    /// One readable block per differing request.
    pub diffs: Vec<String>,
}

/// A one-line rendering of a request, for diffs.
pub fn describe(r: &Request) -> String {
    let mut s = format!(
        "{} {} host={}",
        r.method,
        r.path,
        r.host.as_deref().unwrap_or("<none>")
    );
    for (k, v) in &r.headers {
        let _ = write!(s, " {k}=\"{}\"", v.escape_ascii());
    }
    s
}

fn side_lines(label: &str, o: &Observation, other: &Observation) -> String {
    let mut s = format!("    {label}: status {}\n", o.status);
    let mark = |same: bool| if same { "  " } else { "≠ " };
    match &o.upstream {
        Some(u) => {
            let same = other
                .upstream
                .as_ref()
                .is_some_and(|x| x.name == u.name && x.method == u.method && x.path == u.path);
            let _ = writeln!(
                s,
                "      {}upstream {} got {} {}",
                mark(same),
                u.name,
                u.method,
                u.path
            );
            for h in &u.headers {
                let same = other
                    .upstream
                    .as_ref()
                    .is_some_and(|x| x.headers.contains(h));
                let _ = writeln!(s, "      {}  > {}: {}", mark(same), h.0, h.1);
            }
        }
        None => {
            let _ = writeln!(
                s,
                "      {}no upstream (local answer)",
                mark(other.upstream.is_none())
            );
        }
    }
    for h in &o.response_headers {
        let same = other.response_headers.contains(h);
        let _ = writeln!(s, "      {}< {}: {}", mark(same), h.0, h.1);
    }
    s
}

/// Renders both sides of a differing request.
pub fn diff_text(case: &str, req: &Request, native: &Observation, mesh: &Observation) -> String {
    format!(
        "[{case}] {}\n{}{}",
        describe(req),
        side_lines("native", native, mesh),
        side_lines("mesh  ", mesh, native)
    )
}

/// The native side's CORS filter entry.
pub fn cors_filter() -> Value {
    json!({
        "name": "envoy.filters.http.cors",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}
    })
}

/// Starts both Envoys for `case` and runs every request through them.
pub fn run_case(path: &Path) -> anyhow::Result<CaseReport> {
    let name = case_name(path);
    let case = Case::load(path)?;
    let engine = mesh_core::compile(&case.mesh)
        .map_err(|e| anyhow::anyhow!("{name}: mesh config invalid: {e}"))?;
    let mut cluster_names: Vec<String> = engine.clusters().into_iter().map(str::to_owned).collect();
    cluster_names.extend(case.clusters.iter().cloned());
    cluster_names.sort();
    cluster_names.dedup();
    let upstreams: BTreeMap<String, EchoUpstream> = cluster_names
        .iter()
        .map(|c| (c.clone(), EchoUpstream::start(&crate::short_name(c))))
        .collect();
    let clusters: Vec<(String, u16)> = upstreams.iter().map(|(c, u)| (c.clone(), u.port)).collect();
    let native_spec = EnvoySpec {
        route_config: case.native.route_config.clone(),
        http_filters: case
            .native
            .http_filters
            .clone()
            .unwrap_or_else(|| vec![cors_filter()]),
        clusters: clusters.clone(),
        hcm_extra: case
            .native
            .hcm
            .clone()
            .unwrap_or_else(crate::envoy::strip_any_host_port),
    };
    let mesh_spec = EnvoySpec::mesh(&case.mesh.to_json(), clusters);
    // Start both at once: Envoy start-up (and the wasm compile) dominates a case's run time.
    let (native, mesh) = std::thread::scope(|s| {
        let n = s.spawn(|| native_spec.start());
        let m = mesh_spec.start();
        (n.join(), m)
    });
    let native: Envoy = native
        .map_err(|_| anyhow::anyhow!("{name}: native start panicked"))?
        .map_err(|e| anyhow::anyhow!("{name}: native Envoy: {e}"))?;
    let mesh: Envoy = mesh.map_err(|e| anyhow::anyhow!("{name}: mesh Envoy: {e}"))?;
    let mut report = CaseReport {
        name: name.clone(),
        ..Default::default()
    };
    let version = envoy_version()?;
    for (req, since) in case.requests() {
        let n = observe(&native.send(&req));
        let m = observe(&mesh.send(&req));
        report.comparisons += 1;
        if n.upstream.is_some() {
            report.forwarded += 1;
        }
        let older = since.is_some_and(|v| version < parse_version(v));
        match (older, n == m) {
            (false, true) => {}
            (false, false) => report.diffs.push(diff_text(&name, &req, &n, &m)),
            (true, false) => report.version_findings += 1,
            (true, true) => report.diffs.push(format!(
                "[{name}] {}\n    recorded as a version finding (Envoy < {}), but Envoy {} answers \
                 like the filter: update the case and FINDINGS.md\n",
                describe(&req),
                since.unwrap_or_default(),
                version.iter().map(u32::to_string).collect::<Vec<_>>().join(".")
            )),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_expands_to_the_cross_product() {
        let m: Matrix = serde_yaml_ng::from_str(
            "hosts: [a, b]\nmethods: [GET, OPTIONS]\norigins: [~, 'http://x']\nheaders: [[], ['x-a: 1', 'x-b: 2']]",
        )
        .unwrap();
        let reqs = m.expand();
        assert_eq!(reqs.len(), 16);
        let last = reqs.last().unwrap();
        assert_eq!(
            describe(last),
            r#"OPTIONS / host=b origin="http://x" x-a="1" x-b="2""#
        );
    }

    #[test]
    fn findings_md_lists_every_normalization() {
        let path = crate::workspace_root().join("tests/conformance/FINDINGS.md");
        let text = std::fs::read_to_string(path).unwrap();
        for (what, _, _) in NORMALIZATIONS {
            assert!(text.contains(what), "FINDINGS.md does not list `{what}`");
        }
    }

    #[test]
    fn normalizes_only_the_listed_things() {
        let resp = Response {
            status: 200,
            headers: vec![
                ("vary".into(), "Origin".into()),
                ("access-control-allow-methods".into(), "GET, POST".into()),
                ("access-control-allow-origin".into(), "http://a, b".into()),
                ("date".into(), "now".into()),
            ],
            body: vec![],
        };
        assert_eq!(
            observe(&resp).response_headers,
            vec![
                ("access-control-allow-methods".into(), "GET,POST".into()),
                ("access-control-allow-origin".into(), "http://a, b".into()),
            ]
        );
        assert_eq!(strip_port("a.com:8080"), "a.com");
        assert!(parse_version("1.36.2") < parse_version("1.40"));
        assert!(parse_version("1.40.0") >= parse_version("1.40"));
        assert_eq!(value_bytes(r"bytes:a\xffb\x4"), b"a\xffb\\x4");
        assert_eq!(value_bytes(r"a\xff"), br"a\xff");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }
}
