//! OpenShift Service Mesh 2.x against the real API server: Maistra's CRDs (minimal ones:
//! schemaless, which is all kubectl-mesh reads) installed by the test, a ServiceMeshControlPlane
//! and its member roll. `enable` refuses a namespace outside the member roll with what to run,
//! then asks for sidecars by pod annotation (the namespace label does nothing there) and writes
//! objects for the Istio OSSM ships; `check` and `disable` follow. While the control plane
//! exists every `enable` would see it, so the test holds the cluster lock alone.

// A failed unwrap in a test is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod emulator;
mod support;

use serde_json::{json, Value};
use support::apiserver::{request, Cluster};
use support::*;

const APPLY: &str = "application/apply-patch+yaml";

fn crd(kind: &str, plural: &str, version: &str) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": { "name": format!("{plural}.maistra.io") },
        "spec": {
            "group": "maistra.io", "scope": "Namespaced",
            "names": { "kind": kind, "plural": plural, "singular": kind.to_lowercase() },
            "versions": [{
                "name": version, "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object", "x-kubernetes-preserve-unknown-fields": true } },
            }],
        },
    })
}

/// Installs the three CRDs (idempotent) and waits until the server serves them.
async fn install_maistra(c: &Cluster) {
    for (kind, plural, version) in [
        ("ServiceMeshControlPlane", "servicemeshcontrolplanes", "v2"),
        ("ServiceMeshMemberRoll", "servicemeshmemberrolls", "v1"),
        ("ServiceMeshMember", "servicemeshmembers", "v1"),
    ] {
        let path = format!(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.maistra.io?fieldManager=test&force=true"
        );
        request(
            &c.client,
            "PATCH",
            &path,
            APPLY,
            &crd(kind, plural, version),
        )
        .await
        .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        for _ in 0..200 {
            let served = request(
                &c.client,
                "GET",
                &format!("/apis/maistra.io/{version}"),
                "application/json",
                &Value::Null,
            )
            .await
            .ok()
            .is_some_and(|l| {
                l["resources"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["name"] == plural))
            });
            if served {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

async fn apply(c: &Cluster, path: &str, obj: Value) {
    request(
        &c.client,
        "PATCH",
        &format!("{path}?fieldManager=test&force=true"),
        APPLY,
        &obj,
    )
    .await
    .unwrap_or_else(|e| panic!("{path}: {e:?}"));
}

/// Removes the control plane (and waits), so no later test sees OpenShift Service Mesh.
async fn remove_control_plane(c: &Cluster, cp_ns: &str) {
    let path = format!("/apis/maistra.io/v2/namespaces/{cp_ns}/servicemeshcontrolplanes/basic");
    let _ = request(&c.client, "DELETE", &path, "application/json", &Value::Null).await;
    assert!(c
        .live("maistra.io/v2", "servicemeshcontrolplanes", cp_ns, "basic")
        .await
        .is_none());
    let _ = request(
        &c.client,
        "DELETE",
        &format!("/api/v1/namespaces/{cp_ns}"),
        "application/json",
        &Value::Null,
    )
    .await;
    // And the CRDs: the next tests meet the cluster as they always do.
    for plural in [
        "servicemeshcontrolplanes",
        "servicemeshmemberrolls",
        "servicemeshmembers",
    ] {
        let path =
            format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.maistra.io");
        let _ = request(&c.client, "DELETE", &path, "application/json", &Value::Null).await;
    }
    for _ in 0..200 {
        let gone = request(
            &c.client,
            "GET",
            "/apis/maistra.io/v2",
            "application/json",
            &Value::Null,
        )
        .await
        .is_err_and(|e| e.code == 404);
        if gone {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("maistra.io is still served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openshift_service_mesh_members_and_pod_annotations() {
    let s = Cluster::digimon_alone(json!({})).await;
    install_maistra(&s).await;
    let cp_ns = format!("{}-cp", s.ns);
    request(
        &s.client,
        "POST",
        "/api/v1/namespaces",
        "application/json",
        &namespace(&cp_ns, json!({})),
    )
    .await
    .unwrap();
    apply(
        &s,
        &format!("/apis/maistra.io/v2/namespaces/{cp_ns}/servicemeshcontrolplanes/basic"),
        json!({ "apiVersion": "maistra.io/v2", "kind": "ServiceMeshControlPlane",
            "metadata": { "name": "basic", "namespace": cp_ns }, "spec": { "version": "v2.6" } }),
    )
    .await;
    let roll_path =
        format!("/apis/maistra.io/v1/namespaces/{cp_ns}/servicemeshmemberrolls/default");
    let roll = |members: Value| {
        json!({ "apiVersion": "maistra.io/v1", "kind": "ServiceMeshMemberRoll",
            "metadata": { "name": "default", "namespace": cp_ns },
            "spec": { "members": members }, "status": { "configuredMembers": members } })
    };
    apply(&s, &roll_path, roll(json!(["shop"]))).await;

    // Not a member: refused with what to run, nothing written.
    let before = s.fingerprint().await;
    let r = run(&s, &s.enable_args(&[])).await;
    assert_eq!(r.code, 2, "{r:?}");
    for line in [
        &format!(
            "namespace {} is not a member of OpenShift Service Mesh's control plane {cp_ns}/basic",
            s.ns
        ),
        "kind: ServiceMeshMember",
        &format!("oc -n {cp_ns} patch smmr default"),
    ] {
        assert!(r.stderr.contains(line), "missing {line:?}: {r:?}");
    }
    assert_eq!(s.fingerprint().await, before, "nothing written");

    apply(&s, &roll_path, roll(json!(["shop", s.ns]))).await;
    let r = run(&s, &s.enable_args(&[])).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("mesh: OpenShift Service Mesh v2.6")
            && r.stdout
                .contains("istio: objects for Istio 1.20 (what OpenShift Service Mesh v2.6 ships"),
        "{r:?}"
    );
    let ns = s.live("v1", "namespaces", "", &s.ns).await.unwrap();
    assert!(
        ns["metadata"]["labels"].get("istio-injection").is_none(),
        "the label does nothing there: {ns}"
    );
    let ann = s.server_annotations().await;
    assert_eq!(ann["sidecar.istio.io/inject"], "true", "{ann}");
    s.advance_rollouts().await;
    let r = run(&s, &["check"]).await;
    remove_control_plane_on_failure(&s, &cp_ns, &r).await;
    assert_eq!(r.code, 0, "{r:?}");
    for line in [
        &format!(
            "[ok]   namespace {} is a member of OpenShift Service Mesh {cp_ns}/basic",
            s.ns
        ),
        &"[ok]   pods ask for the sidecar (sidecar.istio.io/inject: \"true\")".to_owned(),
        &"[ok]   sidecar present (1/1 pods)".to_owned(),
    ] {
        assert!(r.stdout.contains(line), "missing {line:?}: {r:?}");
    }
    assert!(!r.stdout.contains("sidecar injection enabled"), "{r:?}");
    let r = run(&s, &["disable"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let ann = s.server_annotations().await;
    assert_eq!(
        ann,
        json!({ "user/own": "keep" }),
        "what enable added is gone"
    );
    remove_control_plane(&s, &cp_ns).await;
}

/// On a failed check the control plane must still go before the lock is released.
async fn remove_control_plane_on_failure(s: &Cluster, cp_ns: &str, r: &Run) {
    if r.code != 0 {
        remove_control_plane(s, cp_ns).await;
    }
}
