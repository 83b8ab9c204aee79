//! CORS through the real mesh_filter.wasm: host and route policies, preflights answered
//! locally, actual requests granted or not, gRPC-Web's exposed headers.

mod common;

use common::*;
use mesh_wasm_host::Filter;

#[test]
fn cors_host_policy_preflight_actual_and_disallowed_origins() {
    let mut f = features();
    let users = "outbound|8080||users.shop.svc.corp.local";
    for origin in [
        "https://app.example.com",
        "https://shop.partner.org",
        "https://dev12.example.com",
    ] {
        let r = f
            .request(&req(
                "api.example.com",
                "OPTIONS",
                "/users/1",
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                ],
            ))
            .unwrap();
        let local = assert_local(&r, 200);
        let h = &local.headers;
        assert_eq!(
            h.text("access-control-allow-origin").as_deref(),
            Some(origin)
        );
        assert_eq!(
            h.text("access-control-allow-credentials").as_deref(),
            Some("true")
        );
        assert_eq!(
            h.text("access-control-allow-methods").as_deref(),
            Some("GET,POST")
        );
        assert_eq!(
            h.text("access-control-allow-headers").as_deref(),
            Some("content-type,x-token")
        );
        assert_eq!(h.text("access-control-max-age").as_deref(), Some("600"));

        let r = f
            .request(&req(
                "api.example.com",
                "GET",
                "/users/1",
                &[("origin", origin)],
            ))
            .unwrap();
        assert_forward(&r, users);
        let resp = f.response(&[(":status", "204")]).unwrap();
        let h = &resp.headers_after;
        assert_eq!(
            h.text("access-control-allow-origin").as_deref(),
            Some(origin)
        );
        assert_eq!(
            h.text("access-control-expose-headers").as_deref(),
            Some("x-trace")
        );
        assert_eq!(h.all("vary"), vec![&b"Origin"[..]]);
    }
    for origin in [
        "https://evil.example.com",
        "HTTPS://APP.EXAMPLE.COM",
        "https://dev.example.com",
        "https://partner.org.evil",
    ] {
        // A disallowed preflight is forwarded untouched; an actual request gets no CORS headers.
        let r = f
            .request(&req(
                "api.example.com",
                "OPTIONS",
                "/users/1",
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                ],
            ))
            .unwrap();
        assert_forward(&r, users);
        let r = f
            .request(&req(
                "api.example.com",
                "GET",
                "/users/1",
                &[("origin", origin)],
            ))
            .unwrap();
        assert_forward(&r, users);
        let resp = f.response(&[(":status", "200")]).unwrap();
        assert_eq!(
            resp.headers_after.count("access-control-allow-origin"),
            0,
            "{origin}"
        );
        assert_eq!(resp.headers_after.count("vary"), 0, "{origin}");
    }
    // OPTIONS without Access-Control-Request-Method is not a preflight.
    let r = f
        .request(&req(
            "api.example.com",
            "OPTIONS",
            "/users/1",
            &[("origin", "https://app.example.com")],
        ))
        .unwrap();
    assert_forward(&r, users);
}

#[test]
fn cors_route_overrides_any_origin_disabled_and_grpc_web() {
    let mut f = features();
    let pre = |f: &mut Filter, path: &str, origin: &str| {
        f.request(&req(
            "api.example.com",
            "OPTIONS",
            path,
            &[("origin", origin), ("access-control-request-method", "GET")],
        ))
        .unwrap()
    };
    // `any: true` on the route, credentials switched off there.
    let r = pre(&mut f, "/public/x", "https://whoever.test");
    let local = assert_local(&r, 200);
    assert_eq!(
        local.headers.text("access-control-allow-origin").as_deref(),
        Some("https://whoever.test"),
        "the origin is echoed, never *"
    );
    assert_eq!(local.headers.count("access-control-allow-credentials"), 0);
    assert_eq!(
        local
            .headers
            .text("access-control-allow-methods")
            .as_deref(),
        Some("GET,POST"),
        "fields the route leaves unset come from the host"
    );
    // `enabled: false` on the route: no preflight answer, no headers.
    let r = pre(&mut f, "/private/x", "https://app.example.com");
    assert_forward(&r, "outbound|80||private.shop.svc.corp.local");
    let r = f
        .request(&req(
            "api.example.com",
            "GET",
            "/private/x",
            &[("origin", "https://app.example.com")],
        ))
        .unwrap();
    assert!(r.local_response.is_none());
    let resp = f.response(&[(":status", "200")]).unwrap();
    assert_eq!(resp.headers_after.count("access-control-allow-origin"), 0);
    // gRPC-Web adds its headers to the host's lists.
    let r = pre(&mut f, "/pkg.Svc/Call", "https://app.example.com");
    let local = assert_local(&r, 200);
    let allow = local.headers.text("access-control-allow-headers").unwrap();
    assert!(allow.starts_with("content-type,x-token,"), "{allow}");
    assert!(allow.contains("x-grpc-web"), "{allow}");
    let r = f
        .request(&req(
            "api.example.com",
            "POST",
            "/pkg.Svc/Call",
            &[("origin", "https://app.example.com")],
        ))
        .unwrap();
    assert_forward(&r, "outbound|6000||grpc.shop.svc.corp.local");
    let resp = f.response(&[(":status", "200")]).unwrap();
    assert_eq!(
        resp.headers_after
            .text("access-control-expose-headers")
            .as_deref(),
        Some("x-trace,grpc-status,grpc-message")
    );
}
