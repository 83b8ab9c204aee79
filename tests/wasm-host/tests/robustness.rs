//! Invalid configurations, hostile requests (huge and non-UTF-8 headers), reconfiguration, and
//! the harness's own loud failures.

mod common;

use common::*;
use mesh_wasm_host::abi::{Action, LogLevel, Status};
use mesh_wasm_host::{Filter, HarnessError, Headers};
use serde_json::json;

fn rejected(config: &str) -> Vec<String> {
    match Filter::new(config) {
        Err(HarnessError::Rejected { logs }) => logs
            .into_iter()
            .filter(|l| l.level >= LogLevel::Error)
            .map(|l| l.message)
            .collect(),
        Err(other) => panic!("expected a rejection, got {other}"),
        Ok(_) => panic!("configuration was accepted: {config}"),
    }
}

#[test]
fn invalid_configs_are_rejected_in_on_configure_naming_the_field() {
    let ok_route = json!({"to": {"cluster": "c"}});
    let cases = [
        (json!({"apiVersion": "v0", "kind": "MeshConfig", "hosts": []}).to_string(), "apiVersion"),
        (json!({"apiVersion": "kubectl-mesh/v1alpha1", "kind": "Mesh", "hosts": []}).to_string(), "kind"),
        (json!({"apiVersion": "kubectl-mesh/v1alpha1", "kind": "MeshConfig", "namespace": "Bad_NS", "hosts": []}).to_string(), "namespace"),
        (config(json!([])), "hosts"),
        (config(json!([{"domains": [], "routes": [ok_route]}])), "hosts[0].domains"),
        (config(json!([{"domains": ["a b"], "routes": [ok_route]}])), "hosts[0].domains[0]"),
        (config(json!([{"domains": ["a.test"], "routes": [ok_route]}, {"domains": ["A.test."], "routes": [ok_route]}])), "hosts[1].domains[0]"),
        (config(json!([{"domains": ["a.test"], "routes": []}])), "hosts[0].routes"),
        (config(json!([{"domains": ["a"], "routes": [{"match": {"regex": "("}, "to": {"cluster": "c"}}]}])), "hosts[0].routes[0].match.regex"),
        (config(json!([{"domains": ["a"], "routes": [{"match": {"prefix": "no-slash"}, "to": {"cluster": "c"}}]}])), "hosts[0].routes[0].match.prefix"),
        (config(json!([{"domains": ["a"], "routes": [{"match": {"methods": ["get"]}, "to": {"cluster": "c"}}]}])), "hosts[0].routes[0].match.methods[0]"),
        (config(json!([{"domains": ["a"], "routes": [{"to": {"service": "s"}}]}])), "hosts[0].routes[0].to.port"),
        (config(json!([{"domains": ["a"], "routes": [{"to": {"service": "s", "port": 0}}]}])), "hosts[0].routes[0].to.port"),
        (config(json!([{"domains": ["a"], "routes": [{"to": {"service": "s", "port": 1}, "typo": 1}]}])), "hosts[0].routes[0].typo"),
        (config(json!([{"domains": ["a"], "routes": [{"to": {"cluster": "c"}, "redirect": {"status": 301}}]}])), "hosts[0].routes[0]"),
        (config(json!([{"domains": ["a"], "routes": [{"redirect": {"status": 200}}]}])), "hosts[0].routes[0].redirect.status"),
        (config(json!([{"domains": ["a"], "routes": [{"directResponse": {"status": 99}}]}])), "hosts[0].routes[0].directResponse.status"),
        (config(json!([{"domains": ["a"], "cors": {"allowOrigins": [{"any": true}], "allowCredentials": true}, "routes": [ok_route]}])), "hosts[0].cors"),
        (config(json!([{"domains": ["a"], "routes": [{"to": {"cluster": "c"}, "requestHeaders": {"set": {"x": "a\nb"}}}]}])), "hosts[0].routes[0].requestHeaders"),
        (config(json!([{"domains": ["a"], "routes": [{"to": {"cluster": "c"}, "requestHeaders": {"set": {"x-mesh-upstream": "evil"}}}]}])), "hosts[0].routes[0].requestHeaders"),
        (config(json!([{"domains": ["a"], "routes": [{"to": {"cluster": "c"}, "responseHeaders": {"add": {"x": "${nope}"}}}]}])), "hosts[0].routes[0].responseHeaders"),
    ];
    for (doc, field) in cases {
        let errors = rejected(&doc);
        assert!(
            errors
                .iter()
                .any(|m| m.starts_with("mesh-filter: invalid configuration: ")
                    && m.contains(&format!(" {field}: "))),
            "{field}: {errors:?}"
        );
    }
}

#[test]
fn unparsable_configs_are_rejected_not_trapped() {
    let yaml = std::fs::read_to_string(
        mesh_wasm_host::workspace_root().join("examples/digimon/mesh.yaml"),
    )
    .unwrap();
    for doc in [
        "",
        "{",
        "null",
        "[]",
        "42",
        "\"text\"",
        yaml.as_str(),
        "{\"apiVersion\": 1}",
    ] {
        let errors = rejected(doc);
        assert!(
            errors
                .iter()
                .any(|m| m.starts_with("mesh-filter: invalid configuration")),
            "{doc:?}: {errors:?}"
        );
    }
}

#[test]
fn a_rejected_reconfiguration_keeps_the_previous_routes() {
    let mut f = Filter::new(&config(
        json!([{"domains": ["a.test"], "routes": [{"to": {"cluster": "one"}}]}]),
    ))
    .unwrap();
    assert!(!f.configure("{\"kind\": 1}").unwrap());
    let r = f.request(&req("a.test", "GET", "/", &[])).unwrap();
    assert_forward(&r, "one");
    assert!(f
        .configure(&config(
            json!([{"domains": ["a.test"], "routes": [{"to": {"cluster": "two"}}]}])
        ))
        .unwrap());
    let r = f.request(&req("a.test", "GET", "/", &[])).unwrap();
    assert_forward(&r, "two");
    // Counters are defined once per VM and keep counting across configurations.
    f.tick().unwrap();
    assert_eq!(f.metrics().len(), 9, "{:?}", f.metrics());
    assert_eq!(f.metric("mesh_filter_config_ok"), Some(1));
    assert_eq!(f.metric("mesh_filter_routed"), Some(2));
}

#[test]
fn a_large_configuration_loads_and_routes() {
    let hosts: Vec<_> = (0..500)
        .map(|i| {
            json!({"domains": [format!("h{i}.test"), format!("*.h{i}.test")], "routes": [
                {"match": {"prefix": "/a/"}, "to": {"cluster": format!("a{i}")}},
                {"match": {"regex": "/b/[0-9]+"}, "to": {"cluster": format!("b{i}")}},
                {"match": {"path": "/c"}, "directResponse": {"status": 204}},
                {"to": {"service": format!("s{i}"), "port": 80}}
            ]})
        })
        .collect();
    let mut f = Filter::new(&config(json!(hosts))).unwrap();
    assert!(f
        .logs()
        .iter()
        .any(|l| l.message == "mesh-filter: configured 500 hosts, 2000 routes"));
    let r = f.request(&req("x.h499.test", "GET", "/b/12", &[])).unwrap();
    assert_forward(&r, "b499");
    let r = f.request(&req("h250.test", "GET", "/z", &[])).unwrap();
    assert_forward(&r, "outbound|80||s250.ns.svc.cluster.local");
    let r = f.request(&req("h7.test", "GET", "/c", &[])).unwrap();
    let local = assert_local(&r, 204);
    assert!(local.body.is_empty());
    assert_eq!(local.headers.count("content-type"), 0);
}

#[test]
fn requests_without_authority_path_or_method() {
    let mut f = features();
    let r = f
        .request(&[(":method", "GET"), (":path", "/users/1")])
        .unwrap();
    assert_local(&r, 404);
    let empty: [(&str, &str); 0] = [];
    let r = f.request(&empty).unwrap();
    assert_local(&r, 404);
    // Without :path even a route without `match` (prefix `/`) does not match.
    let r = f.request(&[(":authority", "shop.example.com")]).unwrap();
    assert_local(&r, 404);
    let r = f
        .request(&[(":authority", "shop.example.com"), (":path", "/")])
        .unwrap();
    assert_forward(&r, "outbound|80||wild.shop.svc.corp.local");
}

#[test]
fn header_values_of_64_kib() {
    let mut f = features();
    let big = "v".repeat(64 * 1024);
    // A huge unrelated header and a huge path travel through unchanged; templates copy them.
    let path = format!("/users/{}", "p".repeat(64 * 1024));
    let r = f
        .request(&req("api.example.com", "GET", &path, &[("x-big", &big)]))
        .unwrap();
    assert_forward(&r, "outbound|8080||users.shop.svc.corp.local");
    assert_eq!(
        r.headers_after.get("x-big").map(<[u8]>::len),
        Some(64 * 1024)
    );
    assert_eq!(
        r.headers_after.text("x-orig"),
        Some(format!("GET api.example.com{path}"))
    );
    // A huge cookie still matches the header regex.
    let cookie = format!("{big}; beta=1");
    let r = f
        .request(&req(
            "api.example.com",
            "GET",
            "/beta",
            &[("cookie", &cookie), ("x-tier", "gold")],
        ))
        .unwrap();
    assert_forward(&r, "outbound|80|beta|beta.shop.svc.corp.local");
    // A huge authority or origin matches nothing (and costs nothing).
    let host = format!("{}.example.com", "h".repeat(64 * 1024));
    let r = f.request(&req(&host, "GET", "/", &[])).unwrap();
    assert_local(&r, 404);
    let origin = format!("https://{big}");
    let r = f
        .request(&req(
            "api.example.com",
            "OPTIONS",
            "/users/1",
            &[
                ("origin", &origin),
                ("access-control-request-method", "GET"),
            ],
        ))
        .unwrap();
    assert_forward(&r, "outbound|8080||users.shop.svc.corp.local");
    // A huge allowed origin is echoed whole.
    let origin = format!("https://{big}.partner.org");
    let r = f
        .request(&req(
            "api.example.com",
            "OPTIONS",
            "/users/1",
            &[
                ("origin", &origin),
                ("access-control-request-method", "GET"),
            ],
        ))
        .unwrap();
    let local = assert_local(&r, 200);
    assert_eq!(
        local.headers.text("access-control-allow-origin"),
        Some(origin)
    );
}

#[test]
fn non_utf8_header_bytes() {
    let mut f = features();
    let mut h = Headers::from_pairs(&req("api.example.com", "GET", "/users/x", &[]));
    h.0.retain(|(k, _)| k != b":path");
    h.0.push((b":path".to_vec(), b"/users/\xff\xfe?q=\xc3".to_vec()));
    h.0.push((b"x-raw".to_vec(), vec![0x80, 0, 0xff]));
    let r = f.request_with(h, true).unwrap();
    assert_forward(&r, "outbound|8080||users.shop.svc.corp.local");
    assert_eq!(r.headers_after.get("x-raw"), Some(&[0x80, 0, 0xff][..]));
    assert_eq!(
        r.headers_after.get("x-orig"),
        Some(&b"GET api.example.com/users/\xff\xfe?q=\xc3"[..]),
        "templates copy request bytes as they are"
    );
    // Non-UTF-8 authority: matches no host.
    let mut h = Headers::from_pairs(&[(":method", "GET"), (":path", "/")]);
    h.0.push((b":authority".to_vec(), b"api.\xffexample.com".to_vec()));
    let r = f.request_with(h, true).unwrap();
    assert_local(&r, 404);
    // Non-UTF-8 header used by prefix and presence conditions.
    let mut h = Headers::from_pairs(&req(
        "api.example.com",
        "GET",
        "/beta",
        &[("cookie", "beta=1")],
    ));
    h.0.push((b"x-tier".to_vec(), b"gold\xff".to_vec()));
    h.0.push((b"x-block".to_vec(), b"\xfe".to_vec()));
    let r = f.request_with(h, true).unwrap();
    assert_local(&r, 404);
    let mut h = Headers::from_pairs(&req(
        "api.example.com",
        "GET",
        "/beta",
        &[("cookie", "beta=1")],
    ));
    h.0.push((b"x-tier".to_vec(), b"gold\xff".to_vec()));
    let r = f.request_with(h, true).unwrap();
    assert_forward(&r, "outbound|80|beta|beta.shop.svc.corp.local");
    // A non-UTF-8 origin that an origin rule allows: the preflight is answered and the origin
    // echoed byte for byte (local replies carry byte-valued headers); never a trap.
    let mut h = Headers::from_pairs(&req(
        "api.example.com",
        "OPTIONS",
        "/users/1",
        &[("access-control-request-method", "GET")],
    ));
    h.0.push((b"origin".to_vec(), b"https://\xff.partner.org".to_vec()));
    let r = f.request_with(h, true).unwrap();
    let local = assert_local(&r, 200);
    let echoed = local.headers.get("access-control-allow-origin").unwrap();
    assert_eq!(echoed, &b"https://\xff.partner.org"[..], "{echoed:?}");
    // And on the response side the raw bytes are echoed.
    let mut h = Headers::from_pairs(&req("api.example.com", "GET", "/users/1", &[]));
    h.0.push((b"origin".to_vec(), b"https://\xff.partner.org".to_vec()));
    f.request_with(h, true).unwrap();
    let resp = f.response(&[(":status", "200")]).unwrap();
    assert_eq!(
        resp.headers_after.get("access-control-allow-origin"),
        Some(&b"https://\xff.partner.org"[..])
    );
    assert_eq!(f.metric("mesh_filter_host_errors"), Some(0));
}

/// Envoy's RE2 matches header values byte-wise (`.` is any byte), and so does the filter: a
/// cookie with invalid UTF-8 before `beta=1` matches `.*beta=1.*`.
#[test]
fn non_utf8_header_value_matches_a_header_regex() {
    let mut f = features();
    let mut h = Headers::from_pairs(&req(
        "api.example.com",
        "GET",
        "/beta",
        &[("x-tier", "gold")],
    ));
    h.0.push((b"cookie".to_vec(), b"\xff\xfe; beta=1".to_vec()));
    let r = f.request_with(h, true).unwrap();
    assert_forward(&r, "outbound|80|beta|beta.shop.svc.corp.local");
}

/// A failing host call fails one request closed (a 500 and `mesh_filter_host_errors`, see
/// `MeshHttp::fail`) instead of aborting the VM, and the next request is routed normally.
#[test]
fn a_failing_header_call_fails_closed_without_trapping() {
    let mut f = features();
    f.inject_status(Some((
        "proxy_replace_header_map_value",
        Status::InternalFailure,
    )));
    let r = f
        .request(&req("api.example.com", "GET", "/users/1", &[]))
        .unwrap();
    assert_local(&r, 500);
    assert_eq!(f.metric("mesh_filter_host_errors"), Some(1));
    f.inject_status(None);
    let r = f
        .request(&req("api.example.com", "GET", "/users/1", &[]))
        .unwrap();
    assert_forward(&r, "outbound|8080||users.shop.svc.corp.local");
}

#[test]
fn streams_end_and_many_can_be_open_in_sequence() {
    let mut f = features();
    for i in 0..50 {
        let path = format!("/users/{i}");
        let r = f
            .request(&req("api.example.com", "GET", &path, &[]))
            .unwrap();
        assert_forward(&r, "outbound|8080||users.shop.svc.corp.local");
        if i % 2 == 0 {
            f.response(&[(":status", "200")]).unwrap();
        }
        f.finish().unwrap();
    }
    f.tick().unwrap();
    assert_eq!(f.metric("mesh_filter_routed"), Some(50));
    let logs: Vec<_> = f.logs().iter().map(|l| l.message.as_str()).collect();
    assert_eq!(
        logs,
        ["mesh-filter: configured 4 hosts, 13 routes"],
        "requests log nothing"
    );
    assert!(f.guest_output().is_empty(), "{}", f.guest_output());
}

// --- the harness itself fails loudly ------------------------------------------------------

/// A fake filter: `proxy_on_request_headers` does what the header count asks for.
const FAKE: &str = r#"
(module
  (import "env" "proxy_http_call" (func $http (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 4096)
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) i32.const 1)
  (func (export "proxy_on_configure") (param i32 i32) (result i32) i32.const 1)
  (func (export "proxy_on_request_headers") (param $id i32) (param $n i32) (param $eos i32) (result i32)
    (if (i32.eq (local.get $n) (i32.const 1))
      (then (drop (call $http (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
                             (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))))
    (if (i32.eq (local.get $n) (i32.const 2)) (then unreachable))
    (if (i32.eq (local.get $n) (i32.const 3))
      (then (drop (call $log (i32.const 2) (i32.const 65530) (i32.const 100)))))
    (if (i32.eq (local.get $n) (i32.const 4))
      (then (drop (call $log (i32.const 9) (i32.const 0) (i32.const 1)))))
    (if (i32.eq (local.get $n) (i32.const 5)) (then (return (i32.const 7))))
    i32.const 0)
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) i32.const 0)
  (func (export "proxy_on_request_trailers") (param i32 i32) (result i32) i32.const 0)
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) i32.const 0)
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) i32.const 0)
  (func (export "proxy_on_response_trailers") (param i32 i32) (result i32) i32.const 0)
  (func (export "proxy_on_done") (param i32) (result i32) i32.const 1)
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32)))
"#;

fn fake() -> Filter {
    let engine = mesh_wasm_host::wasmtime::Engine::default();
    let module = mesh_wasm_host::wasmtime::Module::new(&engine, FAKE).unwrap();
    Filter::with_module(&module, "{}").unwrap()
}

fn n_headers(n: usize) -> Vec<(String, String)> {
    (0..n).map(|i| (format!("h{i}"), "v".to_owned())).collect()
}

#[test]
fn an_unimplemented_host_call_fails_the_test_loudly() {
    let mut f = fake();
    let ok = f.request(&n_headers(0)).unwrap();
    assert_eq!(ok.action, Action::Continue);
    match f.request(&n_headers(1)) {
        Err(HarnessError::Trap {
            call,
            message,
            failures,
            ..
        }) => {
            assert_eq!(call, "proxy_on_request_headers");
            assert!(
                message.contains("unimplemented host call `env.proxy_http_call`"),
                "{message}"
            );
            assert_eq!(failures.len(), 1, "{failures:?}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    // The VM is unusable afterwards, and says so.
    let err = f.request(&n_headers(0)).unwrap_err().to_string();
    assert!(err.contains("trapped earlier"), "{err}");
}

#[test]
fn guest_traps_bad_pointers_and_bad_values_are_errors() {
    let mut f = fake();
    let err = f.request(&n_headers(2)).unwrap_err();
    assert!(matches!(err, HarnessError::Trap { .. }), "{err}");
    assert!(err.to_string().contains("unreachable"), "{err}");

    let mut f = fake();
    let err = f.request(&n_headers(3)).unwrap_err().to_string();
    assert!(err.contains("out of bounds"), "{err}");

    let mut f = fake();
    let err = f.request(&n_headers(4)).unwrap_err().to_string();
    assert!(err.contains("level 9 is not in the ABI"), "{err}");

    let mut f = fake();
    let err = f.request(&n_headers(5)).unwrap_err().to_string();
    assert!(err.contains("action 7"), "{err}");
}

#[test]
fn the_filter_uses_only_host_calls_the_harness_implements() {
    let missing = mesh_wasm_host::unimplemented_imports().unwrap();
    println!(
        "imports: {:?}\nstubbed (trap if called): {missing:?}",
        mesh_wasm_host::module_imports().unwrap()
    );
    for needed in [
        "proxy_log",
        "proxy_get_buffer_bytes",
        "proxy_get_header_map_value",
        "proxy_replace_header_map_value",
        "proxy_add_header_map_value",
        "proxy_remove_header_map_value",
        "proxy_send_local_response",
        "proxy_define_metric",
        "proxy_increment_metric",
    ] {
        assert!(
            !missing.iter().any(|(_, n)| n == needed),
            "{needed} must be implemented"
        );
    }
    assert!(
        missing.iter().all(|(m, _)| m == "env"),
        "WASI is complete: {missing:?}"
    );
}

/// A module that echoes maps back through the pair calls: request headers come back as the
/// local response (headers and, serialized, the body); the plugin configuration (a serialized
/// map) becomes the response headers.
const ECHO: &str = r#"
(module
  (import "env" "proxy_get_header_map_pairs" (func $pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_header_map_pairs" (func $set_pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 4096))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) i32.const 1)
  (func (export "proxy_on_configure") (param i32 i32) (result i32) i32.const 1)
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $pairs (i32.const 0) (i32.const 100) (i32.const 104)))
    (drop (call $reply (i32.const 201) (i32.const 0) (i32.const 0)
      (i32.load (i32.const 100)) (i32.load (i32.const 104))
      (i32.load (i32.const 100)) (i32.load (i32.const 104)) (i32.const -1)))
    i32.const 1)
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $buffer (i32.const 7) (i32.const 0) (i32.const 65536) (i32.const 200) (i32.const 204)))
    (drop (call $set_pairs (i32.const 2) (i32.load (i32.const 200)) (i32.load (i32.const 204))))
    i32.const 0)
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) i32.const 0)
  (func (export "proxy_on_request_trailers") (param i32 i32) (result i32) i32.const 0)
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) i32.const 0)
  (func (export "proxy_on_response_trailers") (param i32 i32) (result i32) i32.const 0)
  (func (export "proxy_on_done") (param i32) (result i32) i32.const 1)
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32)))
"#;

#[test]
fn the_harness_serializes_maps_and_buffers_as_the_abi_says() {
    let engine = mesh_wasm_host::wasmtime::Engine::default();
    let module = mesh_wasm_host::wasmtime::Module::new(&engine, ECHO).unwrap();
    let plugin = Headers::from_pairs(&[("x-a", "1"), ("x-empty", ""), ("x-a", "2")]);
    let mut f =
        Filter::with_module(&module, &String::from_utf8(plugin.serialize()).unwrap()).unwrap();
    let sent = req("h.test", "GET", "/p", &[("X-Multi", "a"), ("x-multi", "b")]);
    let r = f.request(&sent).unwrap();
    assert_eq!(r.action, Action::Pause);
    let local = r.local_response.unwrap();
    assert_eq!(local.status, 201);
    assert_eq!(local.headers, Headers::from_pairs(&sent));
    assert_eq!(local.body, Headers::from_pairs(&sent).serialize());
    assert_eq!(local.grpc_status, -1);
    let resp = f.response(&[(":status", "200")]).unwrap();
    assert_eq!(resp.headers_after, plugin);
}
