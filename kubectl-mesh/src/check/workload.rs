//! The selected workloads: sidecar, module mount, filter attachment, module currency, and each
//! running pod's proxy ([`super::proxy`]).
//!
//! A config edit restarts nothing (it travels in the filter object), so "the pods run the
//! applied config" is judged per proxy from its stats (`mesh_filter_config_revision` against the
//! applied object's hash). What the pods load at start, the module, is judged from the pods:
//! their `kubectl-mesh/module-sha256` against the module ConfigMap's.

use super::{check, pass, proxy, Check, CheckInput, Status};
use crate::names::{GATEWAY_NAME_LABEL, INJECT_ANNOTATION, MODULE_SHA_ANNOTATION};
use crate::plan::{mounts_module, proxy_container, template_annotations, template_labels};
use serde_json::Value;
use std::collections::BTreeMap;

/// The labels a filter object selects (`workloadSelector` or `selector`).
pub fn selector_of(filter: &Value) -> BTreeMap<String, String> {
    let s = &filter["spec"];
    let labels = if s["workloadSelector"]["labels"].is_object() {
        &s["workloadSelector"]["labels"]
    } else {
        &s["selector"]["matchLabels"]
    };
    serde_json::from_value(labels.clone()).unwrap_or_default()
}

/// Whether `filter` reaches pods with `labels`: its selector, or a `targetRefs` Gateway (istiod
/// applies that to the Gateway's pods, labelled with its name).
fn attached(filter: &Value, labels: &BTreeMap<String, String>) -> bool {
    let gateways: Vec<&str> = filter["spec"]["targetRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["kind"] == "Gateway")
        .filter_map(|r| r["name"].as_str())
        .collect();
    if !gateways.is_empty() {
        return labels
            .get(GATEWAY_NAME_LABEL)
            .is_some_and(|n| gateways.contains(&n.as_str()));
    }
    let selector = selector_of(filter);
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The workload checks; `filter` is the applied filter object, `applied` its config hash.
pub fn evaluate(input: &CheckInput, filter: Option<&Value>, applied: Option<&str>) -> Vec<Check> {
    let mut out = Vec::new();
    if input.workloads.is_empty() {
        out.push(check(
            "workloads.found",
            "Workloads",
            "selected Deployments found",
            Status::Fail,
            Some("no Deployment matches --selector in this namespace".into()),
        ));
    }
    // The module the ConfigMap holds (ConfigMap delivery only).
    let module_sha = input
        .managed
        .iter()
        .find(|o| o["kind"] == "ConfigMap")
        .map(|cm| {
            cm["metadata"]["annotations"][MODULE_SHA_ANNOTATION]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        });
    for w in &input.workloads {
        let name = w.deployment.metadata.name.clone().unwrap_or_default();
        let g = format!("Workload {name}");
        let g = g.as_str();
        let annotations = template_annotations(&w.deployment);
        let labels = template_labels(&w.deployment);
        let with_proxy = w
            .pods
            .iter()
            .filter(|p| {
                p.spec
                    .as_ref()
                    .is_some_and(|s| proxy_container(s).is_some())
            })
            .count();
        let id = "workload.sidecar";
        out.push(match (with_proxy, w.pods.len()) {
            (_, 0) => check(
                id,
                g,
                "sidecar present",
                Status::Warn,
                Some("no pods yet (scaled to zero or starting)".into()),
            ),
            (a, b) if a == b => pass(id, g, format!("sidecar present ({a}/{b} pods)")),
            (0, b) => check(
                id,
                g,
                format!("sidecar present (0/{b} pods)"),
                Status::Fail,
                Some(format!(
                    "pods started before injection was enabled: wait for the rollout (enable --wait) or kubectl rollout restart deployment/{name}"
                )),
            ),
            (a, b) => check(
                id,
                g,
                format!("sidecar present ({a}/{b} pods)"),
                Status::Warn,
                Some("a rollout is in progress; wait or run enable --wait".into()),
            ),
        });
        if let Some(want) = &module_sha {
            // Look at the running pod, not the annotations: this proves the injector (or the
            // gateway Deployment) really gave istio-proxy the volume.
            let mounted = w
                .pods
                .iter()
                .all(|p| p.spec.as_ref().is_some_and(mounts_module));
            let hint = if annotations.contains_key(MODULE_SHA_ANNOTATION) {
                format!("pods started before the mount was set up: wait for the rollout (enable --wait) or kubectl rollout restart deployment/{name}")
            } else {
                "run kubectl mesh enable (it sets up the mount and rolls the pods)".to_owned()
            };
            let id = "workload.module-mounted";
            out.push(if mounted && !w.pods.is_empty() {
                pass(id, g, "module mounted")
            } else {
                check(id, g, "module mounted", Status::Fail, Some(hint))
            });
            out.push(module_current(g, &name, want, &annotations, &w.pods));
        }
        if input.ossm.is_some() && !super::is_gateway(input.gateway, &input.managed) {
            let id = "workload.injection-requested";
            let description = format!("pods ask for the sidecar ({INJECT_ANNOTATION}: \"true\")");
            out.push(match annotations.get(INJECT_ANNOTATION).map(String::as_str) {
                Some("true") => pass(id, g, description),
                _ => check(
                    id,
                    g,
                    description,
                    Status::Fail,
                    Some("OpenShift Service Mesh injects only pods that ask: run kubectl mesh enable (it sets the annotation and rolls the pods)".into()),
                ),
            });
        }
        let id = "workload.filter-attached";
        let description = "filter attached (the filter object selects these pods)";
        out.push(match filter {
            Some(f) if attached(f, &labels) => pass(id, g, description),
            _ => check(
                id,
                g,
                description,
                Status::Fail,
                Some("the filter's selector does not match this workload's pod labels: run kubectl mesh enable with a --selector matching it (it labels the pods kubectl-mesh/filter=NAME)".into()),
            ),
        });
        for p in &w.proxies {
            out.extend(proxy::evaluate_pod(g, &name, p, applied));
        }
    }
    out
}

/// Whether the template and the pods carry the module the ConfigMap holds (the pods load it at
/// start, so a new module needs new pods; a config edit does not).
fn module_current(
    g: &str,
    name: &str,
    want: &str,
    annotations: &BTreeMap<String, String>,
    pods: &[k8s_openapi::api::core::v1::Pod],
) -> Check {
    let id = "workload.module-current";
    let short = want.get(..12).unwrap_or(want);
    let description = format!("pods run the ConfigMap's module ({short})");
    let pod_sha = |p: &k8s_openapi::api::core::v1::Pod| {
        p.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(MODULE_SHA_ANNOTATION))
            .cloned()
    };
    if annotations.get(MODULE_SHA_ANNOTATION).map(String::as_str) != Some(want) {
        return check(
            id,
            g,
            description,
            Status::Fail,
            Some("the workload's template is not set up for this module: run kubectl mesh enable (it rolls the pods once)".into()),
        );
    }
    if pods.is_empty() || pods.iter().any(|p| pod_sha(p).as_deref() != Some(want)) {
        return check(
            id,
            g,
            description,
            Status::Fail,
            Some(format!("pods started before the module changed: wait for the rollout (enable --wait) or kubectl rollout restart deployment/{name}")),
        );
    }
    pass(id, g, description)
}
