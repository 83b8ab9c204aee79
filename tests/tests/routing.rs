//! The filter in real Envoy: host/path routing for the digimon app and every routing feature.
//! Each test starts its own Envoy on free ports (tests run in parallel); a failing test prints
//! Envoy's log.

use mesh_tests::client::Request;
use mesh_tests::envoy::EnvoySpec;
use mesh_tests::{workspace_root, MeshFixture};

const SERVER: &str = "outbound|6000||server.digimon.svc.cluster.local";
const WEB: &str = "outbound|8060||web.digimon.svc.cluster.local";

fn digimon() -> MeshFixture {
    MeshFixture::start(&workspace_root().join("examples/digimon/mesh.yaml")).unwrap()
}

fn features() -> MeshFixture {
    MeshFixture::start(&workspace_root().join("tests/fixtures/routing/features.yaml")).unwrap()
}

#[test]
fn digimon_api_grpc_web_calls_reach_the_server_translated() {
    let f = digimon();
    let r = f.envoy.send(
        &Request::new("POST", "api.backend.com", "/digimon.Digimon/Query")
            .header("content-type", "application/grpc-web-text")
            .header("x-grpc-web", "1")
            .body("AAAAAAYKBEFndW1vbg=="),
    );
    // The echo upstream does not speak gRPC, so the translated answer is not checked here
    // (tests/istio and the browser test talk to a real gRPC server); what reached it is.
    assert_eq!(f.upstreams[SERVER].count(), 1, "{r:?}");
    let got = f.upstreams[SERVER].log.lock().unwrap()[0].clone();
    assert_eq!(
        (got.method.as_str(), got.path.as_str()),
        ("POST", "/digimon.Digimon/Query")
    );
    assert_eq!(got.header("host"), Some("api.backend.com"));
    // Envoy's grpc_web filter, placed after the mesh filter, translated the call: gRPC
    // content type, the 20 base64 characters decoded to the 13-byte frame.
    assert_eq!(got.header("content-type"), Some("application/grpc"));
    assert_eq!(got.body_len, 13);
    // The filter's headers are internal: they never reach the upstream.
    assert_eq!(got.header(mesh_core::UPSTREAM_HEADER), None);
    assert_eq!(got.header(mesh_core::GRPC_WEB_HEADER), None);
    assert_eq!(f.upstreams[WEB].count(), 0);
}

#[test]
fn grpc_web_is_translated_only_on_grpc_web_routes() {
    let f = digimon();
    // The web host has no grpcWeb route: a gRPC-Web request there reaches it untranslated,
    // even when the client sends the filter's marker itself.
    let got = f
        .envoy
        .send(
            &Request::new("POST", "web.backend.com", "/x")
                .header("content-type", "application/grpc-web-text")
                .header(mesh_core::GRPC_WEB_HEADER, "1")
                .body("AAAAAAYKBEFndW1vbg=="),
        )
        .received()
        .expect("an upstream answered");
    assert_eq!(got.upstream, "web:8060");
    assert_eq!(
        got.header("content-type"),
        Some("application/grpc-web-text")
    );
    assert_eq!(got.body_len, 20);
    assert_eq!(got.header(mesh_core::GRPC_WEB_HEADER), None);
}

#[test]
fn digimon_web_host_reaches_web_in_any_case_and_port() {
    let f = digimon();
    for (host, path) in [
        ("web.backend.com", "/"),
        ("WEB.Backend.com:8080", "/static/app.js?v=2"),
        ("web.backend.com.", "/x"),
    ] {
        let got = f
            .envoy
            .send(&Request::get(host, path))
            .received()
            .expect("an upstream answered");
        assert_eq!(
            (got.upstream.as_str(), got.path.as_str()),
            ("web:8060", path),
            "{host}{path}"
        );
    }
    assert_eq!(f.upstreams[SERVER].count(), 0);
}

#[test]
fn unlisted_paths_get_the_default_404_and_unlisted_hosts_are_left_to_the_proxy() {
    let f = digimon();
    for (host, path) in [
        ("api.backend.com", "/"),
        ("api.backend.com", "/digimon.Digimon"),
    ] {
        // The filter answers Envoy's own "no route" 404: no body, no content type (the
        // not_found counter below shows it was the filter).
        let r = f.envoy.send(&Request::get(host, path));
        assert_eq!(r.status, 404, "{host}{path}: {r:?}");
        assert_eq!(r.header("content-type"), None, "{host}{path}: {r:?}");
        assert!(r.body.is_empty(), "{host}{path}: {r:?}");
    }
    // Hosts the config does not list pass through the filter untouched; this Envoy has no
    // other routes, so they get Envoy's own empty 404 (in Istio: Istio's routes).
    for (host, path) in [
        ("other.com", "/"),
        ("backend.com", "/digimon.Digimon/Query"),
    ] {
        let r = f.envoy.send(&Request::get(host, path));
        assert_eq!(r.status, 404, "{host}{path}: {r:?}");
        assert!(r.body.is_empty(), "{host}{path}: {r:?}");
    }
    assert_eq!(f.upstream_hits(), 0);
    assert_eq!(
        f.envoy.stat_reaching("wasmcustom.mesh_filter_not_found", 2),
        Some(2)
    );
    assert_eq!(
        f.envoy
            .stat_reaching("wasmcustom.mesh_filter_passed_through", 2),
        Some(2)
    );
}

#[test]
fn a_client_cannot_choose_the_upstream_with_the_routing_header() {
    let f = digimon();
    // Spoofing the web cluster on an API call still lands on the server...
    let got = f
        .envoy
        .send(
            &Request::new("POST", "api.backend.com", "/digimon.Digimon/Query")
                .header(mesh_core::UPSTREAM_HEADER, WEB),
        )
        .received()
        .expect("an upstream answered");
    assert_eq!(got.upstream, "server:6000");
    // ...and on an unrouted host it gets the 404, not the cluster it named.
    for spoof in [
        SERVER,
        WEB,
        "outbound|6000||server.digimon.svc.cluster.local, x",
    ] {
        let r = f.envoy.send(
            &Request::get("evil.com", "/digimon.Digimon/Query")
                .header(mesh_core::UPSTREAM_HEADER, spoof),
        );
        assert_eq!(r.status, 404, "{r:?}");
        let r = f
            .envoy
            .send(&Request::get("api.backend.com", "/nope").header("X-Mesh-Upstream", spoof));
        assert_eq!(r.status, 404, "{r:?}");
    }
    assert_eq!(f.upstreams[WEB].count(), 0);
    assert_eq!(f.upstreams[SERVER].count(), 1);
}

#[test]
fn requests_without_a_host_never_reach_an_upstream() {
    let f = digimon();
    let r = f
        .envoy
        .send(&Request::get("", "/digimon.Digimon/Query").no_host());
    assert!(r.status >= 400, "{r:?}");
    let r = f.envoy.send(&Request::get("", "/"));
    assert!(r.status >= 400, "{r:?}");
    assert_eq!(f.upstream_hits(), 0);
}

#[test]
fn digimon_cors_preflight_is_answered_by_the_filter() {
    let f = digimon();
    let r = f.envoy.send(
        &Request::new("OPTIONS", "api.backend.com", "/digimon.Digimon/Query")
            .header("origin", "http://web.backend.com")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "x-grpc-web,content-type"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://web.backend.com")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert!(
        r.header("access-control-allow-headers")
            .unwrap_or("")
            .contains("x-grpc-web"),
        "{r:?}"
    );
    assert_eq!(f.upstream_hits(), 0);

    let r = f.envoy.send(
        &Request::new("POST", "api.backend.com", "/digimon.Digimon/Query")
            .header("origin", "http://web.backend.com"),
    );
    assert_eq!(r.received().map(|g| g.upstream), Some("server:6000".into()));
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://web.backend.com")
    );
    assert!(r
        .header("access-control-expose-headers")
        .unwrap_or("")
        .contains("grpc-status"));
}

#[test]
fn rewrites_conditions_and_header_rules() {
    let f = features();
    let r = f.envoy.send(
        &Request::get("a.shop.example", "/api/users?page=2")
            .header("x-debug", "1")
            .header("x-keep", "y"),
    );
    let got = r.received().expect("upstream");
    assert_eq!(got.upstream, "api:8080");
    assert_eq!(got.path, "/v2/users?page=2");
    assert_eq!(got.header("host"), Some("api.internal"));
    assert_eq!(got.header("x-original-host"), Some("a.shop.example"));
    assert_eq!(got.header("x-route"), Some("api"));
    assert_eq!(got.header("x-debug"), None);
    assert_eq!(got.header("x-keep"), Some("y"));
    assert_eq!(
        r.header("x-served-by"),
        Some("outbound|8080||api.shop.svc.cluster.local")
    );

    let got = f
        .envoy
        .send(&Request::get("b.shop.example", "/api/users").header("x-canary", "1"))
        .received()
        .expect("upstream");
    assert_eq!(
        (got.upstream.as_str(), got.path.as_str()),
        ("api-canary:8080", "/api/users")
    );

    // Method condition: DELETE is not allowed on the api route, and nothing else matches.
    assert_eq!(
        f.envoy
            .send(&Request::new("DELETE", "a.shop.example", "/api/users"))
            .status,
        418
    );

    let got = f
        .envoy
        .send(&Request::get("a.shop.example", "/items/42"))
        .received()
        .expect("upstream");
    assert_eq!(got.upstream, "catalog:9000");
    assert_eq!(
        f.envoy
            .send(&Request::get("a.shop.example", "/items/42x"))
            .status,
        418
    );

    let got = f
        .envoy
        .send(&Request::get("www.shop.example", "/cart"))
        .received()
        .expect("upstream");
    assert_eq!(got.upstream, "web:80");
    assert_eq!(
        f.envoy.send(&Request::get("shop.example", "/cart")).status,
        418
    );
}

#[test]
fn direct_responses_redirects_and_the_custom_not_found() {
    let f = features();
    let r = f.envoy.send(&Request::get("a.shop.example", "/healthz"));
    assert_eq!(
        (r.status, r.body.as_slice(), r.header("content-type")),
        (200, &b"ok\n"[..], Some("text/plain"))
    );
    let r = f
        .envoy
        .send(&Request::get("a.shop.example:8443", "/old/page?x=1"));
    assert_eq!(
        (r.status, r.header("location")),
        (302, Some("http://a.shop.example:8443/new/page?x=1"))
    );
    let r = f.envoy.send(&Request::get("nowhere.example", "/"));
    assert_eq!((r.status, r.body.as_slice()), (418, &b"nothing here"[..]));
    assert_eq!(f.upstream_hits(), 0);
    assert_eq!(
        f.envoy
            .stat_reaching("wasmcustom.mesh_filter_direct_response", 1),
        Some(1)
    );
    assert_eq!(
        f.envoy.stat_reaching("wasmcustom.mesh_filter_redirect", 1),
        Some(1)
    );
}

#[test]
fn odd_requests_do_not_break_the_filter() {
    let f = digimon();
    let big = "a".repeat(64 * 1024);
    let cases = [
        Request::get("api.backend.com", "/digimon.Digimon/Query").header("x-big", &big),
        Request::get("[::1]:8080", "/"),
        Request::get("api.backend.com:notaport", "/digimon.Digimon/Query"),
        Request::get("api.backend.com", "/digimon.Digimon/Query")
            .header("origin", b"http://\xff\xfe"),
        Request::get(&"h".repeat(5000), "/"),
    ];
    for req in &cases {
        let r = f.envoy.send(req);
        assert!(
            r.status == 200 || r.status == 404 || r.status == 400,
            "{}: {r:?}",
            req.path
        );
    }
    // Still alive and routing after all that.
    let got = f
        .envoy
        .send(&Request::get("web.backend.com", "/"))
        .received()
        .expect("upstream");
    assert_eq!(got.upstream, "web:8060");
}

#[test]
fn an_invalid_config_is_rejected_with_the_field_named() {
    let bad = r#"{"apiVersion":"kubectl-mesh/v1alpha1","kind":"MeshConfig","hosts":[{"domains":["a"],"routes":[{"match":{"regex":"("},"to":{"cluster":"c"}}]}]}"#;
    let err = match EnvoySpec::mesh(bad, vec![]).start() {
        Ok(_) => panic!("Envoy accepted an invalid filter config"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("hosts[0].routes[0].match.regex"), "{err}");
}
