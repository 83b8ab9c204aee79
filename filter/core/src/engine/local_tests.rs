//! Unit tests of the filter's local answers: CORS preflights and grants, direct responses and
//! redirects, each as native Envoy gives them.

use super::tests::{digimon, engine, req};
use super::*;
use serde_json::json;

#[test]
fn cors_preflight_and_actual() {
    let e = digimon();
    let origin = ("origin", "http://web.backend.com");
    let mut pre = req(
        Some("api.backend.com"),
        "OPTIONS",
        "/digimon.Digimon/Query",
        &[origin, ("access-control-request-method", "POST")],
    );
    let RequestOutcome::Reply(r) = e.on_request_list(&mut pre) else {
        panic!()
    };
    assert_eq!((r.kind, r.status), (ReplyKind::Preflight, 200));
    assert_eq!(
        r.headers.text("access-control-allow-origin").unwrap(),
        "http://web.backend.com"
    );
    assert_eq!(
        r.headers.text("access-control-allow-credentials").unwrap(),
        "true"
    );
    assert!(r
        .headers
        .text("access-control-allow-headers")
        .unwrap()
        .contains("x-grpc-web"));
    assert_eq!(r.headers.text("access-control-max-age").unwrap(), "60");

    let mut bad = req(
        Some("api.backend.com"),
        "OPTIONS",
        "/digimon.Digimon/Query",
        &[
            ("origin", "http://evil"),
            ("access-control-request-method", "POST"),
        ],
    );
    assert!(matches!(
        e.on_request_list(&mut bad),
        RequestOutcome::Forward { .. }
    ));

    let mut actual = req(
        Some("api.backend.com"),
        "POST",
        "/digimon.Digimon/Query",
        &[origin],
    );
    let RequestOutcome::Forward(state) = e.on_request_list(&mut actual) else {
        panic!()
    };
    let mut resp = HeaderList::from_pairs([(":status", "200")]);
    e.on_response_headers(&state, &mut resp).unwrap();
    assert_eq!(
        resp.text("access-control-allow-origin").unwrap(),
        "http://web.backend.com"
    );
    assert!(resp
        .text("access-control-expose-headers")
        .unwrap()
        .contains("grpc-status"));

    let mut other = req(
        Some("api.backend.com"),
        "POST",
        "/digimon.Digimon/Query",
        &[("origin", "http://evil")],
    );
    let RequestOutcome::Forward(state) = e.on_request_list(&mut other) else {
        panic!()
    };
    let mut resp = HeaderList::from_pairs([(":status", "200")]);
    e.on_response_headers(&state, &mut resp).unwrap();
    assert_eq!(resp.text("access-control-allow-origin"), None);
}

#[test]
fn rewrites_direct_responses_and_redirects() {
    let e = engine(json!([{"domains": ["*"], "routes": [
        {"match": {"prefix": "/old/"}, "redirect": {"prefixRewrite": "/new/", "status": 308}},
        {"match": {"path": "/health"}, "directResponse": {"status": 200, "body": "ok"}, "responseHeaders": {"set": {"x-served-by": "mesh ${route}"}}, "name": "health"},
        {"match": {"prefix": "/api/", "methods": ["GET"], "headers": [{"name": "x-env", "exact": "canary"}]},
         "to": {"cluster": "canary", "prefixRewrite": "/v2/", "hostRewrite": "internal"},
         "requestHeaders": {"set": {"x-original-host": "${host}"}, "remove": ["x-drop"]}},
        {"match": {"regex": "/api/[0-9]+"}, "to": {"service": "api.other", "port": 80}}
    ]}]));
    let mut h = req(Some("a.com:8080"), "GET", "/old/x?q=1", &[]);
    let RequestOutcome::Reply(r) = e.on_request_list(&mut h) else {
        panic!()
    };
    assert_eq!(
        (r.status, r.headers.text("location").unwrap()),
        (308, "http://a.com:8080/new/x?q=1".to_string())
    );

    let mut h = req(Some("a.com"), "GET", "/health", &[]);
    let RequestOutcome::Reply(r) = e.on_request_list(&mut h) else {
        panic!()
    };
    assert_eq!(
        (
            r.status,
            r.body.as_slice(),
            r.headers.text("x-served-by").unwrap()
        ),
        (200, &b"ok"[..], "mesh health".into())
    );

    let mut h = req(
        Some("a.com"),
        "GET",
        "/api/users?x",
        &[("x-env", "canary"), ("x-drop", "1")],
    );
    let RequestOutcome::Forward(st) = e.on_request_list(&mut h) else {
        panic!()
    };
    assert_eq!(e.cluster(&st), Some("canary"));
    assert_eq!(h.text(":path").unwrap(), "/v2/users?x");
    assert_eq!(h.text(":authority").unwrap(), "internal");
    assert_eq!(h.text("x-original-host").unwrap(), "a.com");
    assert_eq!(h.text("x-drop"), None);

    let mut h = req(Some("a.com"), "GET", "/api/123", &[]);
    let RequestOutcome::Forward(st) = e.on_request_list(&mut h) else {
        panic!()
    };
    assert_eq!(
        e.cluster(&st),
        Some("outbound|80||api.other.svc.cluster.local")
    );
    let mut h = req(Some("a.com"), "GET", "/api/12x", &[]);
    assert!(matches!(
        e.on_request_list(&mut h),
        RequestOutcome::Reply(_)
    ));
}

/// The port rule of Envoy 1.40's redirects, measured on native Envoy (the import suite's
/// handmade config found it): a scheme change drops only the old scheme's default port.
#[test]
fn redirect_ports_follow_envoy() {
    let e = engine(json!([{"domains": ["*"], "routes": [
        {"match": {"path": "/https"}, "redirect": {"scheme": "https"}},
        {"match": {"path": "/http"}, "redirect": {"scheme": "http"}},
        {"match": {"path": "/host"}, "redirect": {"host": "new.example"}},
        {"match": {"path": "/path"}, "redirect": {"path": "/p"}},
        {"match": {"path": "/port"}, "redirect": {"port": 7000}}
    ]}]));
    let loc = |host: &str, path: &str| {
        let mut h = req(Some(host), "GET", path, &[]);
        let RequestOutcome::Reply(r) = e.on_request_list(&mut h) else {
            panic!()
        };
        r.headers.text("location").unwrap()
    };
    for (host, path, want) in [
        ("a.example", "/https", "https://a.example/https"),
        ("a.example:80", "/https", "https://a.example/https"),
        ("a.example:443", "/https", "https://a.example:443/https"),
        ("a.example:8443", "/https", "https://a.example:8443/https"),
        ("a.example:80", "/http", "http://a.example:80/http"),
        ("a.example:8443", "/host", "http://new.example/host"),
        ("a.example:8443", "/path", "http://a.example:8443/p"),
        ("a.example:8443", "/port", "http://a.example:7000/port"),
    ] {
        assert_eq!(loc(host, path), want, "{host}{path}");
    }
}

/// Envoy names the request's URL in `location` on 201 and 3xx direct responses.
#[test]
fn created_and_3xx_direct_responses_carry_a_location() {
    let e = engine(json!([{"domains": ["*"], "routes": [
        {"match": {"path": "/made"}, "directResponse": {"status": 201}},
        {"match": {"path": "/moved"}, "directResponse": {"status": 301, "body": "gone"}},
        {"directResponse": {"status": 200}}
    ]}]));
    let location = |path: &str| {
        let mut h = req(Some("a.example:8080"), "GET", path, &[]);
        let RequestOutcome::Reply(r) = e.on_request_list(&mut h) else {
            panic!()
        };
        r.headers.text("location")
    };
    assert_eq!(
        location("/made?x=1").as_deref(),
        Some("http://a.example:8080/made?x=1")
    );
    assert_eq!(
        location("/moved").as_deref(),
        Some("http://a.example:8080/moved")
    );
    assert_eq!(location("/other"), None);
}

#[test]
fn preflights_match_envoy_expose_and_star_echo() {
    let e = engine(json!([{"domains": ["a.test"], "routes": [
        {"match": {"prefix": "/star/"}, "to": {"cluster": "c"},
         "cors": {"allowOrigins": [{"exact": "https://o"}], "allowMethods": ["*"], "allowHeaders": ["*"], "exposeHeaders": ["x-e"]}},
        {"match": {"prefix": "/"}, "to": {"cluster": "c"},
         "cors": {"allowOrigins": [{"exact": "https://o"}], "allowMethods": ["GET"], "exposeHeaders": ["x-e"]}}
    ]}]));
    let pre = |path: &str, extra: &[(&str, &str)]| {
        let mut all = vec![
            ("origin", "https://o"),
            ("access-control-request-method", "PATCH"),
        ];
        all.extend_from_slice(extra);
        let mut h = req(Some("a.test"), "OPTIONS", path, &all);
        match e.on_request_list(&mut h) {
            RequestOutcome::Reply(r) => r.headers,
            other => panic!("{other:?}"),
        }
    };
    let h = pre("/x", &[]);
    assert_eq!(
        h.text("access-control-expose-headers").as_deref(),
        Some("x-e")
    );
    assert_eq!(
        h.text("access-control-allow-methods").as_deref(),
        Some("GET")
    );
    let h = pre("/star/x", &[("access-control-request-headers", "x-a, x-b")]);
    assert_eq!(
        h.text("access-control-allow-methods").as_deref(),
        Some("PATCH")
    );
    assert_eq!(
        h.text("access-control-allow-headers").as_deref(),
        Some("x-a, x-b")
    );
    // Envoy sends the echo even when the request has no headers to echo.
    let h = pre("/star/x", &[]);
    assert_eq!(h.text("access-control-allow-headers").as_deref(), Some(""));
    // OPTIONS with an empty request method is not a preflight: forwarded, CORS on the answer.
    let mut h = req(
        Some("a.test"),
        "OPTIONS",
        "/x",
        &[
            ("origin", "https://o"),
            ("access-control-request-method", ""),
        ],
    );
    let RequestOutcome::Forward(state) = e.on_request_list(&mut h) else {
        panic!()
    };
    let mut resp = HeaderList::default();
    e.on_response_headers(&state, &mut resp).unwrap();
    assert_eq!(
        resp.text("access-control-allow-origin").as_deref(),
        Some("https://o")
    );
}

#[test]
fn direct_responses_and_redirects_get_no_cors_like_envoy() {
    let e = engine(json!([{"domains": ["a.test"],
    "cors": {"allowOrigins": [{"any": true}], "exposeHeaders": ["x-e"]},
    "routes": [
        {"match": {"path": "/direct"}, "directResponse": {"status": 200, "body": "ok"}},
        {"match": {"prefix": "/old/"}, "redirect": {"prefixRewrite": "/new/"}}
    ]}]));
    for (method, path) in [
        ("GET", "/direct"),
        ("OPTIONS", "/direct"),
        ("OPTIONS", "/old/x"),
    ] {
        let mut h = req(
            Some("a.test"),
            method,
            path,
            &[
                ("origin", "https://o"),
                ("access-control-request-method", "GET"),
            ],
        );
        let RequestOutcome::Reply(r) = e.on_request_list(&mut h) else {
            panic!()
        };
        assert_ne!(r.kind, ReplyKind::Preflight, "{method} {path}");
        assert_eq!(r.headers.text("access-control-allow-origin"), None);
    }
}
