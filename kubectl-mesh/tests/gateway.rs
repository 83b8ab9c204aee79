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

/// Gateways as users install them. istioctl's (in istio-system, always seeded here) and the
/// Helm chart's (istio-ingress): enable without -n and -l uses the one already serving the
/// hosts, the Helm one; with none serving, it cannot tell and refuses, listing what to pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_finds_the_helm_gateway_that_serves_the_hosts_or_says_what_to_pass() {
    let s = Cluster::gateway().await;
    s.seed_helm_gateway().await;
    s.advance_rollouts().await;
    let file = example_yaml();
    let args = ["enable", "-f", file.to_str().unwrap()];
    let before = s.fingerprint().await;
    let r = run(&s, &args).await;
    assert_eq!(r.code, 2, "{r:?}");
    for line in [
        "several ingress gateways and none serves api.backend.com, web.backend.com",
        "istio-ingress/istio-ingress (Helm gateway chart; pods istio=ingress): serves none of them; pass -n istio-ingress -l istio=ingress",
        "istio-system/istio-ingressgateway (istioctl; pods istio=ingressgateway): serves none of them; pass -n istio-system -l istio=ingressgateway",
    ] {
        assert!(r.stderr.contains(line), "missing {line:?}: {r:?}");
    }
    assert_eq!(s.fingerprint().await, before, "nothing written");

    // The Helm gateway's team already serves the hosts there.
    s.seed(gateway(
        "istio-ingress",
        "public",
        json!({ "istio": "ingress" }),
        json!([http(&["*.backend.com"])]),
    ))
    .await;
    let r = run(&s, &args).await;
    assert_eq!(r.code, 0, "{r:?}");
    has(
        &r,
        "gateway: istio-ingress/istio-ingress (Helm gateway chart; pods istio=ingress) already serves api.backend.com, web.backend.com",
    );
    has(
        &r,
        "gateway: using the existing Gateway istio-ingress/public",
    );
    let ef = s
        .live(
            "networking.istio.io/v1alpha3",
            "envoyfilters",
            "istio-ingress",
            "kubectl-mesh",
        )
        .await
        .unwrap();
    assert_eq!(
        ef["spec"]["workloadSelector"]["labels"],
        json!({ "istio": "ingress", "kubectl-mesh/filter": "kubectl-mesh" })
    );
    let helm = s
        .live("apps/v1", "deployments", "istio-ingress", "istio-ingress")
        .await
        .unwrap();
    let spec = &helm["spec"]["template"]["spec"];
    assert_eq!(
        spec["containers"][0]["image"], "auto",
        "the injector's stays"
    );
    assert_eq!(
        spec["containers"][0]["volumeMounts"][0]["mountPath"],
        "/var/local/kubectl-mesh"
    );
    assert!(s
        .live(
            "apps/v1",
            "deployments",
            "istio-system",
            "istio-ingressgateway"
        )
        .await
        .unwrap()["spec"]["template"]["metadata"]["labels"]
        .get("kubectl-mesh/filter")
        .is_none());
    s.advance_rollouts().await;
    let r = run(&s, &["check"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    has(
        &r,
        "kubectl-mesh instance kubectl-mesh is in namespace istio-ingress",
    );
    has(
        &r,
        "[ok]   Gateway istio-ingress/public serves api.backend.com, web.backend.com",
    );
    assert_eq!(run(&s, &["disable"]).await.code, 0);
    assert!(s
        .live(
            "networking.istio.io/v1alpha3",
            "envoyfilters",
            "istio-ingress",
            "kubectl-mesh"
        )
        .await
        .is_none());
}

/// A Kubernetes Gateway API gateway (Gateway `public` of class istio in digimon, istiod's
/// Deployment public-istio) whose listener admits every host: enable without flags uses it,
/// binds the hosts with an HTTPRoute, and mounts the module into its pods; check reports the
/// route and the listener; disable removes it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_uses_a_gateway_api_gateway_with_an_http_route() {
    let s = Cluster::gateway().await;
    s.seed_gateway_api(json!({ "name": "http", "port": 80, "protocol": "HTTP" }))
        .await;
    s.advance_rollouts().await;
    let file = example_yaml();
    let r = run(&s, &["enable", "-f", file.to_str().unwrap()]).await;
    assert_eq!(r.code, 0, "{r:?}");
    has(&r, "gateway: digimon/public-istio (Gateway API Gateway public; pods gateway.networking.k8s.io/gateway-name=public) already serves api.backend.com, web.backend.com");
    has(
        &r,
        "gateway: binding the hosts to the Gateway API Gateway digimon/public with an HTTPRoute",
    );
    let route = s
        .live(
            "gateway.networking.k8s.io/v1",
            "httproutes",
            "digimon",
            "kubectl-mesh",
        )
        .await
        .unwrap();
    assert_eq!(route["spec"]["parentRefs"][0]["name"], "public");
    assert_eq!(
        route["spec"]["hostnames"],
        json!(["api.backend.com", "web.backend.com"])
    );
    assert!(
        s.live(NET, "virtualservices", "digimon", "kubectl-mesh")
            .await
            .is_none()
            && s.live(NET, "gateways", "digimon", "kubectl-mesh")
                .await
                .is_none(),
        "no Istio Gateway or VirtualService"
    );
    let gw = s
        .live("apps/v1", "deployments", "digimon", "public-istio")
        .await
        .unwrap();
    assert_eq!(
        gw["spec"]["template"]["metadata"]["labels"]["kubectl-mesh/filter"],
        "kubectl-mesh"
    );
    s.advance_rollouts().await;
    let r = run(&s, &["check"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    has(&r, "[ok]   anchor HTTPRoute digimon/kubectl-mesh binds api.backend.com, web.backend.com to Gateway digimon/public");
    has(
        &r,
        "[ok]   Gateway digimon/public serves api.backend.com, web.backend.com",
    );
    has(&r, "[ok]   module mounted");
    // Someone narrows the listener to another host: check says which hosts it no longer takes.
    let path = "/apis/gateway.networking.k8s.io/v1/namespaces/digimon/gateways/public";
    let patch = json!({ "spec": { "listeners": [
        { "name": "http", "port": 80, "protocol": "HTTP", "hostname": "api.backend.com" },
    ]}});
    support::apiserver::request(
        &s.client,
        "PATCH",
        path,
        "application/merge-patch+json",
        &patch,
    )
    .await
    .unwrap();
    let r = run(&s, &["check"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    has(
        &r,
        "no HTTP listener of digimon/public admits web.backend.com",
    );
    let r = run(&s, &["disable"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(s
        .live(
            "gateway.networking.k8s.io/v1",
            "httproutes",
            "digimon",
            "kubectl-mesh"
        )
        .await
        .is_none());
    // A downloaded module through a WasmPlugin: targetRefs names the Gateway, no pod changes.
    let deployment = s
        .live("apps/v1", "deployments", "digimon", "public-istio")
        .await
        .unwrap();
    let sha = "a".repeat(64);
    let r = run(
        &s,
        &[
            "enable",
            "-f",
            file.to_str().unwrap(),
            "--api",
            "wasmplugin",
            "--module-url",
            "https://modules.example/m.wasm",
            "--module-sha256",
            &sha,
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let plugin = s
        .live(
            "extensions.istio.io/v1alpha1",
            "wasmplugins",
            "digimon",
            "kubectl-mesh",
        )
        .await
        .unwrap();
    assert_eq!(
        plugin["spec"]["targetRefs"],
        json!([{ "group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public" }])
    );
    assert_eq!(
        s.live("apps/v1", "deployments", "digimon", "public-istio")
            .await
            .unwrap()["metadata"]["resourceVersion"],
        deployment["metadata"]["resourceVersion"],
        "no pod rolls: {r:?}"
    );
}
