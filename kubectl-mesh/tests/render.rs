//! `render` output: golden files for the digimon example, Istio CRD schema validation, and the
//! rendered Envoy patches loaded by real Envoy (`envoy --mode validate`).

// A failed unwrap in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/cases.rs"]
mod cases;
#[path = "support/golden.rs"]
mod golden_support;
use cases::*;
use golden_support::Golden;
use kubectl_mesh::render::{self, Api, Context, Rendered};
use serde_json::{json, Value};
use std::path::PathBuf;

#[test]
fn sidecar_inbound_refuses_routes_to_another_workload() {
    let case = &CASES[0];
    assert_eq!(case.context, Context::SidecarInbound);
    let full = render::load_config(&manifest().join("../examples/digimon/mesh.yaml")).unwrap();
    let err = render::render(&full, &options(case))
        .unwrap_err()
        .to_string();
    assert!(err.contains("hosts[1].routes[0].to"), "{err}");
    assert!(err.contains("web.digimon.svc.cluster.local"), "{err}");
    assert!(err.contains("--envoy-context gateway"), "{err}");
}

#[test]
fn golden_files_match() {
    let mut golden = Golden::new();
    for case in CASES {
        let (opts, r) = rendered(case);
        let text = render::render_text(&r, &opts, false).unwrap();
        let path = manifest()
            .join("tests/golden")
            .join(format!("{}.yaml", case.golden));
        golden.check(&path, &text);
    }
    golden.finish();
}

#[test]
fn json_output_is_a_list_of_the_same_objects() {
    for case in CASES {
        let (opts, r) = rendered(case);
        let list: Value =
            serde_json::from_str(&render::render_text(&r, &opts, true).unwrap()).unwrap();
        assert_eq!(list["kind"], "List");
        let items = list["items"].as_array().unwrap();
        let patches = !r.pod_labels.is_empty() || r.gateway_pod_spec.is_some();
        let extra = usize::from(r.gateway && patches);
        assert_eq!(items.len(), r.objects.len() + extra);
        assert_eq!(&items[..r.objects.len()], &r.objects[..]);
    }
}

// ---- real Envoy ----------------------------------------------------------------------------

fn envoy() -> PathBuf {
    envoy_process::require_binary()
}

fn wasm() -> PathBuf {
    let path = std::env::var_os("MESH_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest().join("../target/wasm32-wasip1/release/mesh_filter.wasm"));
    assert!(
        path.exists(),
        "no module at {} (run `make wasm`, or set MESH_WASM)",
        path.display()
    );
    path
}

/// A bootstrap whose listener carries the rendered HTTP filters and route, as Istio would
/// insert them (the Istio-shape suite in tests/ applies them to real Istio config dumps).
fn bootstrap(filters: &[Value], route: Option<&Value>) -> Value {
    let mut http_filters = filters.to_vec();
    http_filters.push(kubectl_mesh::envoy::router_filter());
    let mut routes: Vec<Value> = route.into_iter().cloned().collect();
    routes.push(json!({ "match": { "prefix": "/" }, "direct_response": { "status": 404 } }));
    json!({
        "static_resources": {
            "listeners": [{
                "name": "http",
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "http",
                        "http_filters": http_filters,
                        "route_config": { "name": "r", "virtual_hosts": [{
                            "name": "all", "domains": ["*"], "routes": routes,
                        }]},
                    },
                }]}],
            }],
            "clusters": [{
                "name": "outbound|6000||server.digimon.svc.cluster.local",
                "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": { "cluster_name": "x", "endpoints": [] },
            }],
        },
    })
}

fn patch_values(r: &Rendered, apply_to: &str, operation: &str) -> Vec<Value> {
    r.objects
        .iter()
        .filter(|o| o["kind"] == "EnvoyFilter")
        .flat_map(|o| o["spec"]["configPatches"].as_array().unwrap().clone())
        .filter(|p| p["applyTo"] == apply_to && p["patch"]["operation"] == operation)
        .map(|p| p["patch"]["value"].clone())
        .collect()
}

/// The rendered HTTP filters with the module pointed at the local build.
fn local_filters(r: &Rendered) -> Vec<Value> {
    let module = wasm();
    let mut filters = patch_values(r, "HTTP_FILTER", "INSERT_BEFORE");
    let code = &mut filters[0]["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"];
    assert_eq!(
        code,
        &json!(format!("{}/{}", render::MODULE_DIR, render::MODULE_FILE))
    );
    *code = json!(module.to_str().unwrap());
    filters
}

fn envoy_validate(config: &Value, name: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("kubectl-mesh-envoy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, serde_yaml_ng::to_string(config).unwrap()).unwrap();
    let out = std::process::Command::new(envoy())
        .args(["--mode", "validate", "--log-level", "error", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn envoy_loads_the_rendered_filter_and_route() {
    for case in CASES
        .iter()
        .filter(|c| c.module == Delivery::ConfigMap && c.api == Api::Envoyfilter)
    {
        let (_, r) = rendered(case);
        let filters = local_filters(&r);
        let route = patch_values(&r, "HTTP_ROUTE", "INSERT_FIRST");
        let (ok, log) = envoy_validate(&bootstrap(&filters, route.first()), case.golden);
        assert!(
            ok,
            "{}: envoy rejected the rendered patches:\n{log}",
            case.golden
        );
    }
}

#[test]
fn envoy_validation_can_fail() {
    let gateway = CASES
        .iter()
        .find(|c| c.context == Context::Gateway)
        .unwrap();
    let (_, r) = rendered(gateway);
    let mut filters = local_filters(&r);
    let mut route = patch_values(&r, "HTTP_ROUTE", "INSERT_FIRST").remove(0);
    route["route"]["cluster_headr"] = json!("x");
    let (ok, _) = envoy_validate(&bootstrap(&filters, Some(&route)), "broken-route");
    assert!(!ok, "a misspelled route field must be rejected");
    // Validate mode starts the VM and configures the filter: a config it refuses fails, so the
    // passing test above proves the filter accepts the rendered configuration.
    let route = patch_values(&r, "HTTP_ROUTE", "INSERT_FIRST").remove(0);
    filters[0]["typed_config"]["config"]["configuration"]["value"] = json!("{\"bogus\":1}");
    let (ok, log) = envoy_validate(&bootstrap(&filters, Some(&route)), "broken-config");
    assert!(!ok && log.contains("bogus"), "{log}");
}
