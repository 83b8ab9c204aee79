//! Property tests: config loading never panics, and host and path matching agree with simple
//! reference matchers written here. They also run on wasm32-wasip1 (`make test-wasm32`).
#![allow(clippy::unwrap_used, clippy::panic)]

use mesh_core::host::HostTable;
use mesh_core::{compile_json, HeaderList, RequestOutcome, UPSTREAM_HEADER};
use proptest::prelude::*;
use serde_json::{json, Value};

fn config() -> ProptestConfig {
    ProptestConfig {
        // No regression files: the tests also run in a WASI sandbox.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// --- config loading ------------------------------------------------------------------------

/// Words of the schema, so random documents reach deep into validation.
const KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "namespace",
    "clusterDomain",
    "hosts",
    "notFound",
    "name",
    "domains",
    "cors",
    "requestHeaders",
    "responseHeaders",
    "routes",
    "match",
    "grpcWeb",
    "to",
    "directResponse",
    "redirect",
    "prefix",
    "path",
    "regex",
    "methods",
    "headers",
    "exact",
    "present",
    "invert",
    "service",
    "port",
    "cluster",
    "prefixRewrite",
    "hostRewrite",
    "status",
    "body",
    "contentType",
    "scheme",
    "host",
    "stripQuery",
    "enabled",
    "allowOrigins",
    "allowMethods",
    "allowHeaders",
    "exposeHeaders",
    "maxAge",
    "allowCredentials",
    "suffix",
    "any",
    "set",
    "add",
    "remove",
];
const STRINGS: &[&str] = &[
    "kubectl-mesh/v1alpha1",
    "MeshConfig",
    "default",
    "cluster.local",
    "*",
    "*.a.com",
    "a.com",
    "/",
    "/api/",
    "(",
    ".*",
    "[0-9]+",
    "GET",
    "x-h",
    "${host}",
    "${nope}",
    "a\nb",
    "",
    "x-mesh-upstream",
    "svc",
    "svc.ns",
    "https",
    "[::1]",
    "é",
    "\u{0}",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop_oneof![Just(0u16), Just(80), Just(301), Just(599), any::<u16>()].prop_map(Value::from),
        proptest::sample::select(STRINGS).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..6).prop_map(
                |kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            ),
        ]
    })
}

/// A mostly valid document with random parts, so compile gets past the header checks.
fn near_valid_document() -> impl Strategy<Value = Value> {
    (json_value(), json_value(), json_value()).prop_map(|(route, host_extra, match_)| {
        let mut route = match route {
            Value::Object(m) => Value::Object(m),
            _ => json!({"to": {"cluster": "c"}}),
        };
        route["match"] = match_;
        let mut host = json!({"domains": ["a.com"], "routes": [route]});
        if let Value::Object(extra) = host_extra {
            for (k, v) in extra {
                host[k] = v;
            }
        }
        json!({"apiVersion": "kubectl-mesh/v1alpha1", "kind": "MeshConfig", "hosts": [host]})
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn loading_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = compile_json(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn loading_arbitrary_json_never_panics_and_errors_name_a_field(doc in json_value()) {
        if let Err(e) = compile_json(&doc.to_string()) {
            prop_assert!(!e.path().is_empty(), "{e}");
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn near_valid_documents_never_panic_and_accepted_ones_route(doc in near_valid_document()) {
        if let Ok(engine) = compile_json(&doc.to_string()) {
            // Whatever was accepted must handle a request without panicking.
            let mut h = HeaderList::from_pairs([(":authority", "a.com"), (":path", "/api/x?y"), (":method", "GET")]);
            let _ = engine.on_request_list(&mut h);
        }
    }
}

// --- host matching -------------------------------------------------------------------------

/// The reference: the host part of an authority, compared case-insensitively without one
/// trailing dot; exact beats the longest `*.suffix` beats `*`.
fn reference_lookup(domains: &[String], authority: Option<&[u8]>) -> Option<usize> {
    let norm = |d: &str| d.trim_end_matches('.').to_ascii_lowercase();
    let catch_all = domains.iter().position(|d| norm(d) == "*");
    let Some(authority) = authority else {
        return catch_all;
    };
    let text = match std::str::from_utf8(authority) {
        Ok(t) if t.is_ascii() => t,
        _ => return catch_all,
    };
    let host = if text.starts_with('[') {
        match text.find(']') {
            Some(end) => &text[..=end],
            None => text,
        }
    } else if text.matches(':').count() == 1 {
        let (h, port) = text.split_once(':').unwrap();
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            text
        }
    } else {
        text
    };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if host.is_empty() || host.len() > 255 {
        return catch_all;
    }
    if let Some(i) = domains
        .iter()
        .position(|d| !d.starts_with('*') && norm(d) == host)
    {
        return Some(i);
    }
    let mut best: Option<(usize, usize)> = None;
    for (i, d) in domains.iter().enumerate() {
        let d = norm(d);
        if let Some(suffix) = d.strip_prefix('*') {
            if suffix.len() > 1
                && host.len() > suffix.len()
                && host.ends_with(suffix)
                && best.is_none_or(|(len, _)| suffix.len() > len)
            {
                best = Some((suffix.len(), i));
            }
        }
    }
    best.map(|(_, i)| i).or(catch_all)
}

fn label() -> impl Strategy<Value = String> {
    proptest::sample::select(&["a", "b", "api", "x-1", "A", "Api", "eu"][..])
        .prop_map(str::to_owned)
}

fn name() -> impl Strategy<Value = String> {
    proptest::collection::vec(label(), 1..4).prop_map(|l| l.join("."))
}

fn domain() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => name(),
        3 => name().prop_map(|n| format!("*.{n}")),
        1 => Just("*".to_owned()),
        1 => name().prop_map(|n| format!("{n}.")),
        1 => Just("[::1]".to_owned()),
        1 => Just("[2001:db8::1]".to_owned()),
    ]
}

fn authority() -> impl Strategy<Value = Option<Vec<u8>>> {
    let host = prop_oneof![
        5 => name(),
        1 => Just("[::1]".to_owned()),
        1 => Just("[2001:DB8::1]".to_owned()),
        1 => Just("2001:db8::1".to_owned()),
        1 => Just(String::new()),
        1 => "[a-z.:\\[\\]*]{0,8}",
    ];
    let suffix = prop_oneof![
        4 => Just(String::new()),
        1 => Just(".".to_owned()),
        1 => Just("..".to_owned()),
    ];
    let port = prop_oneof![
        4 => Just(String::new()),
        2 => Just(":8080".to_owned()),
        1 => Just(":".to_owned()),
        1 => Just(":x".to_owned()),
        1 => Just(":80:80".to_owned()),
    ];
    prop_oneof![
        10 => (host, suffix, port).prop_map(|(h, s, p)| Some(format!("{h}{s}{p}").into_bytes())),
        1 => Just(None),
        1 => proptest::collection::vec(any::<u8>(), 0..12).prop_map(Some),
        1 => (1usize..3).prop_map(|n| Some(format!("{}.a", "a".repeat(200 * n)).into_bytes())),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn host_lookup_agrees_with_the_reference(
        domains in proptest::collection::vec(domain(), 1..6),
        authorities in proptest::collection::vec(authority(), 1..16),
    ) {
        // A rejected domain fails the whole config, so the table is rebuilt from the accepted ones.
        let mut accepted: Vec<String> = Vec::new();
        for d in &domains {
            let mut probe = HostTable::default();
            let all_ok = accepted.iter().chain([d]).enumerate().all(|(i, x)| probe.insert(x, i).is_ok());
            if all_ok {
                accepted.push(d.clone());
            }
        }
        let mut table = HostTable::default();
        for (i, d) in accepted.iter().enumerate() {
            table.insert(d, i).unwrap();
        }
        for a in &authorities {
            prop_assert_eq!(
                table.lookup(a.as_deref()),
                reference_lookup(&accepted, a.as_deref()),
                "domains {:?}, authority {:?}", accepted, a.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
            );
        }
    }
}

// --- path matching -------------------------------------------------------------------------

/// A route path pattern in a tiny language the reference can match by hand.
#[derive(Debug, Clone)]
enum Token {
    Lit(String),
    Digits,
    Any,
}

fn regex_of(tokens: &[Token]) -> String {
    tokens
        .iter()
        .map(|t| match t {
            Token::Lit(s) => regex_syntax_escape(s),
            Token::Digits => "[0-9]+".to_owned(),
            Token::Any => ".*".to_owned(),
        })
        .collect()
}

fn regex_syntax_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == '.' {
                format!("\\{c}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Backtracking matcher for the token language, over bytes.
fn tokens_match(tokens: &[Token], s: &[u8]) -> bool {
    match tokens.split_first() {
        None => s.is_empty(),
        Some((Token::Lit(l), rest)) => s
            .strip_prefix(l.as_bytes())
            .is_some_and(|r| tokens_match(rest, r)),
        Some((Token::Digits, rest)) => {
            let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
            (1..=n).any(|k| tokens_match(rest, &s[k..]))
        }
        Some((Token::Any, rest)) => (0..=s.len()).any(|k| tokens_match(rest, &s[k..])),
    }
}

/// The path without query or fragment.
fn reference_path_only(p: &[u8]) -> &[u8] {
    let end = p
        .iter()
        .position(|b| *b == b'?' || *b == b'#')
        .unwrap_or(p.len());
    &p[..end]
}

#[derive(Debug, Clone)]
enum PathRule {
    Prefix(String),
    Exact(String),
    Regex(Vec<Token>),
}

fn segment() -> impl Strategy<Value = String> {
    proptest::sample::select(&["/", "/a", "/ab", "/api/", "/v1", "/1", "/a.b", "x"][..])
        .prop_map(str::to_owned)
}

fn path_rule() -> impl Strategy<Value = PathRule> {
    let token = prop_oneof![
        3 => segment().prop_map(Token::Lit),
        1 => Just(Token::Digits),
        1 => Just(Token::Any),
    ];
    prop_oneof![
        proptest::collection::vec(segment(), 1..3)
            .prop_map(|s| PathRule::Prefix(format!("/{}", s.concat().trim_start_matches('/')))),
        proptest::collection::vec(segment(), 1..3)
            .prop_map(|s| PathRule::Exact(format!("/{}", s.concat().trim_start_matches('/')))),
        proptest::collection::vec(token, 1..4).prop_map(|mut t| {
            t.insert(0, Token::Lit("/".to_owned()));
            PathRule::Regex(t)
        }),
    ]
}

fn request_path() -> impl Strategy<Value = Vec<u8>> {
    let part = prop_oneof![
        6 => segment(),
        2 => "[0-9]{1,3}".prop_map(|s| s),
        1 => Just("?q=/api/".to_owned()),
        1 => Just("#f".to_owned()),
        1 => Just("%2F".to_owned()),
        1 => Just("é".to_owned()),
    ];
    proptest::collection::vec(part, 0..5).prop_map(|p| p.concat().into_bytes())
}

fn engine_for(rule: &PathRule, methods: &[&str]) -> mesh_core::Engine {
    let m = match rule {
        PathRule::Prefix(p) => json!({"prefix": p, "methods": methods}),
        PathRule::Exact(p) => json!({"path": p, "methods": methods}),
        PathRule::Regex(t) => json!({"regex": regex_of(t), "methods": methods}),
    };
    let doc = json!({"apiVersion": "kubectl-mesh/v1alpha1", "kind": "MeshConfig",
        "hosts": [{"domains": ["*"], "routes": [{"match": m, "to": {"cluster": "c"}}]}]});
    compile_json(&doc.to_string()).unwrap_or_else(|e| panic!("{rule:?}: {e}"))
}

fn reference_path_match(rule: &PathRule, methods: &[&str], path: &[u8], method: &str) -> bool {
    let p = reference_path_only(path);
    let path_ok = match rule {
        PathRule::Prefix(x) => p.starts_with(x.as_bytes()),
        PathRule::Exact(x) => p == x.as_bytes(),
        PathRule::Regex(t) => tokens_match(t, p),
    };
    path_ok && (methods.is_empty() || methods.contains(&method))
}

fn routes(engine: &mesh_core::Engine, path: &[u8], method: &str) -> bool {
    let mut h = HeaderList::from_pairs([(":authority", "any.test"), (":method", method)]);
    h.0.push((":path".to_owned(), path.to_vec()));
    match engine.on_request_list(&mut h) {
        RequestOutcome::Forward(state) => {
            assert_eq!(h.text(UPSTREAM_HEADER).as_deref(), engine.cluster(&state));
            true
        }
        RequestOutcome::Reply(r) => {
            assert_eq!(r.status, 404);
            assert_eq!(h.text(UPSTREAM_HEADER), None);
            false
        }
        RequestOutcome::PassThrough => panic!("a catch-all host owns every request"),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn path_and_method_matching_agrees_with_the_reference(
        rule in path_rule(),
        methods in proptest::sample::subsequence(&["GET", "POST"][..], 0..=2),
        requests in proptest::collection::vec((request_path(), proptest::sample::select(&["GET", "POST", "get"][..])), 1..12),
    ) {
        let engine = engine_for(&rule, &methods);
        for (path, method) in &requests {
            prop_assert_eq!(
                routes(&engine, path, method),
                reference_path_match(&rule, &methods, path, method),
                "rule {:?} ({:?}), methods {:?}, request {} {:?}",
                rule, match &rule { PathRule::Regex(t) => regex_of(t), _ => String::new() },
                methods, method, String::from_utf8_lossy(path)
            );
        }
    }
}

/// Envoy's RE2 matches paths and header values byte-wise, so `/a.*` matches `/a\xff`.
#[test]
fn regex_routes_match_non_utf8_paths_like_envoy() {
    let rule = PathRule::Regex(vec![Token::Lit("/a".to_owned()), Token::Any]);
    let engine = engine_for(&rule, &[]);
    let path = b"/a\xff";
    assert!(reference_path_match(&rule, &[], path, "GET"));
    assert!(routes(&engine, path, "GET"));
}
