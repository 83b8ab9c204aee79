//! `kubectl mesh check` proves the filter runs: the real binary reads istio-proxy's stats
//! through the API emulator's pod proxy, which forwards to a real Envoy (1.40) running the
//! embedded filter with the stats setup of a real Istio gateway (its stats inclusion list and
//! its :15090 Prometheus listener, from ../shared/fixtures/istio).

// A failed unwrap in a test is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod emulator;
mod support;

use kubectl_mesh::envoy as builder;
use serde_json::Value;
use support::envoy::{self, Envoy, Ports};
use support::*;

/// Gateway enabled with the digimon example, rolled out; returns the gateway pod's name.
async fn enabled_gateway() -> (Setup, String) {
    let s = with_gateway().await;
    let r = run(&s, &gateway_enable_args(&[])).await;
    assert_eq!(r.code, 0, "{r:?}");
    s.emu.state().advance_rollouts();
    let pods = pod_names(&s, "istio-system");
    assert_eq!(pods.len(), 1, "{pods:?}");
    let pod = pods[0].clone();
    (s, pod)
}

/// The filter as `enable` applied it: the EnvoyFilter's Wasm configuration (with the revision
/// the filter reports), loaded from `dir` as the local Envoy's module.
fn applied_filter(s: &Setup, dir: &std::path::Path) -> (Value, String) {
    let ef = live(
        s,
        "apis/networking.istio.io/v1alpha3",
        "envoyfilters",
        "istio-system",
        "kubectl-mesh",
    )
    .unwrap();
    let text = ef["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]
        ["configuration"]["value"]
        .as_str()
        .unwrap();
    let code = builder::local_code(&dir.join("mesh_filter.wasm").display().to_string());
    let filter = builder::http_filter(builder::plugin_config_json(
        text,
        builder::FailPolicy::Reload,
        code,
    ));
    let hash = ef["metadata"]["annotations"]["kubectl-mesh/config-hash"]
        .as_str()
        .unwrap()
        .to_owned();
    (filter, hash)
}

fn digimon_config() -> mesh_core::MeshConfig {
    kubectl_mesh::render::load_config(&example_yaml()).unwrap()
}

/// The gateway pod's port `port` answers with the Envoy's Prometheus listener.
fn expose(s: &Setup, pod: &str, port: u16, envoy: &Envoy) {
    s.emu.state().pod_proxies.insert(
        ("istio-system".into(), pod.into(), port),
        envoy.ports.prometheus,
    );
}

/// Sends the digimon mix through the filter: 3 routed, 2 passed through (a host the config
/// does not own), 1 CORS preflight and 1 unknown path of an owned host answered by the filter.
async fn traffic(envoy: &Envoy) {
    let at = envoy.ports.listen;
    for _ in 0..3 {
        let (status, body) = envoy::get(at, "web.backend.com", "/", &[]).await.unwrap();
        assert_eq!((status, body.as_str()), (200, "upstream"));
    }
    for _ in 0..2 {
        let (status, _) = envoy::get(at, "shop.example", "/", &[]).await.unwrap();
        assert_eq!(
            status, 404,
            "not the config's: Istio's routes (here a 404) decide"
        );
    }
    let preflight = [
        ("origin", "http://web.backend.com"),
        ("access-control-request-method", "POST"),
    ];
    let (status, _) = envoy::request(
        at,
        "OPTIONS",
        "api.backend.com",
        "/digimon.Digimon/Query",
        &preflight,
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let (status, body) = envoy::get(at, "api.backend.com", "/nope", &[])
        .await
        .unwrap();
    // The filter's 404 is Envoy's own: empty (the not_found counter shows who answered).
    assert_eq!(status, 404);
    assert!(body.is_empty(), "{body}");
}

fn has(r: &Run, line: &str) {
    assert!(r.stdout.contains(line), "missing {line:?}:\n{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_proves_the_filter_runs_and_counts_its_requests() {
    let (s, pod) = enabled_gateway().await;
    let dir = envoy::workdir();
    let ports = Ports::new();
    let mut local = envoy::mesh(&digimon_config(), &dir, ports, envoy::upstream().await);
    let (filter, hash) = applied_filter(&s, &dir);
    assert_eq!(local.http_filters[0]["name"], filter["name"]);
    local.http_filters[0] = filter;
    let envoy = Envoy::start(&envoy::with_istio_stats(&local, ports, &[]), &dir, ports).await;
    traffic(&envoy).await;
    // The filter hands its counts to Envoy on its one-second tick (per worker VM).
    for (counter, n) in [
        ("mesh_filter_routed", 3),
        ("mesh_filter_passed_through", 2),
        ("mesh_filter_cors_preflight", 1),
        ("mesh_filter_not_found", 1),
    ] {
        envoy.wait_metric(counter, n).await;
    }
    expose(&s, &pod, 15090, &envoy);

    let r = run(&s, &["check", "-n", "istio-system"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    has(
        &r,
        &format!("[ok]   pod {pod}: runs the applied config ({hash})"),
    );
    has(
        &r,
        &format!("[ok]   pod {pod}: filter loaded and configured"),
    );
    has(&r, &format!("[ok]   pod {pod}: Wasm VM running"));
    has(
        &r,
        &format!("[ok]   pod {pod}: requests: 3 routed, 2 passed through, 2 answered by the filter (1 CORS preflight, 1 not found)"),
    );
    has(&r, &format!("[ok]   pod {pod}: no failed host calls"));
    let path =
        format!("GET /api/v1/namespaces/istio-system/pods/{pod}:15090/proxy/stats/prometheus");
    assert!(s.emu.state().log.contains(&path), "{:?}", s.emu.state().log);

    // Where 15090 cannot be reached, istio-agent's merged endpoint (15020) serves the same.
    {
        let mut st = s.emu.state();
        st.pod_proxies.clear();
        st.pod_proxies.insert(
            ("istio-system".into(), pod.clone(), 15020),
            envoy.ports.prometheus,
        );
    }
    let r = run(&s, &["check", "-n", "istio-system", "-o", "json"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let proxy = v["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["categoryName"] == "proxy")
        .unwrap_or_else(|| panic!("{r:?}"));
    let current = proxy["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "proxy.config-current")
        .unwrap_or_else(|| panic!("{r:?}"));
    assert_eq!(current["result"], "success", "{current}");
    assert_eq!(current["group"], "Workload istio-ingressgateway");
}

/// Istio's inclusion list keeps `wasmcustom.*` through its `wasm` prefix, and only through it:
/// without that one pattern the same proxy exports none of the filter's stats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istios_wasm_stats_prefix_is_what_keeps_the_counters() {
    let (s, pod) = enabled_gateway().await;
    let dir = envoy::workdir();
    let ports = Ports::new();
    let local = envoy::mesh(&digimon_config(), &dir, ports, envoy::upstream().await);
    let envoy = Envoy::start(
        &envoy::with_istio_stats(&local, ports, &["wasm"]),
        &dir,
        ports,
    )
    .await;
    traffic(&envoy).await;
    expose(&s, &pod, 15090, &envoy);
    let r = run(&s, &["check", "-n", "istio-system"]).await;
    assert_ne!(r.code, 0, "{r:?}");
    has(&r, &format!("[FAIL] pod {pod}: filter loaded"));
}

/// A proxy istiod has not yet pushed the applied object to runs the config before it: the
/// revision it reports says so (a config edit restarts no pod, so the pod's age cannot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_running_another_config_fails_until_it_runs_the_applied_one() {
    let (s, pod) = enabled_gateway().await;
    let dir = envoy::workdir();
    let ports = Ports::new();
    let mut local = envoy::mesh(&digimon_config(), &dir, ports, envoy::upstream().await);
    let code = builder::local_code(&dir.join("mesh_filter.wasm").display().to_string());
    let previous = digimon_config()
        .to_filter_json_with_revision(mesh_core::Delivery::Upstream, "0123456789abcdef");
    local.http_filters[0] = builder::http_filter(builder::plugin_config_json(
        &previous,
        builder::FailPolicy::Reload,
        code,
    ));
    let (bootstrap, old) = envoy::with_file_lds(envoy::with_istio_stats(&local, ports, &[]), &dir);
    envoy::write_lds(&dir, 1, &old);
    let envoy = Envoy::start(&bootstrap, &dir, ports).await;
    envoy
        .wait_metric("mesh_filter_config_revision", 0x0123_4567_89ab)
        .await;
    expose(&s, &pod, 15090, &envoy);
    let (applied, hash) = applied_filter(&s, &dir);
    let r = run(&s, &["check", "-n", "istio-system"]).await;
    assert_ne!(r.code, 0, "{r:?}");
    has(
        &r,
        &format!("[FAIL] pod {pod}: runs the applied config ({hash})"),
    );
    has(&r, "the proxy runs another config (revision 0123456789ab)");
    // istiod pushes the applied object: the same pod, now current.
    local.http_filters[0] = applied;
    let (_, new) = envoy::with_file_lds(envoy::with_istio_stats(&local, ports, &[]), &dir);
    envoy::write_lds(&dir, 2, &new);
    let want = u64::from_str_radix(&hash[..12], 16).unwrap();
    envoy.wait_metric("mesh_filter_config_revision", want).await;
    let r = run(&s, &["check", "-n", "istio-system"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    has(
        &r,
        &format!("[ok]   pod {pod}: runs the applied config ({hash})"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_without_the_filter_is_not_loaded_with_the_fix() {
    let (s, pod) = enabled_gateway().await;
    let dir = envoy::workdir();
    let ports = Ports::new();
    // The pod's proxy as it runs when it started before enable: no mesh filter at all.
    let mut local = envoy::mesh(&digimon_config(), &dir, ports, envoy::upstream().await);
    local.http_filters.clear();
    let envoy = Envoy::start(&envoy::with_istio_stats(&local, ports, &[]), &dir, ports).await;
    expose(&s, &pod, 15090, &envoy);
    let r = run(&s, &["check", "-n", "istio-system"]).await;
    assert_ne!(r.code, 0, "{r:?}");
    has(&r, &format!("[FAIL] pod {pod}: filter loaded\n"));
    has(
        &r,
        "hint: not loaded: istio-proxy exports no mesh_filter_* stats",
    );
    has(
        &r,
        "kubectl rollout restart deployment/istio-ingressgateway",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_configuration_fails_while_the_old_one_keeps_running() {
    let (s, pod) = enabled_gateway().await;
    let dir = envoy::workdir();
    let ports = Ports::new();
    let cfg = digimon_config();
    let local = envoy::mesh(&cfg, &dir, ports, envoy::upstream().await);
    let (bootstrap, good) = envoy::with_file_lds(envoy::with_istio_stats(&local, ports, &[]), &dir);
    envoy::write_lds(&dir, 1, &good);
    let envoy = Envoy::start(&bootstrap, &dir, ports).await;
    envoy.wait_metric("mesh_filter_config_ok", 1).await;
    traffic(&envoy).await;

    // istiod pushes a listener whose filter configuration the filter refuses.
    let bad_config = r#"{"apiVersion":"kubectl-mesh/v1alpha1","kind":"MeshConfig","hosts":[{"domains":["a"],"routes":[{"match":{"regex":"("},"to":{"cluster":"c"}}]}]}"#;
    let code = builder::local_code(&dir.join("mesh_filter.wasm").display().to_string());
    let mut bad_local = local.clone();
    bad_local.http_filters = vec![builder::http_filter(builder::plugin_config_json(
        bad_config,
        builder::FailPolicy::Reload,
        code,
    ))];
    let (_, bad) = envoy::with_file_lds(bad_local.bootstrap(), &dir);
    envoy::write_lds(&dir, 2, &bad);
    envoy.wait_metric("mesh_filter_config_ok", 0).await;
    let (status, _) = envoy::get(envoy.ports.listen, "web.backend.com", "/", &[])
        .await
        .unwrap();
    assert_eq!(status, 200, "Envoy keeps the listener it had");

    expose(&s, &pod, 15090, &envoy);
    let r = run(&s, &["check", "-n", "istio-system"]).await;
    assert_ne!(r.code, 0, "{r:?}");
    has(
        &r,
        &format!("[FAIL] pod {pod}: filter loaded and configured"),
    );
    has(&r, "refused the filter's last configuration");
    has(
        &r,
        &format!("kubectl logs {pod} -c istio-proxy | grep mesh-filter"),
    );
    assert!(
        envoy.log().contains("hosts[0].routes[0].match.regex"),
        "the log the hint points at names the field"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_proxy_is_a_warning_naming_the_cause() {
    let (s, pod) = enabled_gateway().await;
    // Nothing listens on the pod's ports: the API server answers 503.
    let r = run(&s, &["check", "-n", "istio-system"]).await;
    assert_eq!(r.code, 0, "a warning, not a failure: {r:?}");
    has(&r, &format!("[warn] pod {pod}: proxy stats readable"));
    has(&r, "connect: connection refused");
    has(&r, "pods/proxy");
    let log = s.emu.state().log.clone();
    for port in [15090, 15020] {
        let path =
            format!("GET /api/v1/namespaces/istio-system/pods/{pod}:{port}/proxy/stats/prometheus");
        assert_eq!(
            log.iter().filter(|l| **l == path).count(),
            1,
            "no retries: {log:?}"
        );
    }
    // Without RBAC for pods/proxy.
    s.emu
        .state()
        .forbidden
        .push(("pods/proxy".into(), "*".into()));
    let r = run(&s, &["check", "-n", "istio-system"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    has(&r, "cannot get resource \"pods/proxy\"");
}

/// `enable --wait` waits for the proof: the gateway Deployment rolls out, then its pod's proxy
/// must report the filter loaded with the applied config. Until the pod's stats answer, the
/// progress line says why; once a real Envoy running the applied filter answers behind the
/// pod, the wait ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_wait_ends_when_the_proxy_runs_the_applied_config() {
    let s = with_gateway().await;
    let child = command(
        &s.kubeconfig,
        &gateway_enable_args(&["--wait", "--timeout", "30"]),
    )
    .spawn()
    .unwrap();
    // Once the binary has patched the gateway, play the rollout.
    for _ in 0..200 {
        let patched = live(
            &s,
            "apis/apps/v1",
            "deployments",
            "istio-system",
            "istio-ingressgateway",
        )
        .is_some_and(|d| {
            d["spec"]["template"]["metadata"]["labels"]["kubectl-mesh/filter"] == "kubectl-mesh"
        });
        if patched {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    s.emu.state().advance_rollouts();
    let pods = pod_names(&s, "istio-system");
    assert_eq!(pods.len(), 1, "{pods:?}");
    // The wait reads the pod's stats, which do not answer yet.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let dir = envoy::workdir();
    let ports = Ports::new();
    let mut local = envoy::mesh(&digimon_config(), &dir, ports, envoy::upstream().await);
    let (filter, hash) = applied_filter(&s, &dir);
    local.http_filters[0] = filter;
    let envoy = Envoy::start(&envoy::with_istio_stats(&local, ports, &[]), &dir, ports).await;
    expose(&s, &pods[0], 15090, &envoy);
    let out = tokio::time::timeout(std::time::Duration::from_secs(40), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    let pod = &pods[0];
    for line in [
        format!("waiting: istio-ingressgateway: 1/1 pods running with istio-proxy, 0/1 run the applied config (pod {pod}: stats not readable"),
        "waiting: istio-ingressgateway: 1/1 pods running with istio-proxy, 1/1 run the applied config".to_owned(),
        "done: every selected pod runs the applied config".to_owned(),
    ] {
        assert!(stdout.contains(&line), "missing {line:?}:\n{stdout}");
    }
    assert_eq!(
        envoy.metric("mesh_filter_config_revision").await,
        Some(u64::from_str_radix(&hash[..12], 16).unwrap())
    );
}
