//! `enable`, `check` and `disable` of the real binary against the real API server
//! (`make kube-apiserver`, support/apiserver.rs): what they apply, re-runs, rollouts.

// A failed unwrap in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod emulator;
mod support;

use serde_json::{json, Value};

use support::apiserver::Cluster;
use support::*;

const EF: &str = "networking.istio.io/v1alpha3";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_applies_everything_then_second_run_changes_nothing() {
    let s = Cluster::digimon(json!({ "team": "digimon" })).await;
    let r = run(&s, &s.enable_args(&[])).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("preflight ok"), "{r:?}");

    let ns = s.live("v1", "namespaces", "", &s.ns).await.unwrap();
    assert_eq!(ns["metadata"]["labels"]["istio-injection"], "enabled");
    assert_eq!(ns["metadata"]["labels"]["team"], "digimon");
    assert_eq!(
        ns["metadata"]["annotations"]["kubectl-mesh/added-labels"],
        "istio-injection"
    );
    let cm = s
        .live("v1", "configmaps", &s.ns, "kubectl-mesh-filter")
        .await
        .unwrap();
    assert_eq!(
        cm["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "kubectl-mesh"
    );
    let ef = s
        .live(EF, "envoyfilters", &s.ns, "kubectl-mesh")
        .await
        .unwrap();
    assert_eq!(
        ef["spec"]["workloadSelector"]["labels"]["io.kompose.service"],
        "server"
    );
    let managers: Vec<_> = ef["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["manager"].as_str().unwrap(),
                m["operation"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        managers,
        [("kubectl-mesh", "Apply")],
        "server-side apply as kubectl-mesh"
    );
    let ann = s.server_annotations().await;
    assert!(ann["sidecar.istio.io/userVolumeMount"]
        .as_str()
        .unwrap()
        .contains("kubectl-mesh-filter"));
    assert_eq!(
        ann["kubectl-mesh/module-sha256"],
        cm["metadata"]["annotations"]["kubectl-mesh/module-sha256"],
        "the pods roll for a new module"
    );
    assert!(
        ann.get("kubectl-mesh/config-hash").is_none(),
        "not for a config edit: {ann}"
    );
    assert!(ef["metadata"]["annotations"]["kubectl-mesh/config-hash"].is_string());
    assert_eq!(ann["user/own"], "keep");
    let web = s
        .live("apps/v1", "deployments", &s.ns, "web")
        .await
        .unwrap();
    assert!(
        web["spec"]["template"]["metadata"]["annotations"]
            .get("kubectl-mesh/module-sha256")
            .is_none(),
        "unselected workloads stay untouched"
    );

    let before = s.fingerprint().await;
    let again = run(&s, &s.enable_args(&[])).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("nothing to change"), "{again:?}");
    assert_eq!(s.fingerprint().await, before, "second run must not write");
}

/// A config edit travels in the EnvoyFilter, which istiod pushes to the running proxies: the
/// Deployment and its pods stay as they are (earlier versions put the config hash on the pod
/// template and restarted every selected workload, the gateway included, on every edit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_config_reaches_the_filter_and_restarts_nothing() {
    let s = Cluster::digimon(json!({})).await;
    assert_eq!(run(&s, &s.enable_args(&[])).await.code, 0);
    s.advance_rollouts().await;
    let deployment = || s.live("apps/v1", "deployments", &s.ns, "server");
    let before = deployment().await.unwrap();
    let pods = s.pod_names(&s.ns).await;
    let edited = s.kubeconfig.with_file_name("edited.yaml");
    let text = std::fs::read_to_string(s.mesh_yaml())
        .unwrap()
        .replace("maxAge: 1728", "maxAge: 60");
    std::fs::write(&edited, text).unwrap();
    let r = run(&s, &enable_file_args(&edited, SERVER, "sidecar-inbound")).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("applying 1 changes") && r.stdout.contains("EnvoyFilter"),
        "the EnvoyFilter only: {r:?}"
    );
    assert!(
        !r.stdout.contains(&format!("Deployment {}/server", s.ns))
            && !r.stdout.contains("pods are rolling"),
        "{r:?}"
    );
    let ef = s
        .live(EF, "envoyfilters", &s.ns, "kubectl-mesh")
        .await
        .unwrap();
    let value = ef["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["config"]
        ["configuration"]["value"]
        .as_str()
        .unwrap();
    assert!(value.contains("\"maxAge\":60"), "{value}");
    let hash = ef["metadata"]["annotations"]["kubectl-mesh/config-hash"]
        .as_str()
        .unwrap();
    assert!(
        value.contains(&format!("\"revision\":\"{hash}\"")),
        "the filter reports the applied hash: {value}"
    );
    let after = deployment().await.unwrap();
    assert_eq!(
        after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"],
        "the Deployment is not touched"
    );
    assert_eq!(s.pod_names(&s.ns).await, pods);
}

/// The pods load the module at start: a Deployment whose template names another module's sha
/// (an older kubectl-mesh's) rolls once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_module_rolls_the_pods() {
    let s = Cluster::digimon(json!({})).await;
    assert_eq!(run(&s, &s.enable_args(&[])).await.code, 0);
    let old = "0".repeat(64);
    let path = format!("/apis/apps/v1/namespaces/{}/deployments/server", s.ns);
    let patch = json!({ "spec": { "template": { "metadata": { "annotations": {
        "kubectl-mesh/module-sha256": old,
    }}}}});
    support::apiserver::request(
        &s.client,
        "PATCH",
        &path,
        "application/strategic-merge-patch+json",
        &patch,
    )
    .await
    .unwrap();
    let r = run(&s, &s.enable_args(&[])).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains(&format!(
            "Deployment {}/server: set pod template annotations, pods roll",
            s.ns
        )),
        "{r:?}"
    );
    let sha = s.server_annotations().await["kubectl-mesh/module-sha256"].clone();
    assert_ne!(sha, json!(old));
    assert_eq!(
        sha,
        s.live("v1", "configmaps", &s.ns, "kubectl-mesh-filter")
            .await
            .unwrap()["metadata"]["annotations"]["kubectl-mesh/module-sha256"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_to_wasmplugin_and_a_remote_module_removes_the_old_objects() {
    let s = Cluster::digimon(json!({})).await;
    assert_eq!(run(&s, &s.enable_args(&[])).await.code, 0);
    let sha = "a".repeat(64);
    let r = run(
        &s,
        &s.enable_args(&[
            "--api",
            "wasmplugin",
            "--module-url",
            "https://example.com/m.wasm",
            "--module-sha256",
            &sha,
        ]),
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(s
        .live(
            "extensions.istio.io/v1alpha1",
            "wasmplugins",
            &s.ns,
            "kubectl-mesh"
        )
        .await
        .is_some());
    assert!(s
        .live(EF, "envoyfilters", &s.ns, "kubectl-mesh-route")
        .await
        .is_some());
    assert!(
        s.live(EF, "envoyfilters", &s.ns, "kubectl-mesh")
            .await
            .is_none(),
        "the filter must not run twice: {r:?}"
    );
    assert!(
        s.live("v1", "configmaps", &s.ns, "kubectl-mesh-filter")
            .await
            .is_none(),
        "{r:?}"
    );
    let ann = s.server_annotations().await;
    assert!(
        ann.get("sidecar.istio.io/userVolume").is_none(),
        "no mount of a deleted ConfigMap: {ann}"
    );
    assert!(run(
        &s,
        &s.enable_args(&[
            "--api",
            "wasmplugin",
            "--module-url",
            "https://example.com/m.wasm",
            "--module-sha256",
            &sha
        ])
    )
    .await
    .stdout
    .contains("nothing to change"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_writes_nothing() {
    let s = Cluster::digimon(json!({})).await;
    let before = s.fingerprint().await;
    let r = run(&s, &s.enable_args(&["--dry-run"])).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("dry run, would apply 4 changes"), "{r:?}");
    assert_eq!(s.fingerprint().await, before, "dry run wrote");
    // -o: the objects as they would be sent, nothing else on stdout.
    let r = run(&s, &s.enable_args(&["--dry-run=client", "-o", "json"])).await;
    assert_eq!(r.code, 0, "{r:?}");
    let list: Value = serde_json::from_str(&r.stdout).unwrap();
    let kinds: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["Namespace", "ConfigMap", "EnvoyFilter", "Deployment"]
    );
    assert!(r.stderr.contains("dry run, would apply 4 changes"), "{r:?}");
    assert_eq!(s.fingerprint().await, before, "dry run wrote");
}

/// `--dry-run=server`: every write goes to the API server as its dry run, which validates,
/// admits and authorizes it and stores nothing; `-o yaml` prints its answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_dry_run_asks_the_api_server_and_stores_nothing() {
    let s = Cluster::digimon(json!({})).await;
    let before = s.fingerprint().await;
    let r = run(&s, &s.enable_args(&["--dry-run=server", "-o", "yaml"])).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr
            .contains("server dry run, the API server checks 4 changes")
            && r.stderr.contains("accepted: EnvoyFilter"),
        "{r:?}"
    );
    let answers: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&r.stdout)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(answers.len(), 4, "{r:?}");
    let cm = answers.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
    assert!(
        cm["metadata"]["uid"].is_string() && cm["metadata"]["managedFields"].is_array(),
        "the server's answer: {cm}"
    );
    let ns = answers.iter().find(|o| o["kind"] == "Namespace").unwrap();
    assert_eq!(ns["metadata"]["labels"]["istio-injection"], "enabled");
    assert_eq!(
        s.fingerprint().await,
        before,
        "the server's dry run stored nothing"
    );
    // What only the server knows, a server dry run finds: an admission policy refusing
    // EnvoyFilters here (a client dry run cannot see it).
    let policy = s.refuse_envoy_filters().await;
    let r = run(&s, &s.enable_args(&["--dry-run=client"])).await;
    assert_eq!(r.code, 0, "{r:?}");
    let r = run(&s, &s.enable_args(&["--dry-run=server"])).await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("no EnvoyFilters here (test policy)")
            && r.stderr.contains(&format!(
                "the API server's dry run refused: EnvoyFilter {}/kubectl-mesh",
                s.ns
            ))
            && r.stderr.contains("nothing was changed (--dry-run=server)"),
        "{r:?}"
    );
    assert_eq!(s.fingerprint().await, before, "nothing stored");
    policy.remove(&s).await;
    // And once applied, a server dry run of the same has nothing to check.
    assert_eq!(run(&s, &s.enable_args(&[])).await.code, 0);
    let r = run(&s, &s.enable_args(&["--dry-run=server"])).await;
    assert!(r.stdout.contains("nothing to change"), "{r:?}");
    // disable too.
    let before = s.fingerprint().await;
    let r = run(&s, &["disable", "--dry-run=server", "-o", "json"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("accepted: EnvoyFilter"), "{r:?}");
    let list: Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(list["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["kind"] == "Deployment"));
    assert_eq!(s.fingerprint().await, before, "nothing deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_before_rollout_and_passes_after() {
    let s = Cluster::digimon(json!({})).await;
    let r = run(&s, &["check", "-l", SERVER]).await;
    assert_eq!(r.code, 1, "nothing enabled yet: checks failed: {r:?}");
    assert!(
        r.stdout.contains("[FAIL] sidecar injection enabled"),
        "{r:?}"
    );

    assert_eq!(run(&s, &s.enable_args(&[])).await.code, 0);
    let r = run(&s, &["check"]).await;
    assert_ne!(r.code, 0, "pods predate the sidecar: {r:?}");
    assert!(
        r.stdout.contains("[FAIL] pods run the ConfigMap's module"),
        "pods run the old template: {r:?}"
    );
    assert!(
        r.stdout.contains("[FAIL] sidecar present (0/1 pods)"),
        "{r:?}"
    );

    s.advance_rollouts().await;
    let file = s.mesh_yaml();
    let r = run(&s, &["check", "-f", file.to_str().unwrap()]).await;
    assert_eq!(r.code, 0, "{r:?}");
    for line in [
        "Kubernetes API",
        "Istio",
        "Namespace",
        "Workload server",
        "[ok]   pods run the ConfigMap's module",
        "[ok]   module mounted",
        "[ok]   applied config matches the given file",
    ] {
        assert!(r.stdout.contains(line), "missing {line:?}: {r:?}");
    }
    // A file edited since enable is reported (a warning: the cluster still works).
    let edited = s.kubeconfig.with_file_name("edited.yaml");
    std::fs::write(
        &edited,
        std::fs::read_to_string(&file)
            .unwrap()
            .replace("maxAge: 1728", "maxAge: 60"),
    )
    .unwrap();
    let r = run(&s, &["check", "-f", edited.to_str().unwrap()]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("[warn] applied config matches the given file"),
        "{r:?}"
    );
    let r = run(&s, &["check", "-o", "json"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["success"], true, "{v}");
    let checks: Vec<&Value> = v["categories"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["checks"].as_array().unwrap())
        .collect();
    assert!(checks.iter().all(|c| c["result"] != "error"), "{v}");
    // Stable ids, one category per id prefix.
    for id in [
        "kubernetes-api.reachable",
        "namespace.injection",
        "workload.module-mounted",
        "workload.module-current",
        "workload.filter-attached",
    ] {
        assert!(checks.iter().any(|c| c["id"] == id), "{id}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_removes_exactly_what_enable_added() {
    let s = Cluster::digimon(json!({ "team": "digimon" })).await;
    assert_eq!(run(&s, &s.enable_args(&[])).await.code, 0);
    let r = run(&s, &["disable", "-n", &s.ns]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let ns = s.live("v1", "namespaces", "", &s.ns).await.unwrap();
    assert_eq!(
        ns["metadata"]["labels"],
        // The API server labels every namespace with its name.
        json!({ "team": "digimon", "kubernetes.io/metadata.name": s.ns }),
        "{ns}"
    );
    assert!(ns["metadata"]["annotations"]
        .get("kubectl-mesh/added-labels")
        .is_none());
    assert!(s
        .live("v1", "configmaps", &s.ns, "kubectl-mesh-filter")
        .await
        .is_none());
    assert!(s
        .live(EF, "envoyfilters", &s.ns, "kubectl-mesh")
        .await
        .is_none());
    assert_eq!(s.server_annotations().await, json!({ "user/own": "keep" }));
    let r = run(&s, &["disable", "-n", &s.ns]).await;
    assert!(r.stdout.contains("nothing to change"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_keeps_an_injection_label_the_user_had() {
    let s = Cluster::digimon(json!({ "istio-injection": "enabled" })).await;
    assert_eq!(run(&s, &s.enable_args(&[])).await.code, 0);
    assert_eq!(run(&s, &["disable"]).await.code, 0);
    let ns = s.live("v1", "namespaces", "", &s.ns).await.unwrap();
    assert_eq!(ns["metadata"]["labels"]["istio-injection"], "enabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_enable_mounts_the_module_into_the_gateway_deployment() {
    let s = Cluster::gateway().await;
    let file = example_yaml();
    let args = [
        "enable",
        "-f",
        file.to_str().unwrap(),
        "-n",
        "istio-system",
        "--envoy-context",
        "gateway",
    ];
    let r = run(&s, &args).await;
    assert_eq!(r.code, 0, "{r:?}");
    let gw = s
        .live(
            "apps/v1",
            "deployments",
            "istio-system",
            "istio-ingressgateway",
        )
        .await
        .unwrap();
    let spec = &gw["spec"]["template"]["spec"];
    assert_eq!(
        spec["volumes"][0]["configMap"]["name"],
        "kubectl-mesh-filter"
    );
    assert_eq!(
        spec["containers"][0]["image"], "istio/proxyv2",
        "strategic merge keeps the container"
    );
    assert_eq!(
        spec["containers"][0]["volumeMounts"][0]["mountPath"],
        "/var/local/kubectl-mesh"
    );
    let ns = s
        .live("v1", "namespaces", "", "istio-system")
        .await
        .unwrap();
    assert_eq!(
        ns["metadata"]["labels"],
        json!({ "kubernetes.io/metadata.name": "istio-system" }),
        "gateways need no injection label"
    );
    assert!(run(&s, &args).await.stdout.contains("nothing to change"));
    s.advance_rollouts().await;
    let r = run(&s, &["check", "-n", "istio-system"]).await;
    assert_eq!(r.code, 0, "a gateway needs no injection label: {r:?}");
    assert!(
        r.stdout.contains("[ok]   module mounted") && !r.stdout.contains("sidecar injection"),
        "{r:?}"
    );

    assert_eq!(run(&s, &["disable", "-n", "istio-system"]).await.code, 0);
    let gw = s
        .live(
            "apps/v1",
            "deployments",
            "istio-system",
            "istio-ingressgateway",
        )
        .await
        .unwrap();
    let spec = &gw["spec"]["template"]["spec"];
    // Emptied lists are dropped by the API server.
    assert_eq!(spec.get("volumes"), None, "{gw}");
    assert_eq!(spec["containers"][0].get("volumeMounts"), None, "{gw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasmplugin_api_applies_the_plugin_and_the_route_filter() {
    let s = Cluster::digimon(json!({})).await;
    let r = run(&s, &s.enable_args(&["--api", "wasmplugin"])).await;
    assert_eq!(r.code, 0, "{r:?}");
    let wp = s
        .live(
            "extensions.istio.io/v1alpha1",
            "wasmplugins",
            &s.ns,
            "kubectl-mesh",
        )
        .await
        .unwrap();
    assert_eq!(
        wp["spec"]["url"],
        "file:///var/local/kubectl-mesh/mesh_filter.wasm"
    );
    assert!(s
        .live(EF, "envoyfilters", &s.ns, "kubectl-mesh-route")
        .await
        .is_some());
    s.advance_rollouts().await;
    let r = run(&s, &["check"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("filter object WasmPlugin kubectl-mesh present"),
        "{r:?}"
    );
}

/// Two enables in one namespace (`--name api` for the server, `--name front` for web):
/// `disable --name api` removes that one's objects and leaves the other's, and the injection
/// label the other still needs; the last one removes the label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_removes_one_enables_objects_by_name() {
    let s = Cluster::digimon(json!({})).await;
    let web = s.example_yaml();
    assert_eq!(run(&s, &s.enable_args(&["--name", "api"])).await.code, 0);
    let front = enable_file_args(&web, "io.kompose.service=web", "sidecar-outbound");
    let mut args = front.clone();
    args.extend(["--name", "front"]);
    assert_eq!(run(&s, &args).await.code, 0);
    let r = run(&s, &["disable", "--name", "api"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    for name in ["api", "api-filter"] {
        assert!(
            s.live("v1", "configmaps", &s.ns, name).await.is_none()
                && s.live(EF, "envoyfilters", &s.ns, name).await.is_none(),
            "{name}: {r:?}"
        );
    }
    assert!(s.live(EF, "envoyfilters", &s.ns, "front").await.is_some());
    assert!(s
        .live("v1", "configmaps", &s.ns, "front-filter")
        .await
        .is_some());
    let web_ann = s.annotations(&s.ns, "web").await;
    assert!(
        web_ann["kubectl-mesh/module-sha256"].is_string(),
        "{web_ann}"
    );
    assert!(s
        .server_annotations()
        .await
        .get("kubectl-mesh/module-sha256")
        .is_none());
    let ns = s.live("v1", "namespaces", "", &s.ns).await.unwrap();
    assert_eq!(
        ns["metadata"]["labels"]["istio-injection"], "enabled",
        "front's sidecars still need it"
    );
    let r = run(&s, &["disable", "--name", "front"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let ns = s.live("v1", "namespaces", "", &s.ns).await.unwrap();
    assert!(
        ns["metadata"]["labels"].get("istio-injection").is_none(),
        "{ns}"
    );
}
