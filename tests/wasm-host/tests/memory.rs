//! Memory: 100,000 requests through one filter instance must not grow its linear memory.

mod common;

use common::*;
use mesh_wasm_host::abi::Action;

const REQUESTS: usize = 100_000;
const WARMUP: usize = 2_000;

/// One request of each kind the filter handles, cycled: forward with header rules and a
/// response, CORS preflight, not found, direct response, redirect, spoofed header, CORS actual.
fn one(f: &mut mesh_wasm_host::Filter, i: usize) {
    let id = i.to_string();
    let r = match i % 7 {
        0 => {
            let path = format!("/users/{id}?q={id}");
            let r = f
                .request(&req(
                    "api.example.com",
                    "GET",
                    &path,
                    &[("x-internal", &id)],
                ))
                .unwrap();
            let resp = f.response(&[(":status", "200"), ("server", "x")]).unwrap();
            assert_eq!(resp.action, Action::Continue);
            r
        }
        1 => f
            .request(&req(
                "api.example.com",
                "OPTIONS",
                "/users/1",
                &[
                    ("origin", "https://app.example.com"),
                    ("access-control-request-method", "POST"),
                ],
            ))
            .unwrap(),
        2 => f
            .request(&req(&format!("h{id}.unknown.test"), "GET", "/", &[]))
            .unwrap(),
        3 => f
            .request(&req("api.example.com", "GET", "/healthz", &[]))
            .unwrap(),
        4 => f
            .request(&req(
                "api.example.com:8080",
                "GET",
                &format!("/old/{id}"),
                &[],
            ))
            .unwrap(),
        5 => f
            .request(&req(
                "shop.example.com",
                "POST",
                "/x",
                &[(UPSTREAM, "evil"), ("x-big", &"b".repeat(4096))],
            ))
            .unwrap(),
        _ => {
            let r = f
                .request(&req(
                    "api.example.com",
                    "POST",
                    "/pkg.Svc/Call",
                    &[("origin", "https://x.partner.org")],
                ))
                .unwrap();
            f.response(&[(":status", "200")]).unwrap();
            r
        }
    };
    let local = matches!(i % 7, 1..=4);
    assert_eq!(r.local_response.is_some(), local, "request {i}: {r:?}");
}

#[test]
fn linear_memory_does_not_grow_per_request() {
    let mut f = features();
    let at_start = f.memory_pages();
    for i in 0..WARMUP {
        one(&mut f, i);
    }
    let after_warmup = f.memory_pages();
    let calls_before = f.host_calls();
    let t = std::time::Instant::now();
    for i in WARMUP..WARMUP + REQUESTS {
        one(&mut f, i);
    }
    f.finish().unwrap();
    let elapsed = t.elapsed();
    let after = f.memory_pages();
    println!(
        "linear memory: {at_start} pages after configure, {after_warmup} after {WARMUP} warm-up \
         requests, {after} after {REQUESTS} more ({} KiB -> {} KiB); {} host calls in {elapsed:?}",
        after_warmup * 64,
        after * 64,
        f.host_calls() - calls_before
    );
    assert_eq!(f.metric("mesh_filter_host_errors"), Some(0));
    f.tick().unwrap();
    let total = (WARMUP + REQUESTS) as u64;
    let per_kind = total / 7;
    assert!(f.metric("mesh_filter_routed").unwrap() >= 3 * per_kind);
    assert!(f.metric("mesh_filter_cors_preflight").unwrap() >= per_kind);
    assert_eq!(
        after,
        after_warmup,
        "linear memory grew by {} pages over {REQUESTS} requests",
        after - after_warmup
    );
}

/// The check above can fail: when the host never deletes stream contexts, the filter must keep
/// them, and the same measurement shows the growth.
#[test]
fn the_memory_check_sees_leaked_stream_contexts() {
    let mut f = features();
    for i in 0..WARMUP {
        one(&mut f, i);
    }
    let before = f.memory_pages();
    for i in 0..20_000 {
        f.request(&req("api.example.com", "GET", &format!("/users/{i}"), &[]))
            .unwrap();
        f.abandon_stream();
    }
    let after = f.memory_pages();
    println!("leaking 20000 stream contexts: {before} -> {after} pages");
    assert!(after > before, "{before} -> {after}");
}
