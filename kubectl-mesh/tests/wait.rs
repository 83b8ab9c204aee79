//! `enable --wait` and `check --wait` of the real binary against the real API server
//! (support/apiserver.rs; the test plays the rollouts): progress per workload, the rollout, the
//! wait for the proxies' proof (which only tests/proxy_stats.rs can give, with real Envoy behind
//! the emulator's pod proxy), timeouts.

// A failed unwrap in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod emulator;
mod support;

use serde_json::json;
use std::time::Duration;

use support::apiserver::Cluster;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_shows_progress_until_the_test_advances_the_rollout() {
    let s = Cluster::digimon(json!({})).await;
    let child = command(
        &s.kubeconfig,
        &s.enable_args(&["--wait=rollout", "--timeout", "30"]),
    )
    .spawn()
    .unwrap();
    // Wait until the binary has patched the Deployment, then let the rollout finish.
    for _ in 0..200 {
        if s.server_annotations()
            .await
            .get("kubectl-mesh/module-sha256")
            .is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    s.advance_rollouts().await;
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("waiting: server: 0/1 pods running with istio-proxy"),
        "{stdout}"
    );
    assert!(
        stdout.contains("waiting: server: 1/1 pods running with istio-proxy"),
        "{stdout}"
    );
    assert!(stdout.contains("rolled out"), "{stdout}");
}

/// `--wait` waits for the proof, each pod's proxy running the applied config, which a server
/// without a kubelet cannot give (its pods have no address to read stats from): after the
/// rollout it keeps waiting and says why. (tests/proxy_stats.rs has the whole proof, with
/// real Envoy behind the emulator's pod proxy.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_waits_for_the_proxies_after_the_rollout() {
    let s = Cluster::digimon(json!({})).await;
    assert_eq!(run(&s, &s.enable_args(&[])).await.code, 0);
    s.advance_rollouts().await;
    let r = run(&s, &s.enable_args(&["--wait", "--timeout", "2"])).await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stdout.contains(
            "waiting: server: 1/1 pods running with istio-proxy, 0/1 run the applied config (pod server-"
        ) && r.stdout.contains("stats not readable"),
        "{r:?}"
    );
    assert!(
        r.stderr
            .contains("every change was applied, but --wait timed out after 2s: server: 1/1"),
        "{r:?}"
    );
}

/// `check --wait` for CI: it checks again until nothing fails, here once the rollout the test
/// plays is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_wait_ends_when_nothing_fails() {
    let s = Cluster::digimon(json!({})).await;
    assert_eq!(run(&s, &s.enable_args(&[])).await.code, 0);
    let child = command(&s.kubeconfig, &["check", "--wait", "--timeout", "30"])
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.advance_rollouts().await;
    let out = tokio::time::timeout(Duration::from_secs(40), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("check --wait: ") && stderr.contains("sidecar present (0/1 pods)"),
        "it waited: {stderr}"
    );
    assert!(
        stdout.contains("[ok]   sidecar present (1/1 pods)"),
        "{stdout}"
    );
    // It gives up at its timeout, with the checklist, and exits 1.
    let r = run(
        &s,
        &[
            "check",
            "-l",
            "io.kompose.service=web",
            "--wait",
            "--timeout",
            "1",
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("[FAIL]"), "{r:?}");
}

/// Istio 1.27+ on Kubernetes 1.33+ injects `istio-proxy` as an init container that keeps
/// running: `--wait` and `check` count it as the sidecar (they looked at containers only, so
/// `--wait` never ended and `check` said 0/1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_sidecars_count_for_wait_and_check() {
    let mut s = Cluster::digimon(json!({})).await;
    s.native_sidecars = true;
    assert_eq!(run(&s, &s.enable_args(&[])).await.code, 0);
    s.advance_rollouts().await;
    let r = run(&s, &s.enable_args(&["--wait=rollout", "--timeout", "5"])).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("server: 1/1 pods running with istio-proxy"),
        "{r:?}"
    );
    let r = run(&s, &["check"]).await;
    for line in [
        "[ok]   sidecar present (1/1 pods)",
        "[ok]   module mounted",
        "[ok]   pods run the ConfigMap's module",
    ] {
        assert!(r.stdout.contains(line), "missing {line:?}: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_times_out_when_the_rollout_never_finishes() {
    let s = Cluster::digimon(json!({})).await;
    let r = run(&s, &s.enable_args(&["--wait", "--timeout", "1"])).await;
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("timed out after 1s"), "{r:?}");
}
