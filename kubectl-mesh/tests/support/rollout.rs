//! What the Deployment controller, Istio's injection webhook and the kubelet would do, played
//! through the real API server (it runs none of them): pods from each template, `istio-proxy`
//! injected where the namespace (or, OpenShift Service Mesh's way, the pod) asks.

#![allow(dead_code)]

use super::apiserver::{collection_path, request, ApiError, Cluster};
use serde_json::{json, Map, Value};

impl Cluster {
    /// Finishes every Deployment's rollout in this test's namespaces, doing what the
    /// Deployment controller, Istio's injection webhook and the kubelet would: the old pods go,
    /// pods built from the template come (with `istio-proxy` and Istio's user volumes where the
    /// namespace asks for injection), are marked Running, and the status catches up.
    pub async fn advance_rollouts(&self) {
        for ns in self.namespaces.clone() {
            let Some(namespace) = self.live("v1", "namespaces", "", &ns).await else {
                continue;
            };
            let labels = &namespace["metadata"]["labels"];
            let injected =
                labels["istio-injection"] == "enabled" || labels["istio.io/rev"].is_string();
            for d in self.list("apps/v1", "deployments", &ns).await {
                // OpenShift Service Mesh 2.x injects the pods that ask.
                let asks = d["spec"]["template"]["metadata"]["annotations"]
                    ["sidecar.istio.io/inject"]
                    == "true";
                self.roll_out(&ns, &d, injected || asks).await;
            }
        }
    }

    async fn roll_out(&self, ns: &str, d: &Value, injected: bool) {
        let name = d["metadata"]["name"].as_str().unwrap();
        let pods = collection_path("v1", "pods", ns);
        let old = format!("{pods}?labelSelector=mesh-test%2Fdeployment%3D{name}");
        request(
            &self.client,
            "DELETE",
            &old,
            "application/json",
            &Value::Null,
        )
        .await
        .unwrap_or_else(|e| panic!("deleting the pods of {ns}/{name}: {e:?}"));
        let template = &d["spec"]["template"];
        let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
        let generation = d["metadata"]["generation"].as_i64().unwrap_or(1);
        let mut spec = template["spec"].clone();
        let has_proxy = ["containers", "initContainers"].iter().any(|k| {
            spec[*k]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["name"] == "istio-proxy"))
        });
        if injected && !has_proxy {
            inject(
                &mut spec,
                &template["metadata"]["annotations"],
                self.native_sidecars,
            );
        }
        for i in 0..replicas {
            let mut labels = template["metadata"]["labels"].clone();
            labels["mesh-test/deployment"] = json!(name);
            let pod_name = format!("{name}-{generation}-{i}");
            let pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": pod_name, "namespace": ns, "labels": labels,
                    "annotations": template["metadata"]["annotations"].clone(),
                },
                "spec": spec,
            });
            request(&self.client, "POST", &pods, "application/json", &pod)
                .await
                .unwrap_or_else(|e| panic!("creating pod {ns}/{pod_name}: {e:?}\n{pod}"));
            let status = json!({ "status": { "phase": "Running" } });
            self.patch_status(&format!("{pods}/{pod_name}"), &status)
                .await
                .unwrap_or_else(|e| panic!("marking {ns}/{pod_name} running: {e:?}"));
        }
        let status = json!({ "status": {
            "observedGeneration": generation,
            "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas,
        }});
        let deployment = format!("{}/{name}", collection_path("apps/v1", "deployments", ns));
        self.patch_status(&deployment, &status)
            .await
            .unwrap_or_else(|e| panic!("rollout status of {ns}/{name}: {e:?}"));
    }

    /// A merge patch of `object`'s status subresource, as the controllers write it.
    async fn patch_status(&self, object: &str, status: &Value) -> Result<Value, ApiError> {
        let path = format!("{object}/status");
        request(
            &self.client,
            "PATCH",
            &path,
            "application/merge-patch+json",
            status,
        )
        .await
    }
}

/// Istio's sidecar template, as far as kubectl-mesh relies on it: `istio-proxy` added (as a
/// container, or as a native sidecar), and each key of the userVolume/userVolumeMount JSON
/// objects becomes `name`, the value the rest.
fn inject(spec: &mut Value, annotations: &Value, native: bool) {
    let user = |key: &str| -> Vec<Value> {
        let text = annotations[key].as_str().unwrap_or("{}");
        serde_json::from_str::<Map<String, Value>>(text)
            .unwrap_or_default()
            .into_iter()
            .map(|(name, mut v)| {
                v["name"] = json!(name);
                v
            })
            .collect()
    };
    let mounts = user("sidecar.istio.io/userVolumeMount");
    let volumes = user("sidecar.istio.io/userVolume");
    let mut proxy =
        json!({ "name": "istio-proxy", "image": "istio/proxyv2", "volumeMounts": mounts });
    if native {
        proxy["restartPolicy"] = json!("Always");
        let mut init = spec["initContainers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        init.push(proxy);
        spec["initContainers"] = json!(init);
    } else if let Some(c) = spec["containers"].as_array_mut() {
        c.push(proxy);
    }
    if !volumes.is_empty() {
        let mut all = spec["volumes"].as_array().cloned().unwrap_or_default();
        all.extend(volumes);
        spec["volumes"] = json!(all);
    }
}
