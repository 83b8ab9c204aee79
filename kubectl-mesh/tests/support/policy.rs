//! An admission policy the real API server enforces (CEL, in-process): a refusal no
//! permission check foresees and no client can see, for the tests of mid-way failures and
//! server dry runs.

#![allow(dead_code)]

use super::apiserver::{request, Cluster};
use serde_json::{json, Value};

/// A ValidatingAdmissionPolicy refusing EnvoyFilters in one namespace (see
/// [`Cluster::refuse_envoy_filters`]).
pub struct Policy {
    name: String,
}

impl Policy {
    /// Deletes the policy and its binding; returns once the server no longer enforces it.
    pub async fn remove(self, c: &Cluster) {
        for plural in [
            "validatingadmissionpolicybindings",
            "validatingadmissionpolicies",
        ] {
            let path = format!(
                "/apis/admissionregistration.k8s.io/v1/{plural}/{}",
                self.name
            );
            let _ = request(&c.client, "DELETE", &path, "application/json", &Value::Null).await;
        }
        for _ in 0..200 {
            if !c.envoy_filters_refused().await {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the admission policy {} is still enforced", self.name);
    }
}

impl Cluster {
    /// An admission policy (CEL, in the API server) refusing every EnvoyFilter written to this
    /// test's namespace, with the message `no EnvoyFilters here (test policy)`: a refusal no
    /// permission check foresees and no client can see. Returns once the server enforces it.
    pub async fn refuse_envoy_filters(&self) -> Policy {
        let name = format!("no-envoyfilters-{}", self.ns);
        let policy = json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": { "name": name },
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": { "resourceRules": [{
                    "apiGroups": ["networking.istio.io"], "apiVersions": ["*"],
                    "operations": ["CREATE", "UPDATE"], "resources": ["envoyfilters"],
                }]},
                "validations": [{ "expression": "false", "message": "no EnvoyFilters here (test policy)" }],
            },
        });
        let binding = json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": { "name": name },
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": { "namespaceSelector": { "matchLabels": {
                    "kubernetes.io/metadata.name": self.ns,
                }}},
            },
        });
        for (plural, obj) in [
            ("validatingadmissionpolicies", policy),
            ("validatingadmissionpolicybindings", binding),
        ] {
            let path = format!(
                "/apis/admissionregistration.k8s.io/v1/{plural}/{name}?fieldManager=test&force=true"
            );
            request(
                &self.client,
                "PATCH",
                &path,
                "application/apply-patch+yaml",
                &obj,
            )
            .await
            .unwrap_or_else(|e| panic!("{plural}: {e:?}"));
        }
        // The server loads policies asynchronously: until a dry-run write is refused.
        for _ in 0..200 {
            if self.envoy_filters_refused().await {
                return Policy { name };
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the admission policy {name} did not take effect");
    }

    /// Whether the test policy refuses a dry-run EnvoyFilter here.
    async fn envoy_filters_refused(&self) -> bool {
        let probe = json!({
            "apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
            "metadata": { "name": "probe", "namespace": self.ns },
            "spec": { "configPatches": [] },
        });
        let path = format!(
            "/apis/networking.istio.io/v1alpha3/namespaces/{}/envoyfilters?dryRun=All",
            self.ns
        );
        matches!(
            request(&self.client, "POST", &path, "application/json", &probe).await,
            Err(e) if e.message.contains("test policy")
        )
    }
}
