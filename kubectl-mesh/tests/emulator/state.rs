//! What the emulator holds: the served resources, the objects and the test's switches.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// `(group/version prefix, plural)`: `("api/v1", "configmaps")`, `("apis/apps/v1", "deployments")`.
pub(super) type Collection = (String, String);

/// One served resource.
#[derive(Clone)]
pub(super) struct Resource {
    pub(super) prefix: &'static str,
    pub(super) plural: &'static str,
    pub(super) kind: &'static str,
    pub(super) namespaced: bool,
}

const CORE: &[Resource] = &[
    Resource {
        prefix: "api/v1",
        plural: "namespaces",
        kind: "Namespace",
        namespaced: false,
    },
    Resource {
        prefix: "api/v1",
        plural: "configmaps",
        kind: "ConfigMap",
        namespaced: true,
    },
    Resource {
        prefix: "api/v1",
        plural: "pods",
        kind: "Pod",
        namespaced: true,
    },
    Resource {
        prefix: "apis/apps/v1",
        plural: "deployments",
        kind: "Deployment",
        namespaced: true,
    },
];
const NETWORKING: &[Resource] = &[
    Resource {
        prefix: "apis/networking.istio.io/v1alpha3",
        plural: "envoyfilters",
        kind: "EnvoyFilter",
        namespaced: true,
    },
    Resource {
        prefix: "apis/networking.istio.io/v1beta1",
        plural: "gateways",
        kind: "Gateway",
        namespaced: true,
    },
    Resource {
        prefix: "apis/networking.istio.io/v1beta1",
        plural: "virtualservices",
        kind: "VirtualService",
        namespaced: true,
    },
];
const EXTENSIONS: &[Resource] = &[
    Resource {
        prefix: "apis/extensions.istio.io/v1alpha1",
        plural: "wasmplugins",
        kind: "WasmPlugin",
        namespaced: true,
    },
    Resource {
        prefix: "apis/extensions.istio.io/v1alpha1",
        plural: "trafficextensions",
        kind: "TrafficExtension",
        namespaced: true,
    },
];

/// Everything the emulator holds; tests read and change it through [`Emulator::state`].
pub struct State {
    /// `/version` answer: (major, minor).
    pub version: (String, String),
    /// Serve networking.istio.io (EnvoyFilter, Gateway, VirtualService).
    pub istio: bool,
    /// Serve extensions.istio.io (WasmPlugin, TrafficExtension).
    pub extensions: bool,
    /// With `extensions`, serve TrafficExtension too (Istio 1.30+).
    pub traffic_extensions: bool,
    /// Objects by collection, then `namespace/name` (`/name` for cluster-scoped).
    pub objects: BTreeMap<Collection, BTreeMap<String, Value>>,
    /// Writes to these `(plural, name or "*")` answer 403.
    pub forbidden: Vec<(String, String)>,
    /// Writes to these `(plural, name or "*")` get the connection closed without an answer.
    pub drop_connection: Vec<(String, String)>,
    /// Reads (GETs, lists included) of these plurals get the connection closed.
    pub drop_reads: Vec<String>,
    /// Writes to these `(plural, name or "*")` are carried out, then the connection is closed
    /// before the answer (the client cannot know whether they happened).
    pub drop_response: Vec<(String, String)>,
    /// Every request: `METHOD path?query`.
    pub log: Vec<String>,
    /// Field managers seen on apply, by `plural/namespace/name`.
    pub managers: BTreeMap<String, String>,
    /// Where the pod proxy (`/api/v1/namespaces/NS/pods/POD:PORT/proxy/PATH`) forwards, by
    /// `(namespace, pod, port)`; a pod port not listed refuses the connection.
    pub pod_proxies: BTreeMap<(String, String, u16), std::net::SocketAddr>,
    pub(super) rv: u64,
}

impl State {
    pub(super) fn resources(&self) -> Vec<Resource> {
        let mut all = CORE.to_vec();
        if self.istio {
            all.extend_from_slice(NETWORKING);
        }
        if self.extensions {
            all.extend(
                EXTENSIONS
                    .iter()
                    .filter(|r| self.traffic_extensions || r.kind != "TrafficExtension")
                    .cloned(),
            );
        }
        all
    }

    pub(super) fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    /// Stores an object as if created through the API.
    pub fn seed(&mut self, obj: Value) {
        let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
        let Some(res) = self.resources().into_iter().find(|r| r.kind == kind) else {
            return;
        };
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut obj = obj;
        let rv = self.next_rv();
        finish_create(&mut obj, &rv);
        self.objects
            .entry((res.prefix.into(), res.plural.into()))
            .or_default()
            .insert(format!("{ns}/{name}"), obj);
    }

    /// The stored object, if any.
    pub fn get(&self, prefix: &str, plural: &str, ns: &str, name: &str) -> Option<Value> {
        self.objects
            .get(&(prefix.to_owned(), plural.to_owned()))
            .and_then(|m| m.get(&format!("{ns}/{name}")))
            .cloned()
    }

    /// Removes an object, as a `kubectl delete` by someone else would.
    pub fn remove(&mut self, prefix: &str, plural: &str, ns: &str, name: &str) -> Option<Value> {
        self.objects
            .get_mut(&(prefix.to_owned(), plural.to_owned()))
            .and_then(|m| m.remove(&format!("{ns}/{name}")))
    }

    /// Every stored object of a collection.
    pub fn all(&self, prefix: &str, plural: &str) -> Vec<Value> {
        self.objects
            .get(&(prefix.to_owned(), plural.to_owned()))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Write requests (anything but GET) logged so far.
    pub fn writes(&self) -> Vec<String> {
        self.log
            .iter()
            .filter(|l| !l.starts_with("GET "))
            .cloned()
            .collect()
    }

    /// Finishes every Deployment's rollout: status catches up with the spec and the pods are
    /// replaced by ones built from the template, with `istio-proxy` injected when the
    /// namespace asks for it (as Istio's webhook would).
    pub fn advance_rollouts(&mut self) {
        let deployments = self.all("apis/apps/v1", "deployments");
        for d in deployments {
            let ns = d["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let name = d["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
            let injected = self
                .get("api/v1", "namespaces", "", &ns)
                .map(|n| {
                    n["metadata"]["labels"]["istio-injection"] == "enabled"
                        || n["metadata"]["labels"]["istio.io/rev"].is_string()
                })
                .unwrap_or(false);
            let pods = self
                .objects
                .entry(("api/v1".into(), "pods".into()))
                .or_default();
            pods.retain(|_, p| p["metadata"]["labels"]["emulator/deployment"] != json!(name));
            let template = &d["spec"]["template"];
            for i in 0..replicas {
                let mut labels = template["metadata"]["labels"].clone();
                labels["emulator/deployment"] = json!(name);
                let mut spec = template["spec"].clone();
                let has_proxy = spec["containers"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["name"] == "istio-proxy"));
                if injected && !has_proxy {
                    // Istio's template: each key of the userVolume/userVolumeMount JSON
                    // objects becomes `name`, the value the rest of the item.
                    let user = |key: &str| -> Vec<Value> {
                        let text = template["metadata"]["annotations"][key]
                            .as_str()
                            .unwrap_or("{}");
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
                    if let Some(c) = spec["containers"].as_array_mut() {
                        c.push(json!({ "name": "istio-proxy", "image": "istio/proxyv2", "volumeMounts": mounts }));
                    }
                    if !volumes.is_empty() {
                        let mut all = spec["volumes"].as_array().cloned().unwrap_or_default();
                        all.extend(volumes);
                        spec["volumes"] = json!(all);
                    }
                }
                let pod_name = format!("{name}-{}-{i}", d["metadata"]["generation"]);
                pods.insert(
                    format!("{ns}/{pod_name}"),
                    json!({
                        "apiVersion": "v1", "kind": "Pod",
                        "metadata": {
                            "name": pod_name, "namespace": ns, "labels": labels,
                            "annotations": template["metadata"]["annotations"].clone(),
                            "resourceVersion": "1",
                        },
                        "spec": spec,
                        "status": { "phase": "Running" },
                    }),
                );
            }
            let deployments = self
                .objects
                .entry(("apis/apps/v1".into(), "deployments".into()))
                .or_default();
            if let Some(live) = deployments.get_mut(&format!("{ns}/{name}")) {
                live["status"] = json!({
                    "observedGeneration": live["metadata"]["generation"].clone(),
                    "replicas": replicas, "updatedReplicas": replicas,
                    "readyReplicas": replicas, "availableReplicas": replicas,
                });
            }
        }
    }
}

pub(super) fn finish_create(obj: &mut Value, rv: &str) {
    let meta = &mut obj["metadata"];
    meta["resourceVersion"] = json!(rv);
    meta["uid"] = json!(format!("uid-{rv}"));
    meta["generation"] = json!(1);
    meta["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
}
