//! `kubectl mesh check`: a grouped pass/warn/fail checklist; `evaluate` is pure, `gather` reads.

mod gather;
pub mod proxy;
pub mod routing;
pub mod upstreams;

pub use gather::{gather, gather_proxy_stats};

use crate::names::CONFIG_HASH_ANNOTATION;
use crate::plan::{INJECTION_LABEL, MIN_KUBERNETES, REV_LABEL};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use proxy::PodStats;
use routing::GatewayRouting;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Pass,
    /// Works, but something deserves attention.
    Warn,
    /// Broken; `check` exits non-zero.
    Fail,
}

/// One line of the checklist.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Heading it is printed under.
    pub group: String,
    /// What was checked.
    pub name: String,
    /// Result.
    pub status: Status,
    /// What to do about a warning or failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// A Deployment with its pods.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The Deployment.
    pub deployment: Deployment,
    /// Pods its selector matches.
    pub pods: Vec<Pod>,
    /// Stats of the running pods' proxies (filled by [`gather_proxy_stats`]).
    pub proxies: Vec<PodStats>,
}

/// What `evaluate` looks at, read from the cluster by `gather`.
#[derive(Debug, Clone)]
pub struct CheckInput {
    /// Server URL.
    pub url: String,
    /// `Err(message)` when the API could not be reached; else the parsed version, if any.
    pub version: Result<Option<(u32, u32)>, String>,
    /// Versions served for networking.istio.io.
    pub networking_versions: Vec<String>,
    /// Versions served for extensions.istio.io.
    pub extensions_versions: Vec<String>,
    /// Whether the EnvoyFilter resource is served.
    pub envoyfilter_served: bool,
    /// Namespace checked.
    pub namespace_name: String,
    /// The namespace, if it exists.
    pub namespace: Option<Namespace>,
    /// Objects labelled as ours in the namespace.
    pub managed: Vec<Value>,
    /// Hash of the config given with `-f`, to compare against the applied one.
    pub desired_hash: Option<String>,
    /// Selected workloads.
    pub workloads: Vec<Workload>,
    /// Whether this is a gateway setup (no injection label needed).
    pub gateway: bool,
    /// Gateway context: the anchor VirtualService, its Gateway and every VirtualService.
    pub routing: Option<GatewayRouting>,
    /// The services the applied config routes to.
    pub upstreams: Vec<upstreams::Upstream>,
}

impl Default for CheckInput {
    fn default() -> Self {
        CheckInput {
            url: String::new(),
            version: Ok(None),
            networking_versions: Vec::new(),
            extensions_versions: Vec::new(),
            envoyfilter_served: false,
            namespace_name: String::new(),
            namespace: None,
            managed: Vec::new(),
            desired_hash: None,
            workloads: Vec::new(),
            gateway: false,
            routing: None,
            upstreams: Vec::new(),
        }
    }
}

fn check(group: &str, name: impl Into<String>, status: Status, hint: Option<String>) -> Check {
    Check {
        group: group.into(),
        name: name.into(),
        status,
        hint,
    }
}

fn pass(group: &str, name: impl Into<String>) -> Check {
    check(group, name, Status::Pass, None)
}

/// Turns observations into the checklist.
pub fn evaluate(input: &CheckInput) -> Vec<Check> {
    let mut out = Vec::new();
    let g = "Kubernetes API";
    match &input.version {
        Err(message) => {
            out.push(check(
                g,
                format!("API reachable at {}", input.url),
                Status::Fail,
                Some(format!("{message}; check --kubeconfig and --context")),
            ));
            return out;
        }
        Ok(version) => {
            out.push(pass(g, format!("API reachable at {}", input.url)));
            let (min_major, min_minor) = MIN_KUBERNETES;
            out.push(match version {
                Some(v) if *v >= MIN_KUBERNETES => pass(
                    g,
                    format!("server version {}.{} >= {min_major}.{min_minor}", v.0, v.1),
                ),
                Some(v) => check(
                    g,
                    format!("server version {}.{} >= {min_major}.{min_minor}", v.0, v.1),
                    Status::Fail,
                    Some("upgrade the cluster: Istio needs Kubernetes 1.16 or newer".into()),
                ),
                None => check(
                    g,
                    "server version readable",
                    Status::Warn,
                    Some("the /version answer could not be parsed".into()),
                ),
            });
        }
    }
    let g = "Istio";
    out.push(if input.envoyfilter_served {
        pass(
            g,
            format!(
                "EnvoyFilter installed (networking.istio.io {})",
                input.networking_versions.join(", ")
            ),
        )
    } else {
        check(
            g,
            "EnvoyFilter installed (networking.istio.io/v1alpha3)",
            Status::Fail,
            Some(
                "Istio is not installed: install it (istioctl install) and run check again".into(),
            ),
        )
    });
    out.push(if input.extensions_versions.is_empty() {
        check(
            g,
            "extensions.istio.io served",
            Status::Warn,
            Some("only --api envoyfilter works on this cluster".into()),
        )
    } else {
        pass(
            g,
            format!(
                "extensions.istio.io served ({})",
                input.extensions_versions.join(", ")
            ),
        )
    });

    let g = "Namespace";
    let ns = &input.namespace_name;
    let Some(namespace) = &input.namespace else {
        out.push(check(
            g,
            format!("namespace {ns} exists"),
            Status::Fail,
            Some(format!(
                "create it (kubectl create namespace {ns}) or pass -n"
            )),
        ));
        return out;
    };
    out.push(pass(g, format!("namespace {ns} exists")));
    // A gateway is not injected, so it needs no label; the applied filter says which it is.
    if !is_gateway(input.gateway, &input.managed) {
        let labels = namespace.metadata.labels.clone().unwrap_or_default();
        let injected = labels.get(INJECTION_LABEL).is_some_and(|v| v == "enabled")
            || labels.contains_key(REV_LABEL);
        out.push(if injected {
            pass(g, "sidecar injection enabled")
        } else {
            check(
                g,
                "sidecar injection enabled",
                Status::Fail,
                Some(
                    "run kubectl mesh enable (it labels the namespace istio-injection=enabled)"
                        .into(),
                ),
            )
        });
    }
    let filter = filter_object(&input.managed);
    let applied_hash = filter
        .and_then(|f| f["metadata"]["annotations"][CONFIG_HASH_ANNOTATION].as_str())
        .map(str::to_owned);
    out.push(match filter {
        Some(f) => pass(
            g,
            format!(
                "filter object {} {} present",
                f["kind"].as_str().unwrap_or(""),
                f["metadata"]["name"].as_str().unwrap_or("")
            ),
        ),
        None => check(
            g,
            "filter object present",
            Status::Fail,
            Some("run kubectl mesh enable -f CONFIG".into()),
        ),
    });
    if let (Some(want), Some(have)) = (&input.desired_hash, &applied_hash) {
        out.push(if want == have {
            pass(g, "applied config matches the given file")
        } else {
            check(
                g,
                "applied config matches the given file",
                Status::Warn,
                Some("the file changed since enable: run kubectl mesh enable -f again".into()),
            )
        });
    }
    let configmap_delivery = input.managed.iter().any(|o| o["kind"] == "ConfigMap");
    let selector: BTreeMap<String, String> = filter
        .map(|f| {
            let s = &f["spec"];
            let labels = if s["workloadSelector"]["labels"].is_object() {
                &s["workloadSelector"]["labels"]
            } else {
                &s["selector"]["matchLabels"]
            };
            serde_json::from_value(labels.clone()).unwrap_or_default()
        })
        .unwrap_or_default();

    if let Some(routing) = &input.routing {
        let labels: Vec<BTreeMap<String, String>> = input
            .workloads
            .iter()
            .map(|w| crate::plan::template_labels(&w.deployment))
            .collect();
        out.extend(routing::evaluate(routing, &labels));
    }
    out.extend(upstreams::evaluate(&input.upstreams));
    if input.workloads.is_empty() {
        out.push(check(
            "Workloads",
            "selected Deployments found",
            Status::Fail,
            Some("no Deployment matches --selector in this namespace".into()),
        ));
    }
    for w in &input.workloads {
        let name = w.deployment.metadata.name.clone().unwrap_or_default();
        let g = format!("Workload {name}");
        let g = g.as_str();
        let template_annotations = crate::plan::template_annotations(&w.deployment);
        let template_labels = crate::plan::template_labels(&w.deployment);
        let with_proxy = w
            .pods
            .iter()
            .filter(|p| {
                p.spec
                    .as_ref()
                    .is_some_and(|s| crate::plan::proxy_container(s).is_some())
            })
            .count();
        out.push(match (with_proxy, w.pods.len()) {
            (_, 0) => check(
                g,
                "sidecar present",
                Status::Warn,
                Some("no pods yet (scaled to zero or starting)".into()),
            ),
            (a, b) if a == b => pass(g, format!("sidecar present ({a}/{b} pods)")),
            (0, b) => check(
                g,
                format!("sidecar present (0/{b} pods)"),
                Status::Fail,
                Some(format!(
                    "pods started before injection was enabled: wait for the rollout (enable --wait) or kubectl rollout restart deployment/{name}"
                )),
            ),
            (a, b) => check(
                g,
                format!("sidecar present ({a}/{b} pods)"),
                Status::Warn,
                Some("a rollout is in progress; wait or run enable --wait".into()),
            ),
        });
        if configmap_delivery {
            // Look at the running pod, not the annotations: this proves the injector (or the
            // gateway Deployment) really gave istio-proxy the volume.
            let mounted = w
                .pods
                .iter()
                .all(|p| p.spec.as_ref().is_some_and(crate::plan::mounts_module));
            let hint = if template_annotations.contains_key(CONFIG_HASH_ANNOTATION) {
                format!("pods started before the mount was set up: wait for the rollout (enable --wait) or kubectl rollout restart deployment/{name}")
            } else {
                "run kubectl mesh enable (it sets up the mount and rolls the pods)".to_owned()
            };
            out.push(if mounted && !w.pods.is_empty() {
                pass(g, "module mounted")
            } else {
                check(g, "module mounted", Status::Fail, Some(hint))
            });
        }
        let attached = !selector.is_empty()
            && selector
                .iter()
                .all(|(k, v)| template_labels.get(k) == Some(v));
        out.push(if attached {
            pass(g, "filter attached (selector matches pod labels)")
        } else {
            check(g, "filter attached (selector matches pod labels)", Status::Fail, Some("the filter's selector does not match this workload; enable it with a matching --selector".into()))
        });
        // The template says what enable set; the pods say what is running.
        let in_template = template_annotations.get(CONFIG_HASH_ANNOTATION);
        let pods_current = w.pods.iter().all(|p| {
            p.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(CONFIG_HASH_ANNOTATION))
                == applied_hash.as_ref()
        });
        out.push(match (in_template, &applied_hash) {
            (Some(t), Some(a)) if t == a && pods_current && !w.pods.is_empty() => pass(g, "config hash current"),
            (Some(t), Some(a)) if t == a => check(
                g,
                "config hash current",
                Status::Fail,
                Some(format!("pods started before the last enable: wait for the rollout (enable --wait) or kubectl rollout restart deployment/{name}")),
            ),
            _ => check(
                g,
                "config hash current",
                Status::Fail,
                Some("the workload is not set up for the applied config: run kubectl mesh enable".into()),
            ),
        });
        for p in &w.proxies {
            out.extend(proxy::evaluate_pod(g, &name, p));
        }
    }
    out
}

/// Whether the setup is the gateway context: asked for, or the applied filter says so.
fn is_gateway(asked: bool, managed: &[Value]) -> bool {
    asked
        || managed.iter().any(|o| {
            o["spec"]["configPatches"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["match"]["context"] == "GATEWAY"))
        })
}

/// The object carrying the filter (EnvoyFilter, WasmPlugin or TrafficExtension; `gather`
/// sorts the route-only EnvoyFilter after the extension object).
fn filter_object(managed: &[Value]) -> Option<&Value> {
    managed.iter().find(|o| {
        matches!(
            o["kind"].as_str(),
            Some("EnvoyFilter" | "WasmPlugin" | "TrafficExtension")
        ) && o["metadata"]["annotations"][CONFIG_HASH_ANNOTATION].is_string()
    })
}

/// Text form: groups with one line per check.
pub fn to_text(checks: &[Check]) -> String {
    let mut out = String::new();
    let mut group = "";
    for c in checks {
        if c.group != group {
            group = &c.group;
            out.push_str(&format!("{group}\n"));
        }
        let mark = match c.status {
            Status::Pass => "[ok]  ",
            Status::Warn => "[warn]",
            Status::Fail => "[FAIL]",
        };
        out.push_str(&format!("  {mark} {}\n", c.name));
        if let Some(h) = &c.hint {
            out.push_str(&format!("         hint: {h}\n"));
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warned = checks.iter().filter(|c| c.status == Status::Warn).count();
    out.push_str(&format!(
        "\n{} checks: {failed} failed, {warned} warnings\n",
        checks.len()
    ));
    out
}

/// JSON form: `{"ok": bool, "checks": [...]}`.
pub fn to_json(checks: &[Check]) -> String {
    let ok = !checks.iter().any(|c| c.status == Status::Fail);
    serde_json::to_string_pretty(&serde_json::json!({ "ok": ok, "checks": checks }))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn unreachable_fails_and_stops() {
        let input = CheckInput {
            version: Err("refused".into()),
            ..Default::default()
        };
        let checks = evaluate(&input);
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].status, Status::Fail);
        assert!(to_json(&checks).contains("\"ok\": false"));
    }

    #[test]
    fn gateway_filter_needs_no_injection_label() {
        let namespace = Some(Namespace {
            metadata: ObjectMeta {
                name: Some("gw".into()),
                ..Default::default()
            },
            ..Default::default()
        });
        let filter = serde_json::json!({
            "kind": "EnvoyFilter",
            "metadata": { "name": "kubectl-mesh", "annotations": { CONFIG_HASH_ANNOTATION: "h" } },
            "spec": { "configPatches": [{ "match": { "context": "GATEWAY" } }] },
        });
        let base = CheckInput {
            version: Ok(Some((1, 30))),
            envoyfilter_served: true,
            namespace_name: "gw".into(),
            namespace,
            ..Default::default()
        };
        let sidecar = evaluate(&base);
        assert!(sidecar
            .iter()
            .any(|c| c.name == "sidecar injection enabled" && c.status == Status::Fail));
        let gateway = evaluate(&CheckInput {
            managed: vec![filter],
            ..base
        });
        assert!(!gateway
            .iter()
            .any(|c| c.name == "sidecar injection enabled"));
        assert!(gateway
            .iter()
            .any(|c| c.name.starts_with("filter object EnvoyFilter") && c.status == Status::Pass));
    }

    #[test]
    fn old_cluster_and_missing_istio_fail_with_hints() {
        let input = CheckInput {
            version: Ok(Some((1, 15))),
            namespace_name: "d".into(),
            namespace: Some(Namespace {
                metadata: ObjectMeta {
                    name: Some("d".into()),
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        let checks = evaluate(&input);
        let failed: Vec<&Check> = checks.iter().filter(|c| c.status == Status::Fail).collect();
        assert!(failed.iter().any(|c| c.name.contains("1.15")));
        assert!(failed.iter().any(|c| c
            .hint
            .as_deref()
            .unwrap_or("")
            .starts_with("Istio is not installed")));
        assert!(failed.iter().any(|c| c.name == "sidecar injection enabled"));
        let text = to_text(&checks);
        assert!(
            text.contains("Kubernetes API\n") && text.contains("[FAIL]"),
            "{text}"
        );
    }
}
