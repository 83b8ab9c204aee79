//! The requests `verify` sends, generated from the original config: every domain (and its
//! port, trailing-dot and case variants) x every route's paths, header conditions met and not
//! met (also as a repeated header), CORS preflights and actual requests from allowed and other
//! origins, gRPC-Web calls, unknown hosts and paths; plus the user's own, as request matrices
//! ([`Matrix`], the format the conformance cases use too).

use super::http::Request;
use serde::Deserialize;
use serde_json::Value;

/// Hosts that exercise one Envoy domain.
pub fn domain_hosts(domain: &str) -> Vec<String> {
    let d = domain.to_ascii_lowercase();
    let base: Vec<String> = if d == "*" {
        vec!["any.example".into()]
    } else if let Some(rest) = d.strip_prefix("*.") {
        vec![format!("a.{rest}"), rest.to_owned()]
    } else if let Some(rest) = d.strip_prefix('*') {
        vec![format!("a{rest}")]
    } else if let Some(rest) = d.strip_suffix('*') {
        vec![format!("{rest}x")]
    } else {
        vec![d.clone()]
    };
    let mut out = Vec::new();
    for h in base {
        let (name, port) = match h.rsplit_once(':') {
            Some((n, p))
                if !p.is_empty()
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && (!n.contains(':') || n.ends_with(']')) =>
            {
                (n.to_owned(), Some(p.to_owned()))
            }
            _ => (h.clone(), None),
        };
        out.push(h.clone());
        out.push(h.to_ascii_uppercase());
        match port {
            // A domain with a port: also without it, and with another one.
            Some(p) => {
                out.push(name.clone());
                if p != "8080" {
                    out.push(format!("{name}:8080"));
                }
            }
            None => out.push(format!("{name}:8080")),
        }
        out.push(format!("{name}."));
    }
    out.dedup();
    out
}

/// A path the regex plausibly matches (best effort: common constructs replaced by a sample).
fn regex_sample(re: &str) -> String {
    let mut s = re.trim_start_matches('^').trim_end_matches('$').to_owned();
    for (from, to) in [
        (".*", "x"),
        (".+", "x"),
        ("[0-9]+", "1"),
        ("\\d+", "1"),
        ("[a-z]+", "a"),
        ("[^/]+", "a"),
        ("\\w+", "a"),
        ("(/.*)?", ""),
        ("\\.", "."),
        ("\\/", "/"),
        ("\\-", "-"),
    ] {
        s = s.replace(from, to);
    }
    s.retain(|c| !"()?|^$\\".contains(c));
    if !s.starts_with('/') {
        s.insert(0, '/');
    }
    s
}

/// Paths for one route match: matching ones and near misses.
pub fn route_paths(m: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(p) = m.get("prefix").and_then(Value::as_str) {
        out.push(if p.is_empty() {
            "/".into()
        } else {
            p.to_owned()
        });
        out.push(format!("{p}x"));
        out.push(format!("{}/y?q=1", p.trim_end_matches('/')));
        if p.len() > 1 {
            out.push(p[..p.len() - 1].to_owned());
        }
    } else if let Some(p) = m.get("path").and_then(Value::as_str) {
        out.push(p.to_owned());
        out.push(format!("{p}?a=b"));
        out.push(format!("{p}/"));
    } else if let Some(p) = m.get("path_separated_prefix").and_then(Value::as_str) {
        out.push(p.to_owned());
        out.push(format!("{p}/x"));
        out.push(format!("{p}x"));
    } else if let Some(re) = m
        .get("safe_regex")
        .and_then(|r| r.get("regex"))
        .or_else(|| m.get("regex"))
        .and_then(Value::as_str)
    {
        out.push(regex_sample(re));
    }
    if m.get("case_sensitive").and_then(Value::as_bool) == Some(false) {
        let upper: Vec<String> = out.iter().map(|p| p.to_ascii_uppercase()).collect();
        out.extend(upper);
    }
    out
}

/// Header sets for a route's header conditions: none, each met, each missed, and a repeated
/// header whose second value meets it.
pub fn header_sets(m: &Value) -> Vec<Vec<(String, String)>> {
    let mut out = vec![vec![]];
    for h in m
        .get("headers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = h.get("name").and_then(Value::as_str) else {
            continue;
        };
        let sm = h.get("string_match").unwrap_or(h);
        let text = |k: &str| sm.get(k).and_then(Value::as_str).map(str::to_owned);
        let good = text("exact")
            .or(text("exact_match"))
            .or(text("prefix").map(|p| format!("{p}x")))
            .or(text("prefix_match").map(|p| format!("{p}x")))
            .or(text("suffix").map(|p| format!("x{p}")))
            .or(text("suffix_match").map(|p| format!("x{p}")))
            .or(text("contains").map(|p| format!("x{p}x")))
            .or(sm
                .get("safe_regex")
                .or(h.get("safe_regex_match"))
                .and_then(|r| r.get("regex"))
                .and_then(Value::as_str)
                .map(regex_sample))
            .unwrap_or_else(|| "1".into());
        if name.starts_with(':') {
            continue;
        }
        out.push(vec![(name.to_owned(), good.clone())]);
        out.push(vec![(name.to_owned(), "zzz-other".into())]);
        out.push(vec![
            (name.to_owned(), "zzz-other".into()),
            (name.to_owned(), good),
        ]);
    }
    out
}

/// Origins to try against the CORS policies found in the config (and a few others).
pub fn origins(config: &Value) -> Vec<String> {
    let mut out = vec![
        "https://other.example".to_owned(),
        "http://localhost:3000".to_owned(),
        "null".to_owned(),
    ];
    let mut visit = |v: &Value| {
        let matchers = v
            .get("allow_origin_string_match")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for m in matchers {
            let t = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
            if let Some(e) = t("exact") {
                out.push(e);
            }
            if let Some(p) = t("prefix") {
                // `prefix: "*"` is Envoy's "any origin".
                out.push(match p.trim_end_matches('*') {
                    "" => "https://any.example".to_owned(),
                    p => format!("{p}.example"),
                });
            }
            if let Some(s) = t("suffix") {
                out.push(format!("https://a{s}"));
            }
            if let Some(r) = m
                .get("safe_regex")
                .and_then(|r| r.get("regex"))
                .and_then(Value::as_str)
            {
                out.push(
                    regex_sample(r)
                        .trim_start_matches('/')
                        .replace('x', "https://app"),
                );
            }
        }
        for o in v
            .get("allow_origin")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(s) = o.as_str() {
                out.push(if s == "*" {
                    "https://any.example".into()
                } else {
                    s.to_owned()
                });
            }
        }
    };
    fn walk(v: &Value, visit: &mut dyn FnMut(&Value)) {
        match v {
            Value::Object(m) => {
                if m.contains_key("allow_origin_string_match") || m.contains_key("allow_origin") {
                    visit(v);
                }
                m.values().for_each(|x| walk(x, visit));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, visit)),
            _ => {}
        }
    }
    walk(config, &mut visit);
    out.sort();
    out.dedup();
    out
}

/// Every request of a comparison for the route configuration `rc` (original), with the hosts
/// `hosts` (from the domains, or from the Ingress).
pub fn generate(
    rc: &Value,
    hosts_for_vhost: &dyn Fn(usize, &Value) -> Vec<String>,
    origins: &[String],
) -> Vec<Request> {
    let mut out = Vec::new();
    let mut all_paths = vec!["/".to_owned(), "/nonexistent-import-diff".to_owned()];
    for (v, vh) in rc["virtual_hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let hosts = hosts_for_vhost(v, vh);
        let routes: Vec<&Value> = vh["routes"].as_array().into_iter().flatten().collect();
        let mut paths = vec!["/".to_owned()];
        for r in &routes {
            paths.extend(route_paths(&r["match"]));
        }
        paths.dedup();
        all_paths.extend(paths.iter().cloned());
        // Plain requests on every host variant.
        for h in &hosts {
            for p in &paths {
                for m in ["GET", "POST"] {
                    out.push(Request::new(m, h, p));
                }
            }
        }
        let Some(h0) = hosts.first() else { continue };
        // Header conditions on the first host.
        for r in &routes {
            let sets = header_sets(&r["match"]);
            for p in route_paths(&r["match"]).into_iter().take(1) {
                for set in sets.iter().skip(1) {
                    let mut req = Request::new("GET", h0, &p);
                    for (k, val) in set {
                        req = req.header(k, val);
                    }
                    out.push(req);
                }
            }
        }
        // gRPC-Web calls (both sides translate them: native with its own grpc_web filter if it
        // has one, the mesh with the one Istio adds).
        for p in &paths {
            out.push(
                Request::new("POST", h0, p)
                    .header("content-type", "application/grpc-web+proto")
                    .header("x-grpc-web", "1")
                    .header("origin", "http://localhost:3000"),
            );
        }
        // CORS: actual requests and preflights from every origin, on the first host.
        for p in &paths {
            for o in origins {
                out.push(Request::new("GET", h0, p).header("origin", o));
                out.push(
                    Request::new("OPTIONS", h0, p)
                        .header("origin", o)
                        .header("access-control-request-method", "POST")
                        .header("access-control-request-headers", "content-type,x-grpc-web"),
                );
            }
        }
    }
    for p in all_paths.iter().take(6) {
        out.push(Request::new("GET", "unknown.invalid", p));
        out.push(Request::new("GET", "unknown.invalid:8080", p));
    }
    out
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

/// Reads a requests file: a YAML (or JSON) list of [`Matrix`] entries, errors naming the field.
pub fn read_matrices(file: &str, text: &str) -> Result<Vec<Matrix>, String> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        format!(
            "{file}: {}: {} (the file is a list of {{hosts: [...], paths, methods, origins, request_methods, request_headers, headers: [[\"name: value\"]]}})",
            e.path(),
            e.inner()
        )
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hosts_paths_and_headers() {
        assert_eq!(
            domain_hosts("api.x"),
            ["api.x", "API.X", "api.x:8080", "api.x."]
        );
        assert_eq!(
            domain_hosts("grpc:9911"),
            ["grpc:9911", "GRPC:9911", "grpc", "grpc:8080", "grpc."]
        );
        assert_eq!(
            domain_hosts("*.x.com")[..2],
            ["a.x.com".to_owned(), "A.X.COM".to_owned()]
        );
        assert_eq!(
            route_paths(&json!({"prefix": "/api"})),
            ["/api", "/apix", "/api/y?q=1", "/ap"]
        );
        assert_eq!(
            route_paths(&json!({"safe_regex": {"regex": "^/v[0-9]+/.*"}})),
            ["/v1/x"]
        );
        let sets =
            header_sets(&json!({"headers": [{"name": "x-p", "string_match": {"prefix": "ab"}}]}));
        assert_eq!(sets.len(), 4);
        assert_eq!(
            sets[3],
            [
                ("x-p".to_owned(), "zzz-other".to_owned()),
                ("x-p".to_owned(), "abx".to_owned())
            ]
        );
        let o = origins(
            &json!({"cors": {"allow_origin_string_match": [{"exact": "http://w"}], "allow_origin": ["*"]}}),
        );
        assert!(
            o.contains(&"http://w".to_owned()) && o.contains(&"https://any.example".to_owned())
        );
    }

    #[test]
    fn matrix_expands_to_the_cross_product() {
        let m: Vec<Matrix> = read_matrices(
            "r.yaml",
            "- hosts: [a, b]\n  methods: [GET, OPTIONS]\n  origins: [~, 'http://x']\n  headers: [[], ['x-a: 1', 'x-b: 2']]",
        )
        .unwrap();
        let reqs = m[0].expand();
        assert_eq!(reqs.len(), 16);
        assert_eq!(
            super::super::observe::describe(reqs.last().unwrap()),
            r#"OPTIONS / host=b origin="http://x" x-a="1" x-b="2""#
        );
        let e = read_matrices("r.yaml", "- hosts: [a]\n  path: [/]").unwrap_err();
        assert!(e.contains("r.yaml") && e.contains("path"), "{e}");
        assert_eq!(value_bytes(r"bytes:a\xffb\x4"), b"a\xffb\\x4");
        assert_eq!(value_bytes(r"a\xff"), br"a\xff");
    }
}
