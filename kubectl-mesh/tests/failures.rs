//! What goes wrong between the binary and a cluster: refused and lost writes, failed
//! preflights, objects too big to store, an unreachable API server; each reported with what
//! was applied, and a re-run finishes the job. RBAC refusals, missing namespaces and
//! workloads and the size limit run against the real API server (support/apiserver.rs); lost
//! connections and answers, an old Kubernetes and a cluster without Istio need the emulator,
//! which can fake them.

// A failed unwrap in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod emulator;
mod support;

use serde_json::{json, Value};

use support::apiserver::{limited_kubeconfig, request, Cluster};
use support::*;

const EF: &str = "networking.istio.io/v1alpha3";

/// Rights for user `limited` in the test's namespace: everything kubectl-mesh does, except
/// writing EnvoyFilters unless `envoy_filters_too`.
async fn grant_limited(s: &Cluster, envoy_filters_too: bool) {
    let filter_verbs = if envoy_filters_too {
        json!(["*"])
    } else {
        json!(["get", "list", "watch"])
    };
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": { "name": "mesh", "namespace": s.ns },
        "rules": [
            { "apiGroups": [""], "resources": ["namespaces"], "resourceNames": [s.ns], "verbs": ["get", "patch"] },
            { "apiGroups": [""], "resources": ["configmaps", "pods"], "verbs": ["*"] },
            { "apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["*"] },
            { "apiGroups": ["networking.istio.io"], "resources": ["envoyfilters"], "verbs": filter_verbs },
            { "apiGroups": ["networking.istio.io", "extensions.istio.io"], "resources": ["*"], "verbs": ["get", "list", "watch"] },
        ],
    });
    let path = format!(
        "/apis/rbac.authorization.k8s.io/v1/namespaces/{}/roles/mesh?fieldManager=test&force=true",
        s.ns
    );
    request(
        &s.client,
        "PATCH",
        &path,
        "application/apply-patch+yaml",
        &role,
    )
    .await
    .unwrap();
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": { "name": "mesh", "namespace": s.ns },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "mesh" },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "limited" }],
    });
    let path = format!(
        "/apis/rbac.authorization.k8s.io/v1/namespaces/{}/rolebindings/mesh?fieldManager=test&force=true",
        s.ns
    );
    request(
        &s.client,
        "PATCH",
        &path,
        "application/apply-patch+yaml",
        &binding,
    )
    .await
    .unwrap();
    // The authorizer sees RBAC changes through a cache: wait until it agrees.
    let limited = support::apiserver::client(&limited_kubeconfig()).await;
    let review = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": { "resourceAttributes": {
            "namespace": s.ns, "verb": "patch", "group": "networking.istio.io", "resource": "envoyfilters",
        }},
    });
    for _ in 0..100 {
        let answer = request(
            &limited,
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            "application/json",
            &review,
        )
        .await
        .unwrap();
        if answer["status"]["allowed"] == Value::Bool(envoy_filters_too) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("RBAC for user limited did not take effect");
}

/// The test's kubeconfig, as user `limited`.
fn as_limited(s: &Cluster) -> std::path::PathBuf {
    let text = std::fs::read_to_string(limited_kubeconfig())
        .unwrap()
        .replace("namespace: default", &format!("namespace: {}", s.ns));
    let path = s.dir.0.join("kubeconfig-limited");
    std::fs::write(&path, text).unwrap();
    path
}

/// Permissions are asked before anything is written: a user who may do everything but write
/// EnvoyFilters is told every permission missing (the API server's SelfSubjectAccessReview
/// answers), with the rules to grant, and nothing is written; once granted, enable runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_permissions_are_listed_before_any_write() {
    let s = Cluster::digimon(json!({})).await;
    grant_limited(&s, false).await;
    let limited = as_limited(&s);
    let args = s.enable_args(&[]);
    let before = s.fingerprint().await;
    let r = run_with(&limited, &args).await;
    assert_eq!(r.code, 2, "{r:?}");
    let ns = &s.ns;
    for line in [
        "preflight failed, nothing was changed: you may not do everything enable needs; missing (2):",
        &format!("  - create envoyfilters.networking.istio.io kubectl-mesh in namespace {ns}"),
        &format!("  - patch envoyfilters.networking.istio.io kubectl-mesh in namespace {ns}"),
        "Role: {apiGroups: [\"networking.istio.io\"], resources: [\"envoyfilters\"], verbs: [\"create\", \"patch\"]}",
    ] {
        assert!(r.stderr.contains(line), "missing {line:?}: {r:?}");
    }
    assert_eq!(s.fingerprint().await, before, "nothing written");
    // A server dry run asks the same.
    let r = run_with(&limited, &s.enable_args(&["--dry-run=server"])).await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("missing (2)"), "{r:?}");
    // A client dry run writes nothing and needs nothing to write.
    let r = run_with(&limited, &s.enable_args(&["--dry-run"])).await;
    assert_eq!(r.code, 0, "{r:?}");

    grant_limited(&s, true).await;
    let r = run_with(&limited, &args).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(s
        .live(EF, "envoyfilters", ns, "kubectl-mesh")
        .await
        .is_some());
    // check runs with a namespace's rights: what needs more is a warning, not an error.
    s.advance_rollouts().await;
    let r = run_with(&limited, &["check"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("[warn] DestinationRules readable in every namespace")
            && r.stdout
                .contains("you may not list kubectl-mesh's objects in every namespace"),
        "{r:?}"
    );
    // disable asks too: without delete on EnvoyFilters it lists that, and removes nothing.
    grant_limited(&s, false).await;
    let before = s.fingerprint().await;
    let r = run_with(&limited, &["disable"]).await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("you may not do everything disable needs")
            && r.stderr.contains(&format!(
                "delete envoyfilters.networking.istio.io kubectl-mesh in namespace {ns}"
            )),
        "{r:?}"
    );
    assert_eq!(s.fingerprint().await, before, "nothing removed");
}

/// What no permission check foresees: the API server refuses the third change (an admission
/// policy rejects EnvoyFilters here). The report says what was applied and what not, and a
/// re-run, once the policy is gone, applies only the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_mid_way_reports_what_was_applied_and_rerun_finishes() {
    let s = Cluster::digimon(json!({})).await;
    let policy = s.refuse_envoy_filters().await;
    let args = s.enable_args(&[]);
    let r = run(&s, &args).await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("no EnvoyFilters here (test policy)"),
        "the server's message: {r:?}"
    );
    let report = r.stderr.split("\napplied:\n").nth(1).unwrap();
    let applied = report.split("not applied:").next().unwrap();
    let not_applied = report.split("not applied:").nth(1).unwrap();
    let ns = &s.ns;
    assert!(
        applied.contains(&format!("namespace {ns}: label"))
            && applied.contains(&format!("ConfigMap {ns}/kubectl-mesh-filter")),
        "{r:?}"
    );
    assert!(
        not_applied.contains(&format!("EnvoyFilter {ns}/kubectl-mesh"))
            && not_applied.contains(&format!("Deployment {ns}/server")),
        "{r:?}"
    );
    assert!(!applied.contains("EnvoyFilter"), "{r:?}");
    assert!(s
        .live("v1", "configmaps", ns, "kubectl-mesh-filter")
        .await
        .is_some());
    assert!(s
        .live(EF, "envoyfilters", ns, "kubectl-mesh")
        .await
        .is_none());

    policy.remove(&s).await;
    let r = run(&s, &args).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("applying 2 changes"),
        "only the rest is applied: {r:?}"
    );
    assert!(s
        .live(EF, "envoyfilters", ns, "kubectl-mesh")
        .await
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
            .get("kubectl-mesh/module-sha256")
            .is_none(),
        "dropped before the server acted"
    );
    s.emu.state().drop_connection.clear();
    let r = run(&s, &enable_args(&[])).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("applying 1 changes"), "{r:?}");
}

/// `--wait` that cannot read the pods after every change was applied says so (not "nothing
/// was changed"), with the transport's cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_wait_after_applying_says_everything_was_applied() {
    let s = digimon(json!({})).await;
    s.emu.state().drop_reads.push("pods".into());
    let r = run(&s, &enable_args(&["--wait=rollout", "--timeout", "5"])).await;
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("every change was applied, but --wait could not follow the rollout"),
        "{r:?}"
    );
    assert!(!r.stderr.contains("nothing was changed"), "{r:?}");
    assert!(r.stderr.contains("caused by: "), "{r:?}");
    assert!(
        server_annotations(&s)
            .get("kubectl-mesh/module-sha256")
            .is_some(),
        "the changes were applied"
    );
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
async fn preflight_errors_about_the_cluster_are_clear_and_change_nothing() {
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
    assert!(s.emu.state().writes().is_empty());

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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_errors_about_the_namespace_and_workloads_change_nothing() {
    let s = Cluster::digimon(json!({})).await;
    let before = s.fingerprint().await;
    let r = run(&s, &s.enable_args(&["-n", "nope"])).await;
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("namespace nope does not exist"), "{r:?}");

    let args = enable_file_args(&s.mesh_yaml(), "app=nothing", "sidecar-inbound");
    let r = run(&s, &args).await;
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains(&format!(
            "no Deployment in namespace {} matches app=nothing",
            s.ns
        )),
        "{r:?}"
    );
    assert_eq!(s.fingerprint().await, before, "nothing written");
}

/// A config too big for one object is refused before anything is written, with the fix;
/// without the check the API server would refuse the EnvoyFilter after the ConfigMap and the
/// namespace label were applied (the real API server answers 500, etcd's "request is too
/// large"; tests/apiserver.rs checks the limit itself).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_too_big_for_the_api_server_is_refused_before_any_write() {
    let s = Cluster::digimon(json!({})).await;
    let before = s.fingerprint().await;
    let mut text = format!(
        "apiVersion: kubectl-mesh/v1alpha1\nkind: MeshConfig\nnamespace: {}\nhosts:\n",
        s.ns
    );
    for h in 0..2000 {
        text.push_str(&format!("- domains: [svc-{h}.example.com]\n  routes:\n"));
        for r in 0..10 {
            text.push_str(&format!(
                "  - match: {{prefix: /api/v{r}/}}\n    to: {{service: svc-{h}, port: 8080}}\n"
            ));
        }
    }
    let big = s.dir.0.join("big.yaml");
    std::fs::write(&big, text).unwrap();
    let r = run(&s, &enable_file_args(&big, SERVER, "sidecar-outbound")).await;
    assert_ne!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("big.yaml: the rendered EnvoyFilter")
            && r.stderr.contains("more than the API server stores")
            && r.stderr.contains("fix: make the config smaller"),
        "{r:?}"
    );
    assert_eq!(s.fingerprint().await, before, "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_api_is_named() {
    let s = Cluster::digimon(json!({})).await;
    // A port nobody listens on.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let text = std::fs::read_to_string(&s.kubeconfig)
        .unwrap()
        .lines()
        .map(|l| match l.trim_start().strip_prefix("server: ") {
            Some(_) => format!("    server: https://127.0.0.1:{port}"),
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&s.kubeconfig, text).unwrap();
    let r = run(&s, &s.enable_args(&[])).await;
    assert_eq!(r.code, 2, "could not run: {r:?}");
    assert!(
        r.stderr.contains(&format!(
            "cannot reach the Kubernetes API at https://127.0.0.1:{port}"
        )),
        "{r:?}"
    );
    // The transport's own cause reaches the user, not only kube's "client error (Connect)".
    assert!(
        r.stderr.contains("caused by: ") && r.stderr.contains("Connection refused"),
        "{r:?}"
    );
    let r = run(&s, &["check"]).await;
    assert_eq!(r.code, 2, "could not run: {r:?}");
    assert!(r.stdout.contains("[FAIL] API reachable"), "{r:?}");
}

/// The emulator itself enforces what the plugin relies on (so the tests above can fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_enforces_conflicts_missing_groups_and_apply() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams, PostParams};
    let s = digimon(json!({})).await;
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&s.kubeconfig).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "digimon");
    let cm: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": "c" }, "data": { "a": "1" } }))
            .unwrap();
    let created = api.create(&PostParams::default(), &cm).await.unwrap();
    let mut stale = created.clone();
    stale.data = Some([("a".to_owned(), "2".to_owned())].into());
    api.replace("c", &PostParams::default(), &stale)
        .await
        .unwrap();
    let err = api
        .replace("c", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err:?}"
    );

    let apply = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "d" }, "data": { "x": "1" } });
    let params = PatchParams::apply("tester");
    api.patch("d", &params, &Patch::Apply(&apply))
        .await
        .unwrap();
    let apply2 = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "d" }, "data": { "y": "2" } });
    let updated = api
        .patch("d", &params, &Patch::Apply(&apply2))
        .await
        .unwrap();
    assert_eq!(
        updated.data.unwrap().len(),
        1,
        "apply replaces the fields it is given"
    );
    let err = api
        .patch("d", &PatchParams::default(), &Patch::Apply(&apply2))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422),
        "apply needs a field manager: {err:?}"
    );

    // Built-in kinds' list items carry no apiVersion or kind, as the API server sends them.
    let listed = client
        .request::<serde_json::Value>(
            http::Request::get("/api/v1/namespaces/digimon/configmaps")
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(listed["items"][0].get("kind").is_none(), "{listed}");

    // Objects over the limits are refused as the API server refuses them (tests/apiserver.rs
    // shows the real answers): a ConfigMap past 1 MiB by its validation, anything past 1.5 MiB
    // by etcd.
    let huge = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "huge" }, "data": { "x": "x".repeat(1100 * 1024) } });
    let err = api
        .patch("huge", &params, &Patch::Apply(&huge))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422 && s.message.contains("Too long")),
        "{err:?}"
    );
    assert!(s
        .emu
        .state()
        .get("api/v1", "configmaps", "digimon", "huge")
        .is_none());
    let filters: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        "digimon",
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "networking.istio.io",
            "v1alpha3",
            "EnvoyFilter",
        )),
    );
    let big = json!({ "apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter", "metadata": { "name": "big" }, "spec": { "x": "x".repeat(1600 * 1024) } });
    let err = filters
        .patch("big", &params, &Patch::Apply(&big))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 500 && s.message.contains("request is too large")),
        "{err:?}"
    );

    s.emu.state().istio = false;
    let err = client
        .list_api_group_resources("networking.istio.io/v1alpha3")
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
}
