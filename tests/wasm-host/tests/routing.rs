//! Routing, header rules, local answers and CORS through the real mesh_filter.wasm.

mod common;

use common::*;
use mesh_wasm_host::abi::Action;
use mesh_wasm_host::Filter;
use serde_json::json;

#[test]
fn digimon_example_routes_grpc_web_and_the_web_app() {
    let mut f = Filter::new(&digimon_json()).unwrap();
    assert!(
        f.logs()
            .iter()
            .any(|l| l.message == "mesh-filter: configured 2 hosts, 2 routes"),
        "{:?}",
        f.logs()
    );
    let r = f
        .request(&req(
            "api.backend.com",
            "POST",
            "/digimon.Digimon/Query",
            &[
                ("content-type", "application/grpc-web+proto"),
                ("origin", "http://web.backend.com"),
            ],
        ))
        .unwrap();
    assert_forward(&r, "outbound|6000||server.digimon.svc.cluster.local");
    assert_mutations(
        &r.mutations(),
        &[],
        &[
            (UPSTREAM, "outbound|6000||server.digimon.svc.cluster.local"),
            // The marker that lets the grpc_web filter after this one translate the call.
            (mesh_core::GRPC_WEB_HEADER, "1"),
        ],
    );
    let resp = f
        .response(&[(":status", "200"), ("grpc-status", "0")])
        .unwrap();
    assert_eq!(resp.action, Action::Continue);
    assert_mutations(
        &resp.mutations(),
        &[],
        &[
            ("access-control-allow-origin", "http://web.backend.com"),
            ("access-control-allow-credentials", "true"),
            (
                "access-control-expose-headers",
                "custom-header-1,grpc-status,grpc-message",
            ),
            ("vary", "Origin"),
        ],
    );
    let h = &resp.headers_after;
    assert_eq!(
        h.text("access-control-allow-origin").as_deref(),
        Some("http://web.backend.com")
    );
    assert_eq!(
        h.text("access-control-allow-credentials").as_deref(),
        Some("true")
    );
    assert_eq!(
        h.text("access-control-expose-headers").as_deref(),
        Some("custom-header-1,grpc-status,grpc-message")
    );
    assert_eq!(h.text("vary").as_deref(), Some("Origin"));

    let r = f
        .request(&req("web.backend.com", "GET", "/index.html", &[]))
        .unwrap();
    assert_forward(&r, "outbound|8060||web.digimon.svc.cluster.local");
    let r = f
        .request(&req("api.backend.com", "GET", "/index.html", &[]))
        .unwrap();
    let local = assert_local(&r, 404);
    // Envoy's own "no route" answer: no body, no content type (the counter says who answered).
    assert_eq!(local.headers.text("content-type"), None, "{local:?}");
    assert_eq!(local.body_text(), "", "{local:?}");

    f.tick().unwrap();
    assert_eq!(f.metric("mesh_filter_routed"), Some(2));
    assert_eq!(f.metric("mesh_filter_not_found"), Some(1));
    assert_eq!(f.metric("mesh_filter_host_errors"), Some(0));
}

#[test]
fn digimon_preflight_is_answered_locally() {
    let mut f = Filter::new(&digimon_json()).unwrap();
    let r = f
        .request(&req(
            "api.backend.com",
            "OPTIONS",
            "/digimon.Digimon/Query",
            &[
                ("origin", "http://web.backend.com"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "x-grpc-web,content-type"),
            ],
        ))
        .unwrap();
    let local = assert_local(&r, 200);
    let h = &local.headers;
    assert_eq!(
        h.text("access-control-allow-origin").as_deref(),
        Some("http://web.backend.com")
    );
    assert_eq!(
        h.text("access-control-allow-methods").as_deref(),
        Some("POST,GET,OPTIONS,PUT,DELETE")
    );
    let allow = h.text("access-control-allow-headers").unwrap();
    for name in [
        "custom-header-1",
        "x-grpc-web",
        "x-user-agent",
        "grpc-timeout",
    ] {
        assert!(allow.split(',').any(|n| n == name), "{name} in {allow}");
    }
    assert_eq!(h.text("access-control-max-age").as_deref(), Some("1728"));
    f.tick().unwrap();
    assert_eq!(f.metric("mesh_filter_cors_preflight"), Some(1));
    assert!(local.body.is_empty());
}

#[test]
fn prefix_method_and_header_conditions_pick_the_first_matching_route() {
    let mut f = features();
    // GET with x-version: 2 -> users-v2, with the prefix rewritten.
    let r = f
        .request(&req(
            "api.example.com",
            "GET",
            "/users/42?x=1",
            &[("x-version", "2")],
        ))
        .unwrap();
    assert_forward(&r, "outbound|8080||users-v2.shop.svc.corp.local");
    assert_eq!(
        r.headers_after.text(":path").as_deref(),
        Some("/v2/users/42?x=1")
    );
    assert_eq!(
        r.headers_after.text("x-envoy-original-path").as_deref(),
        Some("/users/42?x=1")
    );
    assert_mutations(
        &r.mutations(),
        &[(":path", "/users/42?x=1")],
        &[
            (":path", "/v2/users/42?x=1"),
            ("x-envoy-original-path", "/users/42?x=1"),
            ("x-mesh-host", "api"),
            (UPSTREAM, "outbound|8080||users-v2.shop.svc.corp.local"),
        ],
    );
    // Wrong method or header value: the next route.
    for (method, version) in [("POST", "2"), ("GET", "3")] {
        let r = f
            .request(&req(
                "api.example.com",
                method,
                "/users/42",
                &[("x-version", version)],
            ))
            .unwrap();
        assert_forward(&r, "outbound|8080||users.shop.svc.corp.local");
        assert_eq!(r.headers_after.text(":path").as_deref(), Some("/users/42"));
    }
}

#[test]
fn request_and_response_header_rules_with_templates() {
    let mut f = features();
    let r = f
        .request(&req(
            "api.example.com",
            "GET",
            "/users/7?q=a",
            &[
                ("x-internal", "secret"),
                ("x-internal", "again"),
                ("x-route", "client"),
            ],
        ))
        .unwrap();
    let cluster = "outbound|8080||users.shop.svc.corp.local";
    assert_forward(&r, cluster);
    let h = &r.headers_after;
    assert_eq!(h.count("x-internal"), 0, "host rule removes every value");
    assert_eq!(h.text("x-mesh-host").as_deref(), Some("api"));
    assert_eq!(
        h.all("x-route"),
        vec![&b"client"[..], b"users"],
        "add appends"
    );
    assert_eq!(
        h.text("x-orig").as_deref(),
        Some("GET api.example.com/users/7?q=a")
    );
    assert_mutations(
        &r.mutations(),
        &[("x-internal", "secret"), ("x-internal", "again")],
        &[
            ("x-mesh-host", "api"),
            ("x-orig", "GET api.example.com/users/7?q=a"),
            ("x-route", "users"),
            (UPSTREAM, cluster),
        ],
    );

    let resp = f
        .response(&[
            (":status", "200"),
            ("server", "upstream"),
            ("cache-control", "max-age=5"),
        ])
        .unwrap();
    let h = &resp.headers_after;
    assert_eq!(h.count("server"), 0);
    assert_eq!(h.all("cache-control"), vec![&b"max-age=5"[..], b"no-store"]);
    assert_eq!(
        h.text("x-served-by"),
        Some(format!("users@{cluster}")),
        "host response rule with ${{route}}@${{cluster}}"
    );
    assert_eq!(h.text(":status").as_deref(), Some("200"));
    let served_by = format!("users@{cluster}");
    assert_mutations(
        &resp.mutations(),
        &[("server", "upstream")],
        &[("x-served-by", &served_by), ("cache-control", "no-store")],
    );
}

#[test]
fn exact_path_direct_response_with_rules_and_no_cors() {
    let mut f = features();
    let r = f
        .request(&req(
            "api.example.com",
            "GET",
            "/healthz",
            &[("origin", "https://app.example.com")],
        ))
        .unwrap();
    let local = assert_local(&r, 200);
    assert_eq!(local.body, b"ok");
    assert_eq!(
        local.headers.text("content-type").as_deref(),
        Some("text/plain")
    );
    assert_eq!(local.headers.text("x-health").as_deref(), Some("health"));
    assert_eq!(
        local.headers.text("x-served-by").as_deref(),
        Some("health@")
    );
    assert_eq!(local.headers.count("access-control-allow-origin"), 0);
    f.tick().unwrap();
    assert_eq!(f.metric("mesh_filter_direct_response"), Some(1));
    // The exact path does not match longer paths.
    let r = f
        .request(&req("api.example.com", "GET", "/healthz/x", &[]))
        .unwrap();
    let local = assert_local(&r, 404);
    assert_eq!(local.body_text(), "nothing here", "custom notFound");
}

#[test]
fn regex_route_with_host_rewrite() {
    let mut f = features();
    let r = f
        .request(&req("api.example.com:8080", "GET", "/items/17?full=1", &[]))
        .unwrap();
    assert_forward(&r, "outbound|9000||items.catalog.svc.corp.local");
    assert_eq!(
        r.headers_after.text(":authority").as_deref(),
        Some("items.internal")
    );
    assert_eq!(
        r.headers_after.text("x-envoy-original-host").as_deref(),
        Some("api.example.com:8080")
    );
    // The regex must match the whole path.
    for path in ["/items/17x", "/items/", "/x/items/1"] {
        let r = f
            .request(&req("api.example.com", "GET", path, &[]))
            .unwrap();
        assert_local(&r, 404);
    }
}

#[test]
fn redirects() {
    let mut f = features();
    let r = f
        .request(&req("api.example.com:8080", "GET", "/old/a/b?q=1", &[]))
        .unwrap();
    let local = assert_local(&r, 308);
    assert_eq!(
        local.headers.text("location").as_deref(),
        Some("http://api.example.com:8080/new/a/b?q=1")
    );
    let r = f
        .request(&req("api.example.com:8080", "GET", "/login?next=/x", &[]))
        .unwrap();
    let local = assert_local(&r, 301);
    assert_eq!(
        local.headers.text("location").as_deref(),
        Some("https://api.example.com:8443/login")
    );
    f.tick().unwrap();
    assert_eq!(f.metric("mesh_filter_redirect"), Some(2));
}

#[test]
fn header_conditions_regex_present_invert_and_prefix() {
    let mut f = features();
    let beta = "outbound|80|beta|beta.shop.svc.corp.local";
    let ok = [("cookie", "a=1; beta=1; z=2"), ("x-tier", "gold-plus")];
    let r = f
        .request(&req("api.example.com", "GET", "/beta/x", &ok))
        .unwrap();
    assert_forward(&r, beta);
    let cases: [&[(&str, &str)]; 4] = [
        &[("x-tier", "gold")],
        &[("cookie", "beta=2"), ("x-tier", "gold")],
        &[("cookie", "beta=1"), ("x-tier", "silver")],
        &[("cookie", "beta=1"), ("x-tier", "gold"), ("x-block", "")],
    ];
    for extra in cases {
        let r = f
            .request(&req("api.example.com", "GET", "/beta/x", extra))
            .unwrap();
        assert_local(&r, 404);
    }
}

#[test]
fn host_matching_exact_wildcards_ports_case_dot_and_ip_literals() {
    let mut f = features();
    let api = "outbound|8080||users.shop.svc.corp.local";
    for authority in [
        "api.example.com",
        "API.Example.COM",
        "api.example.com.",
        "api.example.com:443",
        "Api.Example.Com.:8080",
        "[::1]",
        "[::1]:8080",
        "10.0.0.1",
        "10.0.0.1:80",
    ] {
        let r = f.request(&req(authority, "GET", "/users/1", &[])).unwrap();
        assert_forward(&r, api);
        assert_eq!(
            r.headers_after.text(":authority").as_deref(),
            Some(authority),
            "the authority itself is not rewritten"
        );
    }
    for (authority, cluster) in [
        ("shop.example.com", "outbound|80||wild.shop.svc.corp.local"),
        ("a.b.example.com:9", "outbound|80||wild.shop.svc.corp.local"),
        ("x.eu.example.com", "deep"),
        ("X.EU.EXAMPLE.COM.", "deep"),
        ("[2001:db8::1]", "v6"),
        ("[2001:DB8::1]:443", "v6"),
    ] {
        let r = f.request(&req(authority, "GET", "/", &[])).unwrap();
        assert_forward(&r, cluster);
    }
    for authority in [
        "example.com",
        "eu.example.com.evil.net",
        "2001:db8::1",
        "api.example.com:https",
        "",
        ":",
        "[",
        "api.example.com..",
    ] {
        let r = f.request(&req(authority, "GET", "/users/1", &[])).unwrap();
        assert_local(&r, 404);
    }
}

#[test]
fn catch_all_host_takes_requests_without_authority() {
    let mut f = Filter::new(&config(json!([
        {"domains": ["a.test"], "routes": [{"to": {"cluster": "a"}}]},
        {"domains": ["*"], "routes": [{"to": {"cluster": "any"}}]}
    ])))
    .unwrap();
    let r = f.request(&[(":method", "GET"), (":path", "/")]).unwrap();
    assert_forward(&r, "any");
    let r = f.request(&req("A.TEST", "GET", "/", &[])).unwrap();
    assert_forward(&r, "a");
    let r = f.request(&req("\u{e9}.test", "GET", "/", &[])).unwrap();
    assert_forward(&r, "any");
}

#[test]
fn spoofed_upstream_header_is_always_removed() {
    let mut f = features();
    let spoof = [
        (UPSTREAM, "outbound|6000||admin.shop.svc.corp.local"),
        ("X-Mesh-Upstream", "second"),
    ];
    // Routed: replaced by the filter's own single value.
    let r = f
        .request(&req("api.example.com", "GET", "/users/1", &spoof))
        .unwrap();
    assert_forward(&r, "outbound|8080||users.shop.svc.corp.local");
    // Not found, direct response, redirect, preflight: none may carry a client's value upstream.
    for (path, method, status) in [
        ("/nothing", "GET", 404),
        ("/healthz", "GET", 200),
        ("/old/x", "GET", 308),
    ] {
        let r = f
            .request(&req("api.example.com", method, path, &spoof))
            .unwrap();
        assert_local(&r, status);
    }
    let r = f.request(&req("unknown.test", "GET", "/", &spoof)).unwrap();
    assert_local(&r, 404);
    // A disallowed preflight is forwarded: with the filter's value, not the client's.
    let mut extra = spoof.to_vec();
    extra.extend([
        ("origin", "https://evil.test"),
        ("access-control-request-method", "GET"),
    ]);
    let r = f
        .request(&req("api.example.com", "OPTIONS", "/users/1", &extra))
        .unwrap();
    assert_forward(&r, "outbound|8080||users.shop.svc.corp.local");
}

#[test]
fn bodies_and_trailers_pass_through() {
    let mut f = features();
    let r = f
        .request_with(
            mesh_wasm_host::Headers::from_pairs(&req("api.example.com", "POST", "/users/1", &[])),
            false,
        )
        .unwrap();
    assert_forward(&r, "outbound|8080||users.shop.svc.corp.local");
    assert_eq!(
        f.request_body(b"{\"a\":1}", false).unwrap(),
        Action::Continue
    );
    assert_eq!(
        f.request_trailers(&[("x-t", "1")]).unwrap(),
        Action::Continue
    );
    f.response(&[(":status", "200")]).unwrap();
    assert_eq!(f.response_body(b"done", false).unwrap(), Action::Continue);
    assert_eq!(
        f.response_trailers(&[("grpc-status", "0")]).unwrap(),
        Action::Continue
    );
    f.finish().unwrap();
}

#[test]
fn requests_for_unlisted_hosts_are_left_untouched() {
    let mut f = Filter::new(&digimon_json()).unwrap();
    for (host, extra) in [
        ("other.example", vec![("origin", "http://web.backend.com")]),
        (
            "server.digimon.svc.cluster.local:6000",
            vec![("content-type", "application/grpc-web-text")],
        ),
    ] {
        let before = f.host_calls();
        let r = f
            .request(&req(host, "POST", "/digimon.Digimon/Query", &extra))
            .unwrap();
        assert_eq!(r.action, Action::Continue, "{r:#?}");
        assert!(r.local_response.is_none(), "{r:#?}");
        assert_mutations(&r.mutations(), &[], &[]);
        // One call reads every header; nothing else (the count goes out on the next tick).
        assert_eq!(f.host_calls() - before, 1, "{host}");
        let before = f.host_calls();
        let resp = f.response(&[(":status", "200")]).unwrap();
        assert_mutations(&resp.mutations(), &[], &[]);
        assert_eq!(f.host_calls() - before, 0, "no response work for {host}");
        f.finish().unwrap();
    }
    f.tick().unwrap();
    assert_eq!(f.metric("mesh_filter_passed_through"), Some(2));
}

#[test]
fn host_calls_per_request_are_the_minimum_the_job_needs() {
    let mut f = Filter::new(&digimon_json()).unwrap();
    let calls = |f: &Filter| -> Vec<(&'static str, u64)> { f.host_call_counts().to_vec() };
    let diff = |before: &[(&'static str, u64)], after: &[(&'static str, u64)]| {
        after
            .iter()
            .map(|(n, c)| {
                let b = before.iter().find(|(m, _)| m == n).map_or(0, |(_, c)| *c);
                (*n, c - b)
            })
            .filter(|(_, c)| *c > 0)
            .collect::<Vec<_>>()
    };
    let origin = ("origin", "http://web.backend.com");
    // Routed gRPC-Web call: read once, name the cluster, mark gRPC-Web.
    let before = calls(&f);
    let allocs = f.guest_allocations();
    f.request(&req(
        "api.backend.com",
        "POST",
        "/digimon.Digimon/Query",
        &[origin, ("content-type", "application/grpc-web-text")],
    ))
    .unwrap();
    let mut got = diff(&before, &calls(&f));
    got.sort();
    assert_eq!(
        got,
        vec![
            ("proxy_get_header_map_pairs", 1),
            ("proxy_replace_header_map_value", 2)
        ]
    );
    assert_eq!(
        f.guest_allocations() - allocs,
        1,
        "only the header map is handed over"
    );
    // Its response: the CORS grant (three values set, Vary added), nothing read.
    let before = calls(&f);
    f.response(&[(":status", "200")]).unwrap();
    let mut got = diff(&before, &calls(&f));
    got.sort();
    assert_eq!(
        got,
        vec![
            ("proxy_add_header_map_value", 1),
            ("proxy_replace_header_map_value", 3)
        ]
    );
    // The web app's GET: no CORS origin, no response rules: no response work at all.
    f.request(&req("web.backend.com", "GET", "/", &[])).unwrap();
    let before = f.host_calls();
    f.response(&[(":status", "200")]).unwrap();
    assert_eq!(f.host_calls() - before, 0);
    // A preflight: read, answer.
    let before = f.host_calls();
    f.request(&req(
        "api.backend.com",
        "OPTIONS",
        "/digimon.Digimon/Query",
        &[origin, ("access-control-request-method", "POST")],
    ))
    .unwrap();
    assert_eq!(f.host_calls() - before, 2);
    f.finish().unwrap();
    // The counts of all that: one host call per counter that moved, on the next tick.
    let before = calls(&f);
    f.tick().unwrap();
    assert_eq!(
        diff(&before, &calls(&f)),
        vec![("proxy_increment_metric", 2)],
        "routed and preflight"
    );
    assert_eq!(f.metric("mesh_filter_routed"), Some(2));
    assert_eq!(f.metric("mesh_filter_cors_preflight"), Some(1));
    let before = f.host_calls();
    f.tick().unwrap();
    assert_eq!(f.host_calls() - before, 0, "nothing moved, nothing sent");
}

/// Counters reach the host on the tick the filter asks for, not per request; `kubectl mesh
/// check` reads them from Envoy's stats at most one period later.
#[test]
fn counters_are_flushed_on_the_tick() {
    let mut f = Filter::new(&digimon_json()).unwrap();
    assert_eq!(f.tick_period_ms(), 1000);
    for _ in 0..3 {
        f.request(&req("web.backend.com", "GET", "/", &[])).unwrap();
        f.finish().unwrap();
    }
    assert_eq!(
        f.metric("mesh_filter_routed"),
        Some(0),
        "not before the tick"
    );
    f.tick().unwrap();
    assert_eq!(f.metric("mesh_filter_routed"), Some(3));
    f.request(&req("web.backend.com", "GET", "/", &[])).unwrap();
    f.tick().unwrap();
    assert_eq!(f.metric("mesh_filter_routed"), Some(4));
}

/// Envoy enters the VM only for callbacks the module exports: the filter exports the four a
/// stream needs (create, request and response headers, delete) and the tick, not bodies,
/// trailers, `on_done` or `on_log`.
#[test]
fn the_module_exports_only_the_callbacks_it_uses() {
    let f = Filter::new(&digimon_json()).unwrap();
    assert_eq!(
        f.exported_callbacks(),
        [
            "proxy_on_context_create",
            "proxy_on_configure",
            "proxy_on_tick",
            "proxy_on_request_headers",
            "proxy_on_response_headers",
            "proxy_on_delete"
        ]
    );
}
