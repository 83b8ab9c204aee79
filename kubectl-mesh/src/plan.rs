//! Pure planning: desired objects plus what the cluster holds become the list of actions.
//!
//! No I/O here, so "a second run changes nothing" and "disable removes only what enable added"
//! are unit tests on plain k8s-openapi values.

use crate::names::{
    ADDED_ANNOTATIONS, CONFIG_HASH_ANNOTATION, FILTER_LABEL, INJECT_ANNOTATION,
    MODULE_SHA_ANNOTATION, PROXY_CONTAINER, USER_VOLUME_ANNOTATION, USER_VOLUME_MOUNT_ANNOTATION,
    VOLUME_NAME,
};
use crate::render::Rendered;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Namespace, PodSpec};
use k8s_openapi::apimachinery::pkg::version::Info;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Oldest Kubernetes the targeted Istio runs on (and the first with apps/v1-only Deployments,
/// where the digimon manifests broke): 1.16.
pub const MIN_KUBERNETES: (u32, u32) = (1, 16);
/// Namespace label that turns on sidecar injection.
pub const INJECTION_LABEL: &str = "istio-injection";
/// Revision label; when present it already selects injection and must be kept.
pub const REV_LABEL: &str = "istio.io/rev";
/// Namespace annotation listing the labels kubectl-mesh added (comma-separated), so `disable`
/// removes those and leaves the user's own.
pub const ADDED_LABELS_ANNOTATION: &str = "kubectl-mesh/added-labels";
/// The annotation `kubectl rollout restart` sets.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    /// The selector matched nothing.
    #[error("no Deployment in namespace {namespace} matches {selector}\n  fix: check --selector (labels of the Deployment, e.g. app=server) and -n")]
    NoDeployments {
        /// Namespace.
        namespace: String,
        /// Selector text.
        selector: String,
    },
    /// The user turned injection off explicitly.
    #[error("namespace {0} has {INJECTION_LABEL}=disabled\n  fix: remove that label (kubectl label ns {0} {INJECTION_LABEL}-) if sidecars may be injected")]
    InjectionDisabled(String),
    /// A Deployment turned injection off itself (OpenShift Service Mesh reads the annotation).
    #[error("Deployment {0} sets {INJECT_ANNOTATION}: \"false\" on its pods\n  fix: remove that annotation from its pod template if sidecars may be injected")]
    PodInjectionDisabled(String),
    /// A Deployment already uses the user-volume annotations for something else.
    #[error("Deployment {0} already sets {1} for its own volumes\n  fix: deliver the module with --module-url URL --module-sha256 HEX instead of a ConfigMap")]
    UserVolumeTaken(String, String),
}

/// One change to the cluster.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// JSON merge patch of the namespace's labels/annotations.
    PatchNamespace {
        /// Namespace.
        namespace: String,
        /// The merge patch.
        patch: Value,
        /// Human summary.
        summary: String,
    },
    /// Server-side apply of a rendered object.
    Apply {
        /// The object.
        object: Value,
        /// Whether it exists already (for the message).
        exists: bool,
    },
    /// Strategic merge patch of a Deployment's pod template.
    PatchDeployment {
        /// Namespace.
        namespace: String,
        /// Deployment name.
        name: String,
        /// The strategic merge patch.
        patch: Value,
        /// Human summary.
        summary: String,
    },
    /// Delete an object kubectl-mesh created.
    Delete {
        /// apiVersion.
        api_version: String,
        /// Kind.
        kind: String,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::PatchNamespace {
                namespace, summary, ..
            } => {
                write!(f, "namespace {namespace}: {summary}")
            }
            Action::Apply { object, exists } => {
                let kind = object["kind"].as_str().unwrap_or("?");
                let ns = object["metadata"]["namespace"].as_str().unwrap_or("");
                let name = object["metadata"]["name"].as_str().unwrap_or("?");
                let verb = if *exists { "update" } else { "create" };
                write!(f, "{kind} {ns}/{name}: {verb} (server-side apply)")
            }
            Action::PatchDeployment {
                namespace,
                name,
                summary,
                ..
            } => {
                write!(f, "Deployment {namespace}/{name}: {summary}")
            }
            Action::Delete {
                kind,
                namespace,
                name,
                ..
            } => {
                write!(f, "{kind} {namespace}/{name}: delete")
            }
        }
    }
}

/// `(major, minor)` of the server, from `/version` (`"1"`, `"16+"`, or `gitVersion` `v1.16.3`).
pub fn parse_version(info: &Info) -> Option<(u32, u32)> {
    let num = |s: &str| s.trim_end_matches('+').parse::<u32>().ok();
    if let (Some(a), Some(b)) = (num(&info.major), num(&info.minor)) {
        return Some((a, b));
    }
    let mut parts = info
        .git_version
        .trim_start_matches('v')
        .split(['.', '-', '+']);
    Some((num(parts.next()?)?, num(parts.next()?)?))
}

/// Everything `plan_enable` needs to know about the cluster.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The target namespace.
    pub namespace: Namespace,
    /// The live version of each rendered object, in the same order (`None`: absent).
    pub objects: Vec<Option<Value>>,
    /// Deployments matching the selector.
    pub deployments: Vec<Deployment>,
    /// Objects labelled as kubectl-mesh's in the namespace (all kinds it writes).
    pub managed: Vec<Value>,
    /// OpenShift Service Mesh 2.x: sidecars are injected by the pod annotation
    /// `sidecar.istio.io/inject`, not the namespace label ([`crate::ossm`]).
    pub ossm: bool,
}

fn object_key(o: &Value) -> (String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (s(&o["kind"]), s(&o["metadata"]["name"]))
}

fn delete_action(o: &Value, namespace: &str) -> Action {
    let (kind, name) = object_key(o);
    Action::Delete {
        api_version: o["apiVersion"].as_str().unwrap_or_default().to_owned(),
        kind,
        namespace: namespace.to_owned(),
        name,
    }
}

/// Strategic-merge patch of a pod spec removing the gateway's module volume and mount.
fn unmount_patch() -> Value {
    json!({
        "volumes": [{ "name": VOLUME_NAME, "$patch": "delete" }],
        "containers": [{ "name": PROXY_CONTAINER, "volumeMounts": [
            { "mountPath": crate::names::MODULE_DIR, "$patch": "delete" }
        ]}],
    })
}

/// True when every field of `want` is present with the same value in `have` (extra fields in
/// `have`, such as status or managedFields, do not count).
pub fn is_subset(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w
            .iter()
            .all(|(k, v)| h.get(k).is_some_and(|hv| is_subset(v, hv))),
        (Value::Array(w), Value::Array(h)) => {
            w.len() == h.len() && w.iter().zip(h).all(|(a, b)| is_subset(a, b))
        }
        _ => want == have,
    }
}

fn labels_of(ns: &Namespace) -> BTreeMap<String, String> {
    ns.metadata.labels.clone().unwrap_or_default()
}

fn deployment_name(d: &Deployment) -> String {
    d.metadata.name.clone().unwrap_or_default()
}

/// The pod template's annotations (what the injector and the proxy read).
pub fn template_annotations(d: &Deployment) -> BTreeMap<String, String> {
    d.spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default()
}

/// The pod template's labels (what a workload selector matches).
pub fn template_labels(d: &Deployment) -> BTreeMap<String, String> {
    d.spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

fn has_gateway_mount(d: &Deployment) -> bool {
    d.spec.template.spec.as_ref().is_some_and(mounts_module)
}

/// The pod's `istio-proxy`: a container, or (native sidecars: Istio 1.27+ on Kubernetes
/// 1.33+ injects it so) an init container that keeps running (`restartPolicy: Always`).
pub fn proxy_container(spec: &PodSpec) -> Option<&Container> {
    spec.containers
        .iter()
        .find(|c| c.name == PROXY_CONTAINER)
        .or_else(|| {
            spec.init_containers.iter().flatten().find(|c| {
                c.name == PROXY_CONTAINER && c.restart_policy.as_deref() == Some("Always")
            })
        })
}

/// True if a pod spec has the module volume and mounts it into `istio-proxy`.
pub fn mounts_module(spec: &PodSpec) -> bool {
    let volume = spec.volumes.iter().flatten().any(|v| v.name == VOLUME_NAME);
    let mount = proxy_container(spec).is_some_and(|c| {
        c.volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == VOLUME_NAME)
    });
    volume && mount
}

/// A Deployment's pod label selector as a list-call string (`k=v,k2=v2`).
pub fn pod_selector(d: &Deployment) -> String {
    d.spec
        .selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The actions that make the cluster match `desired`. `now` is the RFC 3339 time used for
/// restarts. An empty plan means there is nothing to change.
pub fn plan_enable(
    desired: &Rendered,
    namespace: &str,
    selector: &str,
    observed: &Observed,
    now: &str,
) -> Result<Vec<Action>, PlanError> {
    let mut actions = Vec::new();
    // Gateways are not injected; only sidecar contexts need the namespace label.
    let mut injection_added = false;
    if !desired.gateway && !observed.ossm {
        let labels = labels_of(&observed.namespace);
        match labels.get(INJECTION_LABEL).map(String::as_str) {
            Some("disabled") => return Err(PlanError::InjectionDisabled(namespace.to_owned())),
            Some("enabled") => {}
            _ if labels.contains_key(REV_LABEL) => {}
            _ => {
                let annotations = observed
                    .namespace
                    .metadata
                    .annotations
                    .clone()
                    .unwrap_or_default();
                let mut added: Vec<&str> = annotations
                    .get(ADDED_LABELS_ANNOTATION)
                    .map(|s| s.split(',').filter(|x| !x.is_empty()).collect())
                    .unwrap_or_default();
                if !added.contains(&INJECTION_LABEL) {
                    added.push(INJECTION_LABEL);
                }
                actions.push(Action::PatchNamespace {
                    namespace: namespace.to_owned(),
                    patch: json!({ "metadata": {
                        "labels": { INJECTION_LABEL: "enabled" },
                        "annotations": { ADDED_LABELS_ANNOTATION: added.join(",") },
                    }}),
                    summary: format!("label {INJECTION_LABEL}=enabled (sidecar injection)"),
                });
                injection_added = true;
            }
        }
    }
    for (i, object) in desired.objects.iter().enumerate() {
        let live = observed.objects.get(i).and_then(Option::as_ref);
        if !live.is_some_and(|l| is_subset(object, l)) {
            actions.push(Action::Apply {
                object: object.clone(),
                exists: live.is_some(),
            });
        }
    }
    // Objects of this instance that the desired set no longer has (a changed --api or module
    // delivery): filters go right after the new ones are in place, the ConfigMap at the end,
    // once no pod template refers to it any more.
    let wanted: Vec<(String, String)> = desired.objects.iter().map(object_key).collect();
    let (stale_modules, stale_filters): (Vec<&Value>, Vec<&Value>) = observed
        .managed
        .iter()
        .filter(|o| {
            let key = object_key(o);
            desired.owned_names.contains(&key.1) && !wanted.contains(&key)
        })
        .partition(|o| o["kind"] == "ConfigMap");
    actions.extend(stale_filters.iter().map(|o| delete_action(o, namespace)));
    if observed.deployments.is_empty() {
        return Err(PlanError::NoDeployments {
            namespace: namespace.to_owned(),
            selector: selector.to_owned(),
        });
    }
    for d in &observed.deployments {
        let name = deployment_name(d);
        let current = template_annotations(d);
        for key in [USER_VOLUME_ANNOTATION, USER_VOLUME_MOUNT_ANNOTATION] {
            if desired.pod_annotations.contains_key(key)
                && current.get(key).is_some_and(|v| !v.contains(VOLUME_NAME))
            {
                return Err(PlanError::UserVolumeTaken(name, key.to_owned()));
            }
        }
        let mut annotations: Map<String, Value> = desired
            .pod_annotations
            .iter()
            .filter(|(k, v)| current.get(*k) != Some(v))
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        // Mounts of a ConfigMap the desired setup no longer uses (switched to --module-url).
        for key in [USER_VOLUME_ANNOTATION, USER_VOLUME_MOUNT_ANNOTATION] {
            if !desired.pod_annotations.contains_key(key)
                && current.get(key).is_some_and(|v| v.contains(VOLUME_NAME))
            {
                annotations.insert(key.into(), Value::Null);
            }
        }
        // The module's sha without a mounted module; the config hash earlier versions put on
        // the template (which rolled the pods on every config edit).
        if !desired.pod_annotations.contains_key(MODULE_SHA_ANNOTATION)
            && current.contains_key(MODULE_SHA_ANNOTATION)
        {
            annotations.insert(MODULE_SHA_ANNOTATION.into(), Value::Null);
        }
        if current.contains_key(CONFIG_HASH_ANNOTATION) {
            annotations.insert(CONFIG_HASH_ANNOTATION.into(), Value::Null);
        }
        // OpenShift Service Mesh 2.x: the pod asks for its sidecar (recorded, so disable
        // removes only what was added).
        if observed.ossm && !desired.gateway {
            match current.get(INJECT_ANNOTATION).map(String::as_str) {
                Some("true") => {}
                Some("false") => return Err(PlanError::PodInjectionDisabled(name)),
                _ => {
                    annotations.insert(INJECT_ANNOTATION.into(), Value::String("true".into()));
                    let mut added: Vec<&str> = current
                        .get(ADDED_ANNOTATIONS)
                        .map(|s| s.split(',').filter(|x| !x.is_empty()).collect())
                        .unwrap_or_default();
                    if !added.contains(&INJECT_ANNOTATION) {
                        added.push(INJECT_ANNOTATION);
                    }
                    annotations.insert(ADDED_ANNOTATIONS.into(), Value::String(added.join(",")));
                }
            }
        }
        let current_labels = template_labels(d);
        let labels: Map<String, Value> = desired
            .pod_labels
            .iter()
            .filter(|(k, v)| current_labels.get(*k) != Some(v))
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let mount_missing = desired.gateway_pod_spec.is_some() && !has_gateway_mount(d);
        let mount_stale = desired.gateway_pod_spec.is_none() && has_gateway_mount(d);
        let template_changes = !annotations.is_empty() || !labels.is_empty();
        if !template_changes && !mount_missing && !mount_stale && !injection_added {
            continue;
        }
        let mut summary = Vec::new();
        if !annotations.is_empty() {
            summary.push("set pod template annotations");
        }
        if !labels.is_empty() {
            summary.push("label the pods for the filter");
        }
        if mount_missing {
            summary.push("mount the module into istio-proxy");
        }
        if mount_stale {
            summary.push("remove the module mount");
        }
        if !template_changes && !mount_missing && !mount_stale {
            // Nothing in the template changes, yet the pods predate injection: restart them.
            annotations.insert(RESTARTED_AT_ANNOTATION.into(), Value::String(now.into()));
            summary.push("restart so sidecars are injected");
        } else {
            summary.push("pods roll");
        }
        let mut metadata = json!({ "annotations": annotations });
        if !labels.is_empty() {
            metadata["labels"] = Value::Object(labels);
        }
        let mut template = json!({ "metadata": metadata });
        if let (true, Some(spec)) = (mount_missing, &desired.gateway_pod_spec) {
            template["spec"] = spec.clone();
        }
        if mount_stale {
            template["spec"] = unmount_patch();
        }
        actions.push(Action::PatchDeployment {
            namespace: namespace.to_owned(),
            name,
            patch: json!({ "spec": { "template": template } }),
            summary: summary.join(", "),
        });
    }
    actions.extend(stale_modules.iter().map(|o| delete_action(o, namespace)));
    Ok(actions)
}

/// The actions that undo one `enable` (instance `name`): delete that instance's objects, by
/// name (filters before the module), strip its annotations, label and mounts from the
/// Deployments it set up, and remove the namespace labels kubectl-mesh added once no other
/// instance is left in the namespace. Objects of other instances stay.
pub fn plan_disable(
    namespace: &Namespace,
    managed: &[Value],
    deployments: &[Deployment],
    name: &str,
) -> Vec<Action> {
    let ns = namespace.metadata.name.clone().unwrap_or_default();
    let mut actions = Vec::new();
    let owned = crate::names::owned_names(name);
    let (mine, others): (Vec<&Value>, Vec<&Value>) = managed.iter().partition(|o| {
        o["metadata"]["name"]
            .as_str()
            .is_some_and(|n| owned.iter().any(|m| m == n))
    });
    let mut objects = mine;
    // ConfigMaps last: a filter must never point at a deleted module.
    objects.sort_by_key(|o| o["kind"] == "ConfigMap");
    for o in objects {
        if let (Some(a), Some(k), Some(n)) = (
            o["apiVersion"].as_str(),
            o["kind"].as_str(),
            o["metadata"]["name"].as_str(),
        ) {
            actions.push(Action::Delete {
                api_version: a.into(),
                kind: k.into(),
                namespace: ns.clone(),
                name: n.into(),
            });
        }
    }
    for d in deployments {
        let labels = template_labels(d);
        let current = template_annotations(d);
        // Set up by this instance (its label), or by a version that predates the label.
        let ours = match labels.get(FILTER_LABEL) {
            Some(n) => n == name,
            None => current.contains_key(CONFIG_HASH_ANNOTATION),
        };
        if !ours {
            continue;
        }
        let mut remove = Map::new();
        for key in [CONFIG_HASH_ANNOTATION, MODULE_SHA_ANNOTATION] {
            if current.contains_key(key) {
                remove.insert(key.into(), Value::Null);
            }
        }
        // What enable added besides its own (OpenShift Service Mesh's inject annotation).
        if let Some(added) = current.get(ADDED_ANNOTATIONS) {
            for key in added.split(',').filter(|k| !k.is_empty()) {
                remove.insert(key.into(), Value::Null);
            }
            remove.insert(ADDED_ANNOTATIONS.into(), Value::Null);
        }
        for key in [USER_VOLUME_ANNOTATION, USER_VOLUME_MOUNT_ANNOTATION] {
            if current.get(key).is_some_and(|v| v.contains(VOLUME_NAME)) {
                remove.insert(key.into(), Value::Null);
            }
        }
        let mount = has_gateway_mount(d);
        let labelled = labels.contains_key(FILTER_LABEL);
        if remove.is_empty() && !mount && !labelled {
            continue;
        }
        let mut template = json!({ "metadata": { "annotations": remove } });
        if labelled {
            template["metadata"]["labels"] = json!({ FILTER_LABEL: null });
        }
        if mount {
            template["spec"] = unmount_patch();
        }
        actions.push(Action::PatchDeployment {
            namespace: ns.clone(),
            name: deployment_name(d),
            patch: json!({ "spec": { "template": template } }),
            summary: "remove kubectl-mesh annotations and mounts (pods roll)".into(),
        });
    }
    let annotations = namespace.metadata.annotations.clone().unwrap_or_default();
    // Another instance still needs sidecar injection here.
    let others_remain = others.iter().any(|o| {
        matches!(
            o["kind"].as_str(),
            Some("EnvoyFilter" | "WasmPlugin" | "TrafficExtension")
        )
    });
    if let (Some(added), false) = (annotations.get(ADDED_LABELS_ANNOTATION), others_remain) {
        let labels: Map<String, Value> = added
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|l| (l.to_owned(), Value::Null))
            .collect();
        let names: Vec<&str> = labels.keys().map(String::as_str).collect();
        let summary = format!("remove the labels kubectl-mesh added: {}", names.join(", "));
        actions.push(Action::PatchNamespace {
            namespace: ns,
            patch: json!({ "metadata": {
                "labels": labels,
                "annotations": { ADDED_LABELS_ANNOTATION: null },
            }}),
            summary,
        });
    }
    actions
}

#[cfg(test)]
mod tests;
