//! What goes wrong between the binary and a cluster (the API emulator over HTTP): refused and
//! lost writes, failed preflights, objects too big to store, an unreachable API server; each
//! reported with what was applied, and a re-run finishes the job.

// A failed unwrap in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod emulator;
mod support;

use serde_json::json;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_third_object_reports_what_was_applied_and_rerun_finishes() {
    let s = digimon(json!({})).await;
    s.emu
        .state()
        .forbidden
        .push(("envoyfilters".into(), "kubectl-mesh".into()));
    let r = run(&s, &enable_args(&[])).await;
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("403 Forbidden"), "{r:?}");
    assert!(
        r.stderr.contains("cannot patch resource \"envoyfilters\""),
        "the server's message is shown: {r:?}"
    );
    let report = r.stderr.split("\napplied:\n").nth(1).unwrap();
    let applied = report.split("not applied:").next().unwrap();
    let not_applied = report.split("not applied:").nth(1).unwrap();
    assert!(
        applied.contains("namespace digimon: label")
            && applied.contains("ConfigMap digimon/kubectl-mesh-filter"),
        "{r:?}"
    );
    assert!(
        not_applied.contains("EnvoyFilter digimon/kubectl-mesh")
            && not_applied.contains("Deployment digimon/server"),
        "{r:?}"
    );
    assert!(!applied.contains("EnvoyFilter"), "{r:?}");
    assert!(live(&s, "api/v1", "configmaps", "digimon", "kubectl-mesh-filter").is_some());
    assert!(live(
        &s,
        "apis/networking.istio.io/v1alpha3",
        "envoyfilters",
        "digimon",
        "kubectl-mesh"
    )
    .is_none());

    s.emu.state().forbidden.clear();
    let r = run(&s, &enable_args(&[])).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("applying 2 changes"),
        "only the rest is applied: {r:?}"
    );
    assert!(live(
        &s,
        "apis/networking.istio.io/v1alpha3",
        "envoyfilters",
        "digimon",
        "kubectl-mesh"
    )
    .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connection_mid_way_is_reported_and_rerun_finishes() {
    let s = digimon(json!({})).await;
    s.emu
        .state()
        .drop_connection
        .push(("deployments".into(), "server".into()));
    let r = run(&s, &enable_args(&[])).await;
    assert_ne!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("cannot reach the Kubernetes API"),
        "{r:?}"
    );
    let unknown = r
        .stderr
        .split("unknown (the connection was lost")
        .nth(1)
        .unwrap();
    let unknown = unknown.split("not applied:").next().unwrap();
    assert!(unknown.contains("Deployment digimon/server"), "{r:?}");
    assert!(
        r.stderr
            .split("\napplied:\n")
            .nth(1)
            .unwrap()
            .starts_with("  - namespace digimon"),
        "{r:?}"
    );
    assert!(
        server_annotations(&s)
            .get("kubectl-mesh/config-hash")
            .is_none(),
        "dropped before the server acted"
    );
    s.emu.state().drop_connection.clear();
    let r = run(&s, &enable_args(&[])).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("applying 1 changes"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_lost_after_the_server_acted_is_reported_as_unknown_and_rerun_confirms() {
    let s = digimon(json!({})).await;
    s.emu
        .state()
        .drop_response
        .push(("envoyfilters".into(), "kubectl-mesh".into()));
    let r = run(&s, &enable_args(&[])).await;
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("unknown (the connection was lost before the answer; a rerun checks it):\n  - EnvoyFilter digimon/kubectl-mesh"), "{r:?}");
    let not_applied = r.stderr.split("not applied:").nth(1).unwrap();
    assert!(
        not_applied.contains("Deployment digimon/server") && !not_applied.contains("EnvoyFilter"),
        "{r:?}"
    );
    assert!(
        live(
            &s,
            "apis/networking.istio.io/v1alpha3",
            "envoyfilters",
            "digimon",
            "kubectl-mesh"
        )
        .is_some(),
        "the server did act"
    );
    s.emu.state().drop_response.clear();
    let r = run(&s, &enable_args(&[])).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("applying 1 changes") && r.stdout.contains("Deployment digimon/server"),
        "the rerun sees the filter is there: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_errors_are_clear_and_change_nothing() {
    let s = digimon(json!({})).await;
    s.emu.state().version = ("1".into(), "15".into());
    let r = run(&s, &enable_args(&[])).await;
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("Kubernetes 1.15") && r.stderr.contains("1.16"),
        "{r:?}"
    );

    s.emu.state().version = ("1".into(), "16+".into());
    s.emu.state().istio = false;
    let r = run(&s, &enable_args(&[])).await;
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("Istio is not installed"), "{r:?}");
    assert!(
        s.emu
            .state()
            .log
            .iter()
            .any(|l| l == "GET /apis/networking.istio.io/v1alpha3"),
        "discovery was asked"
    );

    s.emu.state().istio = true;
    s.emu.state().extensions = false;
    let r = run(&s, &enable_args(&["--api", "wasmplugin"])).await;
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("extensions.istio.io"), "{r:?}");

    // Istio 1.27-1.29: WasmPlugin is served, TrafficExtension is not. The kind is checked
    // before anything is written (the ConfigMap first would be half-applied otherwise).
    s.emu.state().extensions = true;
    s.emu.state().traffic_extensions = false;
    let r = run(&s, &enable_args(&["--api", "trafficextension"])).await;
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("TrafficExtension") && r.stderr.contains("--api wasmplugin"),
        "{r:?}"
    );
    assert!(s.emu.state().writes().is_empty());
    s.emu.state().traffic_extensions = true;

    let r = run(&s, &enable_args(&["-n", "nope"])).await;
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("namespace nope does not exist"), "{r:?}");
    assert!(s.emu.state().writes().is_empty());

    let args = enable_file_args(&mesh_yaml(), "app=nothing", "sidecar-inbound");
    let r = run(&s, &args).await;
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("no Deployment in namespace digimon matches app=nothing"),
        "{r:?}"
    );
    assert!(s.emu.state().writes().is_empty());
}

/// A config too big for one object is refused before anything is written, with the fix;
/// without the check the API server would refuse the EnvoyFilter after the ConfigMap and the
/// namespace label were applied (the emulator answers 413 as it does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_too_big_for_the_api_server_is_refused_before_any_write() {
    let s = digimon(json!({})).await;
    let mut text = String::from(
        "apiVersion: kubectl-mesh/v1alpha1\nkind: MeshConfig\nnamespace: digimon\nhosts:\n",
    );
    for h in 0..2000 {
        text.push_str(&format!("- domains: [svc-{h}.example.com]\n  routes:\n"));
        for r in 0..10 {
            text.push_str(&format!(
                "  - match: {{prefix: /api/v{r}/}}\n    to: {{service: svc-{h}, port: 8080}}\n"
            ));
        }
    }
    let big = s.kubeconfig.with_file_name("big.yaml");
    std::fs::write(&big, text).unwrap();
    let r = run(&s, &enable_file_args(&big, SERVER, "sidecar-outbound")).await;
    assert_ne!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("big.yaml: the rendered EnvoyFilter")
            && r.stderr.contains("more than the API server stores")
            && r.stderr.contains("fix: make the config smaller"),
        "{r:?}"
    );
    assert!(
        s.emu.state().writes().is_empty(),
        "{:?}",
        s.emu.state().writes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_api_is_named() {
    let s = digimon(json!({})).await;
    // A port nobody listens on.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let text = std::fs::read_to_string(&s.kubeconfig)
        .unwrap()
        .replace(&s.emu.url, &format!("http://127.0.0.1:{port}"));
    std::fs::write(&s.kubeconfig, text).unwrap();
    let r = run(&s, &enable_args(&[])).await;
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains(&format!(
            "cannot reach the Kubernetes API at http://127.0.0.1:{port}"
        )),
        "{r:?}"
    );
    let r = run(&s, &["check"]).await;
    assert_ne!(r.code, 0);
    assert!(r.stdout.contains("[FAIL] API reachable"), "{r:?}");
}
