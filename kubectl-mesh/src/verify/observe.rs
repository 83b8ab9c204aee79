//! What a client and an upstream can observe of one answer, normalized only as
//! [`NORMALIZATIONS`] lists, and how two observations differ, field by field. `verify` and the
//! differential suites (conformance, import) compare with this one copy.

use super::echo::Received;
use super::http::{Request, Response};
use std::fmt::Write as _;

/// Every normalization applied before comparing, with its justification (name, rule, why).
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
        "not compared; the body of a local answer is compared itself",
        "echo bodies embed per-request values (x-request-id); the upstream's report is compared \
         field by field instead.",
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
         forwarding route uses `timeout: 0s` (the route timeout is not a filter feature).",
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

/// What one side showed for one request, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Response status.
    pub status: u16,
    /// Response headers (normalized, sorted by name, ignored ones dropped).
    pub response_headers: Vec<(String, String)>,
    /// The upstream that answered and what it received, or `None` for a local answer.
    pub upstream: Option<UpstreamView>,
    /// The body of a local answer (an upstream's answer is its report, in `upstream`).
    pub body: Option<Vec<u8>>,
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

/// `host:port` without the port (IPv6 literals in brackets kept whole).
pub fn strip_port(host: &str) -> &str {
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
    let mut response_headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .filter(|(k, _)| !IGNORED_RESPONSE.contains(&k.as_str()))
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
    let body = upstream.is_none().then(|| resp.body.clone());
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
        body,
    }
}

/// A one-line rendering of a request.
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

/// One field two observations disagree on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDiff {
    /// `status`, `upstream`, `upstream request`, `response header NAME`, `upstream header
    /// NAME` or `body`.
    pub field: String,
    /// The native side's value (`-` when absent).
    pub native: String,
    /// The filter's value.
    pub mesh: String,
}

fn joined(values: &[(String, String)], name: &str) -> String {
    let v: Vec<&str> = values
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect();
    match v.is_empty() {
        true => "-".to_owned(),
        false => v.join(", "),
    }
}

fn names(values: &[(String, String)]) -> std::collections::BTreeSet<&str> {
    values.iter().map(|(k, _)| k.as_str()).collect()
}

/// A body for display: text up to 200 bytes, or its length.
fn show_body(b: Option<&Vec<u8>>) -> String {
    match b {
        None => "-".into(),
        Some(b) if b.is_empty() => "(empty)".into(),
        Some(b) if b.len() <= 200 => format!("{:?}", String::from_utf8_lossy(b)),
        Some(b) => format!("{} bytes", b.len()),
    }
}

/// The fields `native` and `mesh` disagree on, in a stable order.
pub fn field_diffs(native: &Observation, mesh: &Observation) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    let mut push = |field: String, n: String, m: String| {
        if n != m {
            out.push(FieldDiff {
                field,
                native: n,
                mesh: m,
            });
        }
    };
    push(
        "status".into(),
        native.status.to_string(),
        mesh.status.to_string(),
    );
    let name = |o: &Observation| {
        o.upstream
            .as_ref()
            .map_or_else(|| "local answer".to_owned(), |u| u.name.clone())
    };
    push("upstream".into(), name(native), name(mesh));
    if let (Some(n), Some(m)) = (&native.upstream, &mesh.upstream) {
        push(
            "upstream request".into(),
            format!("{} {}", n.method, n.path),
            format!("{} {}", m.method, m.path),
        );
        for h in names(&n.headers).union(&names(&m.headers)) {
            push(
                format!("upstream header {h}"),
                joined(&n.headers, h),
                joined(&m.headers, h),
            );
        }
    }
    let (n, m) = (&native.response_headers, &mesh.response_headers);
    // `x-upstream` is the echo upstream naming itself: the `upstream` field already says it.
    for h in names(n).union(&names(m)).filter(|h| **h != "x-upstream") {
        push(format!("response header {h}"), joined(n, h), joined(m, h));
    }
    if native.upstream.is_none() && mesh.upstream.is_none() {
        push(
            "body".into(),
            show_body(native.body.as_ref()),
            show_body(mesh.body.as_ref()),
        );
    }
    out
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
                "      {}no upstream (local answer), body {}",
                mark(other.upstream.is_none() && other.body == o.body),
                show_body(o.body.as_ref())
            );
        }
    }
    for h in &o.response_headers {
        let same = other.response_headers.contains(h);
        let _ = writeln!(s, "      {}< {}: {}", mark(same), h.0, h.1);
    }
    s
}

/// Renders both sides of a differing request, every line that differs marked `≠`.
pub fn diff_text(case: &str, req: &Request, native: &Observation, mesh: &Observation) -> String {
    format!(
        "[{case}] {}\n{}{}",
        describe(req),
        side_lines("native", native, mesh),
        side_lines("mesh  ", mesh, native)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn normalizes_only_the_listed_things() {
        let r = resp(
            200,
            &[
                ("vary", "Origin"),
                ("access-control-allow-methods", "GET, POST"),
                ("access-control-allow-origin", "http://a, b"),
                ("date", "now"),
            ],
            b"",
        );
        assert_eq!(
            observe(&r).response_headers,
            vec![
                ("access-control-allow-methods".into(), "GET,POST".into()),
                ("access-control-allow-origin".into(), "http://a, b".into()),
            ]
        );
        assert_eq!(strip_port("a.com:8080"), "a.com");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }

    #[test]
    fn a_json_404_differs_from_envoys_empty_one_in_body_and_content_type() {
        let envoy = observe(&resp(404, &[], b""));
        let json = observe(&resp(
            404,
            &[("content-type", "application/json")],
            br#"{"error":"not_found"}"#,
        ));
        let d = field_diffs(&envoy, &json);
        let fields: Vec<&str> = d.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["response header content-type", "body"]);
        assert_eq!(
            (d[0].native.as_str(), d[1].native.as_str()),
            ("-", "(empty)")
        );
        assert!(field_diffs(&envoy, &envoy).is_empty());
    }
}
