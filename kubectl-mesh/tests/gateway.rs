//! The gateway context against the real API server (support/apiserver.rs, one test at a time:
//! the plugin reads Gateways and VirtualServices in every namespace): `enable` binds the config's hosts to an
//! existing Istio Gateway that serves them (or creates one), and `check` reports the anchor,
//! the Gateway and the VirtualServices that also claim the config's hosts.

// A failed unwrap in a test is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod emulator;
mod support;

use serde_json::{json, Value};
use support::apiserver::Cluster;
use support::*;

const NET: &str = "networking.istio.io/v1beta1";

fn gateway(ns: &str, name: &str, selector: Value, servers: Value) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1beta1", "kind": "Gateway",
        "metadata": { "namespace": ns, "name": name },
        "spec": { "selector": selector, "servers": servers },
    })
}

fn http(hosts: &[&str]) -> Value {
    json!({ "port": { "number": 80, "name": "http", "protocol": "HTTP" }, "hosts": hosts })
}

fn virtual_service(ns: &str, name: &str, gateways: &[&str], hosts: &[&str], http: Value) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
        "metadata": { "namespace": ns, "name": name },
        "spec": { "gateways": gateways, "hosts": hosts, "http": http },
    })
}

fn ingress() -> Value {
    json!({ "istio": "ingressgateway" })
}

async fn anchor_gateways(s: &Cluster) -> Value {
    s.live(NET, "virtualservices", "istio-system", "kubectl-mesh")
        .await
        .unwrap()["spec"]["gateways"]
        .clone()
}

fn has(r: &Run, line: &str) {
    assert!(r.stdout.contains(line), "missing {line:?}:\n{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_binds_the_hosts_to_an_existing_gateway_that_serves_them() {
    let s = Cluster::gateway().await;
    // Sorted first, serving everything, but for other pods: never chosen.
    s.seed(gateway(
        "istio-system",
        "aaa-eastwest",
        json!({ "istio": "eastwestgateway" }),
        json!([http(&["*"])]),
    ))
    .await;
    s.seed(gateway(
        "istio-system",
        "public",
        ingress(),
        json!([http(&["*.backend.com"])]),
    ))
    .await;
    let r = run(&s, &gateway_enable_args(&[])).await;
    assert_eq!(r.code, 0, "{r:?}");
    has(&r, "gateway: using the existing Gateway istio-system/public, which serves api.backend.com, web.backend.com on HTTP port 80");
    assert!(
        s.live(NET, "gateways", "istio-system", "kubectl-mesh")
            .await
            .is_none(),
        "no Gateway of its own"
    );
    assert_eq!(anchor_gateways(&s).await, json!(["istio-system/public"]));
    let r = run(&s, &gateway_enable_args(&[])).await;
    has(&r, "nothing to change");

    s.advance_rollouts().await;
    let r = run(&s, &["check", "-n", "istio-system"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    has(
        &r,
        "[ok]   Gateway istio-system/public serves api.backend.com, web.backend.com",
    );

    // Someone deletes it: check fails, and enable creates kubectl-mesh's own and rebinds.
    s.remove(NET, "gateways", "istio-system", "public").await;
    let r = run(&s, &["check", "-n", "istio-system"]).await;
    assert_ne!(r.code, 0, "{r:?}");
    has(&r, "[FAIL] Gateway istio-system/public exists");
    let r = run(&s, &gateway_enable_args(&[])).await;
    assert_eq!(r.code, 0, "{r:?}");
    has(&r, "gateway: no Istio Gateway of these pods serves api.backend.com, web.backend.com on HTTP port 80; creating istio-system/kubectl-mesh");
    assert!(s
        .live(NET, "gateways", "istio-system", "kubectl-mesh")
        .await
        .is_some());
    assert_eq!(
        anchor_gateways(&s).await,
        json!(["istio-system/kubectl-mesh"])
    );

    // Its own Gateway is never taken for an existing one (that would delete it).
    let r = run(&s, &gateway_enable_args(&[])).await;
    has(&r, "creating istio-system/kubectl-mesh");
    has(&r, "nothing to change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_host_namespaces_decide_whether_a_gateway_can_take_the_anchor() {
    let s = Cluster::gateway().await;
    // `apps/*` admits only VirtualServices of namespace apps; the anchor lives in istio-system.
    s.seed(gateway(
        "apps",
        "shared",
        ingress(),
        json!([http(&["apps/*"])]),
    ))
    .await;
    let before = s.fingerprint().await;
    let r = run(&s, &gateway_enable_args(&["--dry-run"])).await;
    assert_eq!(r.code, 0, "{r:?}");
    has(&r, "creating istio-system/kubectl-mesh");
    assert_eq!(s.fingerprint().await, before, "nothing written");

    s.seed(gateway(
        "apps",
        "open",
        ingress(),
        json!([http(&["*/api.backend.com", "istio-system/web.backend.com"])]),
    ))
    .await;
    let r = run(&s, &gateway_enable_args(&[])).await;
    assert_eq!(r.code, 0, "{r:?}");
    has(&r, "using the existing Gateway apps/open");
    assert_eq!(anchor_gateways(&s).await, json!(["apps/open"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_host_another_gateway_terminates_is_not_duplicated() {
    let s = Cluster::gateway().await;
    s.seed(gateway(
        "istio-system",
        "api-tls",
        ingress(),
        json!([{
            "port": { "number": 443, "name": "https", "protocol": "HTTPS" },
            "tls": { "mode": "SIMPLE", "credentialName": "api-cert" },
            "hosts": ["api.backend.com"],
        }]),
    ))
    .await;
    let r = run(&s, &gateway_enable_args(&["--tls-secret", "backend-cert"])).await;
    assert_eq!(r.code, 0, "{r:?}");
    has(
        &r,
        "gateway: using the existing Gateway istio-system/api-tls: it already terminates HTTPS",
    );
    has(&r, "warning: istio-system/api-tls does not serve api.backend.com on HTTP port 80, web.backend.com on HTTP port 80, web.backend.com on HTTPS port 443");
    assert!(s
        .live(NET, "gateways", "istio-system", "kubectl-mesh")
        .await
        .is_none());

    s.advance_rollouts().await;
    let r = run(&s, &["check", "-n", "istio-system"]).await;
    assert_ne!(r.code, 0, "{r:?}");
    has(
        &r,
        "[FAIL] Gateway istio-system/api-tls serves api.backend.com, web.backend.com",
    );
    has(
        &r,
        "no server of istio-system/api-tls admits web.backend.com",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_gateway_must_exist() {
    let s = Cluster::gateway().await;
    let before = s.fingerprint().await;
    let r = run(
        &s,
        &gateway_enable_args(&["--gateway", "istio-system/nope"]),
    )
    .await;
    assert_ne!(r.code, 0, "{r:?}");
    assert!(
        r.stderr
            .contains("--gateway istio-system/nope: no such Istio Gateway"),
        "{r:?}"
    );
    assert_eq!(s.fingerprint().await, before, "nothing written");
    s.seed(gateway(
        "istio-system",
        "nope",
        json!({}),
        json!([http(&["*"])]),
    ))
    .await;
    let r = run(
        &s,
        &gateway_enable_args(&["--gateway", "istio-system/nope"]),
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    has(
        &r,
        "gateway: binding the hosts to istio-system/nope (--gateway)",
    );
    assert_eq!(anchor_gateways(&s).await, json!(["istio-system/nope"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_about_virtual_services_sharing_the_hosts_and_says_who_wins() {
    let s = Cluster::gateway().await;
    assert_eq!(run(&s, &gateway_enable_args(&[])).await.code, 0);
    s.advance_rollouts().await;
    let route = |host: &str| json!({ "destination": { "host": host } });
    s.seed(virtual_service(
        "digimon",
        "legacy",
        &["istio-system/kubectl-mesh"],
        &["api.backend.com"],
        json!([{
            "corsPolicy": { "allowOrigins": [{ "exact": "http://web.backend.com" }] },
            "route": [route("server")],
        }]),
    ))
    .await;
    s.seed(virtual_service(
        "istio-system",
        "wild",
        &["kubectl-mesh"],
        &["*.backend.com"],
        json!([{ "route": [route("web")] }]),
    ))
    .await;
    // A short name means the VirtualService's own namespace: another Gateway.
    s.seed(virtual_service(
        "digimon",
        "elsewhere",
        &["kubectl-mesh"],
        &["api.backend.com"],
        json!([{ "route": [route("server")] }]),
    ))
    .await;
    s.seed(virtual_service(
        "digimon",
        "shop",
        &["istio-system/kubectl-mesh"],
        &["shop.example"],
        json!([{ "route": [route("shop")] }]),
    ))
    .await;
    s.seed(virtual_service(
        "digimon",
        "in-mesh",
        &["mesh"],
        &["api.backend.com"],
        json!([{ "route": [route("server")] }]),
    ))
    .await;
    let r = run(&s, &["check", "-n", "istio-system"]).await;
    assert_eq!(r.code, 0, "warnings only: {r:?}");
    has(&r, "[warn] VirtualService digimon/legacy also routes api.backend.com on istio-system/kubectl-mesh");
    has(&r, "[warn] VirtualService istio-system/wild also routes *.backend.com on istio-system/kubectl-mesh");
    has(
        &r,
        "its routing route is inserted first in every virtual host",
    );
    has(&r, "its corsPolicy still apply to them");
    has(
        &r,
        "Fix: remove api.backend.com from digimon/legacy's hosts",
    );
    for quiet in [
        "elsewhere",
        "shop",
        "in-mesh",
        "VirtualService istio-system/kubectl-mesh also",
    ] {
        assert!(!r.stdout.contains(quiet), "{quiet}: {r:?}");
    }

    s.remove(NET, "virtualservices", "istio-system", "kubectl-mesh")
        .await;
    let r = run(&s, &["check", "-n", "istio-system"]).await;
    assert_ne!(r.code, 0, "{r:?}");
    has(
        &r,
        "[FAIL] anchor VirtualService istio-system/kubectl-mesh present",
    );
}

/// `enable` without flags puts the gateway's objects in the gateway's namespace
/// (istio-system); `check` and `disable` without flags, run from the app's namespace (the
/// kubeconfig's, digimon), find them there, though other namespaces hold instances too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_disable_without_flags_find_what_enable_without_flags_made() {
    let s = Cluster::gateway().await;
    // Another app's instance elsewhere: not digimon's.
    let other = Cluster::digimon(json!({})).await;
    assert_eq!(run(&other, &other.enable_args(&[])).await.code, 0);
    let file = example_yaml();
    let r = run(&s, &["enable", "-f", file.to_str().unwrap()]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(s
        .live(
            "networking.istio.io/v1alpha3",
            "envoyfilters",
            "istio-system",
            "kubectl-mesh"
        )
        .await
        .is_some());
    s.advance_rollouts().await;
    let r = run(&s, &["check"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    has(
        &r,
        "kubectl-mesh instance kubectl-mesh is in namespace istio-system",
    );
    has(&r, "[ok]   namespace istio-system exists");
    has(&r, "[ok]   filter object EnvoyFilter kubectl-mesh present");
    let r = run(&s, &["disable"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    has(&r, "EnvoyFilter istio-system/kubectl-mesh: delete");
    assert!(s
        .live(NET, "virtualservices", "istio-system", "kubectl-mesh")
        .await
        .is_none());
    assert!(
        other
            .live(
                "networking.istio.io/v1alpha3",
                "envoyfilters",
                &other.ns,
                "kubectl-mesh"
            )
            .await
            .is_some(),
        "the other app's instance stays"
    );
    // Nothing of this app's left: disable says where it looked.
    let r = run(&s, &["disable"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    has(&r, "nothing to change");
}
