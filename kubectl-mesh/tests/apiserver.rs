//! The real API server (`make kube-apiserver`) does what the emulator only claimed: Istio's
//! CRDs are served and validate, server-side apply tracks field managers, dryRun=All writes
//! nothing, etcd's size limit holds and RBAC refuses a user with no rights. Each test works in
//! a namespace of its own (support/apiserver.rs); without a server they fail, saying so.

// A failed unwrap in a test is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod emulator;
mod support;

use serde_json::{json, Value};
use support::apiserver::{admin_kubeconfig, client, limited_kubeconfig, request, Cluster};

const JSON: &str = "application/json";
const APPLY: &str = "application/apply-patch+yaml";

fn configmap(ns: &str, name: &str, data: Value) -> Value {
    json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name, "namespace": ns }, "data": data })
}

fn envoy_filter(ns: &str, apply_to: &str) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
        "metadata": { "name": "f", "namespace": ns },
        "spec": {
            "workloadSelector": { "labels": { "app": "server" } },
            "configPatches": [{
                "applyTo": apply_to,
                "match": { "context": "SIDECAR_INBOUND" },
                "patch": { "operation": "INSERT_BEFORE", "value": { "name": "x" } },
            }],
        },
    })
}

#[test]
fn kubectl_sees_the_crds_established() {
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(admin_kubeconfig())
        .args([
            "get",
            "crd",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Established\")].status}{\"\\n\"}{end}",
        ])
        .output()
        .expect("kubectl is on the image");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for crd in [
        "envoyfilters.networking.istio.io",
        "gateways.networking.istio.io",
        "virtualservices.networking.istio.io",
        "wasmplugins.extensions.istio.io",
        "trafficextensions.extensions.istio.io",
        "gateways.gateway.networking.k8s.io",
        "httproutes.gateway.networking.k8s.io",
        "gatewayclasses.gateway.networking.k8s.io",
    ] {
        assert!(
            text.lines().any(|l| l == format!("{crd}=True")),
            "{crd} not established:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crd_schema_rejects_an_invalid_envoy_filter() {
    let c = Cluster::digimon(json!({})).await;
    let path = format!(
        "/apis/networking.istio.io/v1alpha3/namespaces/{}/envoyfilters",
        c.ns
    );
    let err = request(
        &c.client,
        "POST",
        &path,
        JSON,
        &envoy_filter(&c.ns, "NOT_A_THING"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, 422, "{err:?}");
    assert!(
        err.message.contains("spec.configPatches[0].applyTo")
            && err.message.contains("Unsupported value: \"NOT_A_THING\""),
        "{err:?}"
    );
    // A field the schema does not know: refused under strict validation (kubectl's default)
    // as a malformed request, dropped without it.
    let mut unknown = envoy_filter(&c.ns, "HTTP_FILTER");
    unknown["spec"]["notAField"] = json!(1);
    let err = request(
        &c.client,
        "POST",
        &format!("{path}?fieldValidation=Strict"),
        JSON,
        &unknown,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, 400, "{err:?}");
    assert!(
        err.message
            .contains("strict decoding error: unknown field \"spec.notAField\""),
        "{err:?}"
    );
    let created = request(&c.client, "POST", &path, JSON, &unknown)
        .await
        .unwrap();
    assert!(
        created["spec"].get("notAField").is_none(),
        "pruned: {created}"
    );
    assert_eq!(
        created["spec"]["configPatches"][0]["applyTo"],
        "HTTP_FILTER"
    );
}

/// What `kubectl mesh render` makes is accepted by the real CRD schemas, strictly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_objects_pass_the_real_schemas() {
    let c = Cluster::digimon(json!({})).await;
    let (example, server) = (c.example_yaml(), c.mesh_yaml());
    let sidecar = ["-l", support::SERVER, "--envoy-context", "sidecar-inbound"];
    let gateway_api = [
        "--envoy-context",
        "gateway",
        "-l",
        "gateway.networking.k8s.io/gateway-name=public",
    ];
    let oci = [
        "--envoy-context",
        "gateway",
        "-l",
        "gateway.networking.k8s.io/gateway-name=public",
        "--api",
        "wasmplugin",
        "--module-url",
        "oci://registry.example.com/mesh/filter:v1",
    ];
    for (file, args) in [
        (&example, &gateway_api[..]),
        (&example, &oci[..]),
        (&example, &["--envoy-context", "gateway"][..]),
        (
            &example,
            &["--api", "wasmplugin", "--envoy-context", "gateway"],
        ),
        (&server, &sidecar),
        (
            &server,
            &[
                "--api",
                "wasmplugin",
                "-l",
                support::SERVER,
                "--envoy-context",
                "sidecar-inbound",
            ],
        ),
    ] {
        let out = std::process::Command::new(support::BIN)
            .args(["render", "-o", "json", "-n", &c.ns, "-f"])
            .arg(file)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: Value = serde_json::from_slice(&out.stdout).unwrap();
        let items = list["items"].as_array().unwrap();
        assert!(items.len() >= 2, "{list}");
        // The Deployment is a strategic merge patch, not an object of its own.
        for obj in items.iter().filter(|o| o["kind"] != "Deployment") {
            let kind = obj["kind"].as_str().unwrap();
            let name = obj["metadata"]["name"].as_str().unwrap();
            let path = format!(
                "{}/{name}?fieldManager=kubectl-mesh&fieldValidation=Strict&dryRun=All&force=true",
                support::apiserver::collection_path(
                    obj["apiVersion"].as_str().unwrap(),
                    &kubectl_mesh::cluster::plural(kind),
                    &c.ns
                )
            );
            request(&c.client, "PATCH", &path, APPLY, obj)
                .await
                .unwrap_or_else(|e| panic!("{kind} {name} refused: {e:?}\n{obj}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_merges_managers_and_reports_conflicts() {
    let c = Cluster::digimon(json!({})).await;
    let path = |manager: &str, force: bool| {
        format!(
            "/api/v1/namespaces/{}/configmaps/c?fieldManager={manager}{}",
            c.ns,
            if force { "&force=true" } else { "" }
        )
    };
    let ours = configmap(&c.ns, "c", json!({ "a": "1" }));
    request(
        &c.client,
        "PATCH",
        &path("kubectl-mesh", false),
        APPLY,
        &ours,
    )
    .await
    .unwrap();
    // Another manager's fields merge in beside ours.
    let theirs = configmap(&c.ns, "c", json!({ "b": "2" }));
    let merged = request(&c.client, "PATCH", &path("someone", false), APPLY, &theirs)
        .await
        .unwrap();
    assert_eq!(merged["data"], json!({ "a": "1", "b": "2" }));
    // Changing a field kubectl-mesh owns is a conflict that names it, unless forced.
    let grab = configmap(&c.ns, "c", json!({ "a": "9", "b": "2" }));
    let err = request(&c.client, "PATCH", &path("someone", false), APPLY, &grab)
        .await
        .unwrap_err();
    assert_eq!(err.code, 409, "{err:?}");
    assert!(
        err.message.contains("conflict with \"kubectl-mesh\"") && err.message.contains(".data.a"),
        "{err:?}"
    );
    let forced = request(&c.client, "PATCH", &path("someone", true), APPLY, &grab)
        .await
        .unwrap();
    assert_eq!(forced["data"]["a"], "9");
    // kubectl-mesh no longer owns data.a: applying without it leaves it alone.
    let again = configmap(&c.ns, "c", json!({}));
    let kept = request(
        &c.client,
        "PATCH",
        &path("kubectl-mesh", false),
        APPLY,
        &again,
    )
    .await
    .unwrap();
    assert_eq!(kept["data"], json!({ "a": "9", "b": "2" }));
    // Apply needs a field manager.
    let err = request(
        &c.client,
        "PATCH",
        &format!("/api/v1/namespaces/{}/configmaps/c", c.ns),
        APPLY,
        &ours,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, 422, "{err:?}");
    assert!(
        err.message.contains("fieldManager: Required value"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_all_writes_nothing() {
    let c = Cluster::digimon(json!({})).await;
    let collection = format!("/api/v1/namespaces/{}/configmaps", c.ns);
    let answer = request(
        &c.client,
        "POST",
        &format!("{collection}?dryRun=All"),
        JSON,
        &configmap(&c.ns, "d", json!({ "x": "1" })),
    )
    .await
    .unwrap();
    assert_eq!(
        answer["data"]["x"], "1",
        "the answer is what would be stored"
    );
    assert!(c.live("v1", "configmaps", &c.ns, "d").await.is_none());

    let before = c.fingerprint().await;
    let path = format!("/apis/apps/v1/namespaces/{}/deployments/server", c.ns);
    let patch = json!({ "spec": { "template": { "metadata": { "annotations": { "k": "v" } } } } });
    let answer = request(
        &c.client,
        "PATCH",
        &format!("{path}?dryRun=All"),
        "application/strategic-merge-patch+json",
        &patch,
    )
    .await
    .unwrap();
    assert_eq!(
        answer["spec"]["template"]["metadata"]["annotations"]["k"],
        "v"
    );
    assert_eq!(c.fingerprint().await, before, "dry run changed something");
    // A dry run is still validated.
    let err = request(
        &c.client,
        "POST",
        &format!(
            "/apis/networking.istio.io/v1alpha3/namespaces/{}/envoyfilters?dryRun=All",
            c.ns
        ),
        JSON,
        &envoy_filter(&c.ns, "NOT_A_THING"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, 422, "{err:?}");
}

/// An EnvoyFilter whose compact JSON is `size` bytes.
fn envoy_filter_of_size(ns: &str, name: &str, size: usize) -> Value {
    let mut ef = envoy_filter(ns, "HTTP_FILTER");
    ef["metadata"]["name"] = json!(name);
    let base = serde_json::to_vec(&ef).unwrap().len() + r#","blob":"""#.len();
    ef["spec"]["configPatches"][0]["patch"]["value"]["blob"] = json!("x".repeat(size - base));
    assert_eq!(serde_json::to_vec(&ef).unwrap().len(), size);
    ef
}

/// The limits render checks against (render.rs: OBJECT_LIMIT less 16 KiB for what the server
/// adds, CONFIGMAP_LIMIT) are the real ones: the largest EnvoyFilter render lets through is
/// stored, a bigger one is refused by etcd (a 500, not the 413 the emulator used to answer),
/// and a ConfigMap is refused past 1 MiB by its own validation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_size_limits_render_checks_are_the_servers() {
    use kubectl_mesh::render::{CONFIGMAP_LIMIT, OBJECT_LIMIT};
    let c = Cluster::digimon(json!({})).await;
    let path = |name: &str| {
        format!(
            "/apis/networking.istio.io/v1alpha3/namespaces/{}/envoyfilters/{name}?fieldManager=kubectl-mesh",
            c.ns
        )
    };
    let largest = envoy_filter_of_size(&c.ns, "largest", OBJECT_LIMIT - 16 * 1024);
    request(&c.client, "PATCH", &path("largest"), APPLY, &largest)
        .await
        .unwrap();
    let over = envoy_filter_of_size(&c.ns, "over", OBJECT_LIMIT + 16 * 1024);
    let err = request(&c.client, "PATCH", &path("over"), APPLY, &over)
        .await
        .unwrap_err();
    assert_eq!(err.code, 500, "{err:?}");
    assert!(
        err.message.contains("etcdserver: request is too large"),
        "{err:?}"
    );
    assert!(c
        .live(
            "networking.istio.io/v1alpha3",
            "envoyfilters",
            &c.ns,
            "over"
        )
        .await
        .is_none());
    // Past the API server's own body limit (3 MiB) the answer is 413.
    let huge = envoy_filter_of_size(&c.ns, "huge", 3 * 1024 * 1024 + 1024);
    let err = request(&c.client, "PATCH", &path("huge"), APPLY, &huge)
        .await
        .unwrap_err();
    assert_eq!(err.code, 413, "{err:?}");

    let cm = |name: &str, size: usize| configmap(&c.ns, name, json!({ "x": "x".repeat(size - 1) }));
    let collection = format!("/api/v1/namespaces/{}/configmaps", c.ns);
    request(
        &c.client,
        "POST",
        &collection,
        JSON,
        &cm("fits", CONFIGMAP_LIMIT),
    )
    .await
    .unwrap();
    let err = request(
        &c.client,
        "POST",
        &collection,
        JSON,
        &cm("over", CONFIGMAP_LIMIT + 2),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, 422, "{err:?}");
    assert!(
        err.message.contains("may not be more than 1048576 bytes"),
        "{err:?}"
    );
    assert!(c.live("v1", "configmaps", &c.ns, "over").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_rights_is_forbidden_but_may_discover() {
    let c = Cluster::digimon(json!({})).await;
    let limited = client(&limited_kubeconfig()).await;
    let collection = format!("/api/v1/namespaces/{}/configmaps", c.ns);
    let err = request(&limited, "GET", &collection, JSON, &Value::Null)
        .await
        .unwrap_err();
    assert_eq!(err.code, 403, "{err:?}");
    assert!(
        err.message
            .contains("User \"limited\" cannot list resource \"configmaps\""),
        "{err:?}"
    );
    let err = request(
        &limited,
        "POST",
        &collection,
        JSON,
        &configmap(&c.ns, "e", json!({})),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, 403, "{err:?}");
    assert!(c.live("v1", "configmaps", &c.ns, "e").await.is_none());
    // Discovery is every authenticated user's (RBAC's system:discovery).
    let groups = request(
        &limited,
        "GET",
        "/apis/networking.istio.io/v1alpha3",
        JSON,
        &Value::Null,
    )
    .await
    .unwrap();
    assert!(groups["resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "envoyfilters"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_writes_conflict_and_an_unknown_group_is_404() {
    let c = Cluster::digimon(json!({})).await;
    let collection = format!("/api/v1/namespaces/{}/configmaps", c.ns);
    let created = request(
        &c.client,
        "POST",
        &collection,
        JSON,
        &configmap(&c.ns, "s", json!({ "a": "1" })),
    )
    .await
    .unwrap();
    let mut stale = created.clone();
    stale["data"]["a"] = json!("2");
    request(&c.client, "PUT", &format!("{collection}/s"), JSON, &stale)
        .await
        .unwrap();
    let err = request(&c.client, "PUT", &format!("{collection}/s"), JSON, &stale)
        .await
        .unwrap_err();
    assert_eq!(err.code, 409, "{err:?}");
    let err = request(
        &c.client,
        "GET",
        "/apis/nothing.example.com/v1",
        JSON,
        &Value::Null,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code, 404, "{err:?}");
}
