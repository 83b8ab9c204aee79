//! Shared helpers for the harness tests: fixtures, the digimon config, request builders.
#![allow(dead_code)]

use mesh_wasm_host::{workspace_root, Filter, RequestResult};

/// The routing header the filter sets.
pub const UPSTREAM: &str = "x-mesh-upstream";

/// A fixture config from `tests/wasm-host/fixtures`.
pub fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The filter configured with `fixtures/features.json`.
pub fn features() -> Filter {
    Filter::new(&fixture("features.json")).unwrap()
}

/// examples/digimon/mesh.yaml as the filter receives it (JSON), converted by mesh-core.
pub fn digimon_json() -> String {
    let yaml =
        std::fs::read_to_string(workspace_root().join("examples/digimon/mesh.yaml")).unwrap();
    mesh_core::MeshConfig::from_yaml(&yaml).unwrap().to_json()
}

/// A minimal document around `hosts` (a JSON array).
pub fn config(hosts: serde_json::Value) -> String {
    serde_json::json!({"apiVersion": "kubectl-mesh/v1alpha1", "kind": "MeshConfig", "namespace": "ns", "hosts": hosts}).to_string()
}

/// Request pseudo-headers plus `extra`.
pub fn req<'a>(
    authority: &'a str,
    method: &'a str,
    path: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        (":authority", authority),
        (":method", method),
        (":path", path),
        (":scheme", "http"),
    ];
    h.extend_from_slice(extra);
    h
}

/// The cluster the filter routed to, if it forwarded.
pub fn upstream(r: &RequestResult) -> Option<String> {
    r.headers_after.text(UPSTREAM)
}

/// Asserts a forward (Continue, no local response) to `cluster`, with exactly one routing header.
pub fn assert_forward(r: &RequestResult, cluster: &str) {
    assert_eq!(r.action, mesh_wasm_host::abi::Action::Continue, "{r:#?}");
    assert!(r.local_response.is_none(), "{r:#?}");
    assert_eq!(
        r.headers_after.all(UPSTREAM),
        vec![cluster.as_bytes()],
        "{r:#?}"
    );
}

/// Asserts a local answer (Pause) with `status`, and that no routing header is left.
pub fn assert_local(r: &RequestResult, status: u32) -> mesh_wasm_host::LocalResponse {
    assert_eq!(r.action, mesh_wasm_host::abi::Action::Pause, "{r:#?}");
    assert_eq!(r.headers_after.count(UPSTREAM), 0, "{r:#?}");
    let local = r
        .local_response
        .clone()
        .unwrap_or_else(|| panic!("no local response: {r:#?}"));
    assert_eq!(local.status, status, "{local:#?}");
    local
}

/// Asserts exactly these header changes (order-insensitive, multiset).
pub fn assert_mutations(
    m: &mesh_wasm_host::Mutations,
    removed: &[(&str, &str)],
    added: &[(&str, &str)],
) {
    let sorted = |h: &mesh_wasm_host::Headers| {
        let mut v = h.to_text();
        v.sort();
        v
    };
    let want = |pairs: &[(&str, &str)]| {
        let mut v: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&m.removed), want(removed), "removed headers");
    assert_eq!(sorted(&m.added), want(added), "added headers");
}
