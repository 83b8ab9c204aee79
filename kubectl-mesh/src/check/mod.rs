//! `kubectl mesh check`: a grouped pass/warn/fail checklist; `evaluate` is pure, `gather` reads.

mod gather;
pub mod proxy;
pub mod routing;
pub mod upstreams;
mod workload;

pub use gather::{gather, gather_proxy_stats, pod_stats};

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
pub enum Status {
    /// Fine.
    #[serde(rename = "success")]
    Pass,
    /// Works, but something deserves attention.
    #[serde(rename = "warning")]
    Warn,
    /// Broken; `check` exits 1.
    #[serde(rename = "error")]
    Fail,
}

/// One line of the checklist: data, so the text and the `-o json|yaml` forms say the same.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable identifier, `CATEGORY.CHECK` (`workload.module-mounted`): what scripts match on.
    /// Several lines may share one (one per workload, pod or upstream).
    pub id: &'static str,
    /// The heading it is printed under (`Workload server`).
    pub group: String,
    /// What was checked, with its subject (`pod server-1: Wasm VM running`).
    pub description: String,
    /// Result.
    #[serde(rename = "result")]
    pub status: Status,
    /// What to do about a warning or failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// A failure here stops the checklist: what follows could not be checked.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fatal: bool,
}

impl Check {
    /// The category: the id's part before the dot (`workload`).
    pub fn category(&self) -> &'static str {
        self.id.split_once('.').map_or(self.id, |(c, _)| c)
    }

    fn fatal(mut self) -> Check {
        self.fatal = true;
        self
    }
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
    /// Kinds the user may not list in every namespace (what depends on them is not checked).
    pub unread: Vec<String>,
    /// OpenShift Service Mesh 2.x: its control plane and the namespace's membership.
    pub ossm: Option<(crate::ossm::ControlPlane, crate::ossm::Membership)>,
    /// A Gateway API gateway: the anchor HTTPRoute and its Gateway.
    pub route: Option<routing::RouteRouting>,
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
            route: None,
            ossm: None,
            unread: Vec::new(),
            upstreams: Vec::new(),
        }
    }
}

fn check(
    id: &'static str,
    group: &str,
    description: impl Into<String>,
    status: Status,
    hint: Option<String>,
) -> Check {
    Check {
        id,
        group: group.into(),
        description: description.into(),
        status,
        hint,
        fatal: false,
    }
}

fn pass(id: &'static str, group: &str, description: impl Into<String>) -> Check {
    check(id, group, description, Status::Pass, None)
}

/// Turns observations into the checklist.
pub fn evaluate(input: &CheckInput) -> Vec<Check> {
    let mut out = Vec::new();
    let g = "Kubernetes API";
    match &input.version {
        Err(message) => {
            out.push(
                check(
                    "kubernetes-api.reachable",
                    g,
                    format!("API reachable at {}", input.url),
                    Status::Fail,
                    Some(format!("{message}; check --kubeconfig and --context")),
                )
                .fatal(),
            );
            return out;
        }
        Ok(version) => {
            out.push(pass(
                "kubernetes-api.reachable",
                g,
                format!("API reachable at {}", input.url),
            ));
            let (min_major, min_minor) = MIN_KUBERNETES;
            let id = "kubernetes-api.version";
            out.push(match version {
                Some(v) if *v >= MIN_KUBERNETES => pass(
                    id,
                    g,
                    format!("server version {}.{} >= {min_major}.{min_minor}", v.0, v.1),
                ),
                Some(v) => check(
                    id,
                    g,
                    format!("server version {}.{} >= {min_major}.{min_minor}", v.0, v.1),
                    Status::Fail,
                    Some("upgrade the cluster: Istio needs Kubernetes 1.16 or newer".into()),
                ),
                None => check(
                    id,
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
            "istio.envoyfilter-served",
            g,
            format!(
                "EnvoyFilter installed (networking.istio.io {})",
                input.networking_versions.join(", ")
            ),
        )
    } else {
        check(
            "istio.envoyfilter-served",
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
            "istio.extensions-served",
            g,
            "extensions.istio.io served",
            Status::Warn,
            Some("only --api envoyfilter works on this cluster".into()),
        )
    } else {
        pass(
            "istio.extensions-served",
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
        out.push(
            check(
                "namespace.exists",
                g,
                format!("namespace {ns} exists"),
                Status::Fail,
                Some(format!(
                    "create it (kubectl create namespace {ns}) or pass -n"
                )),
            )
            .fatal(),
        );
        return out;
    };
    out.push(pass(
        "namespace.exists",
        g,
        format!("namespace {ns} exists"),
    ));
    // A gateway is not injected, so it needs no label; the applied filter says which it is.
    if let Some((cp, membership)) = &input.ossm {
        use crate::ossm::Membership;
        let id = "namespace.mesh-member";
        let description = format!(
            "namespace {ns} is a member of OpenShift Service Mesh {}/{}",
            cp.namespace, cp.name
        );
        out.push(match membership {
            Membership::Member => pass(id, g, description),
            Membership::Pending => check(
                id,
                g,
                description,
                Status::Warn,
                Some("listed in the member roll, not configured yet by the operator: oc describe smmr default".into()),
            ),
            Membership::NotMember => check(
                id,
                g,
                description,
                Status::Fail,
                Some(format!(
                    "its istiod ignores this namespace; {}",
                    crate::ossm::join_command(ns, cp)
                )),
            ),
        });
    } else if !is_gateway(input.gateway, &input.managed) {
        let labels = namespace.metadata.labels.clone().unwrap_or_default();
        let injected = labels.get(INJECTION_LABEL).is_some_and(|v| v == "enabled")
            || labels.contains_key(REV_LABEL);
        out.push(if injected {
            pass("namespace.injection", g, "sidecar injection enabled")
        } else {
            check(
                "namespace.injection",
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
            "namespace.filter-object",
            g,
            format!(
                "filter object {} {} present",
                f["kind"].as_str().unwrap_or(""),
                f["metadata"]["name"].as_str().unwrap_or("")
            ),
        ),
        None => check(
            "namespace.filter-object",
            g,
            "filter object present",
            Status::Fail,
            Some("run kubectl mesh enable -f CONFIG".into()),
        ),
    });
    if let (Some(want), Some(have)) = (&input.desired_hash, &applied_hash) {
        let id = "namespace.config-matches-file";
        out.push(if want == have {
            pass(id, g, "applied config matches the given file")
        } else {
            check(
                id,
                g,
                "applied config matches the given file",
                Status::Warn,
                Some("the file changed since enable: run kubectl mesh enable -f again".into()),
            )
        });
    }
    if let Some(routing) = &input.routing {
        let labels: Vec<BTreeMap<String, String>> = input
            .workloads
            .iter()
            .map(|w| crate::plan::template_labels(&w.deployment))
            .collect();
        out.extend(routing::evaluate(routing, &labels));
    }
    if let Some(route) = &input.route {
        out.extend(routing::evaluate_route(route));
    }
    out.extend(upstreams::evaluate(&input.upstreams));
    for kind in &input.unread {
        out.push(check(
            "kubernetes-api.list-everywhere",
            "Kubernetes API",
            format!("{kind} readable in every namespace"),
            Status::Warn,
            Some(format!("you may not read {kind} in every namespace, so what depends on them was not checked (VirtualServices sharing the config's hosts; the upstreams' Services and DestinationRules): docs/cluster.md lists the permissions")),
        ));
    }
    out.extend(workload::evaluate(input, filter, applied_hash.as_deref()));
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
        out.push_str(&format!("  {mark} {}\n", c.description));
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

/// The structured form, as `linkerd check -o json` shapes it: `success`, then the checks by
/// category (`categoryName`), each with its stable `id`, `group`, `description`, `result`
/// (`success`, `warning`, `error`), `hint` and `fatal`.
pub fn to_value(checks: &[Check]) -> Value {
    let mut categories: Vec<(&str, Vec<&Check>)> = Vec::new();
    for c in checks {
        match categories
            .iter_mut()
            .find(|(name, _)| *name == c.category())
        {
            Some((_, list)) => list.push(c),
            None => categories.push((c.category(), vec![c])),
        }
    }
    let categories: Vec<Value> = categories
        .into_iter()
        .map(|(name, checks)| serde_json::json!({ "categoryName": name, "checks": checks }))
        .collect();
    serde_json::json!({
        "success": !checks.iter().any(|c| c.status == Status::Fail),
        "categories": categories,
    })
}

/// JSON form of [`to_value`].
pub fn to_json(checks: &[Check]) -> String {
    format!("{:#}", to_value(checks))
}

/// YAML form of [`to_value`].
pub fn to_yaml(checks: &[Check]) -> Result<String, crate::output::SerializeError> {
    crate::output::yaml("the checklist", &to_value(checks))
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
        assert!(checks[0].fatal);
        let v = to_value(&checks);
        assert_eq!(v["success"], false);
        assert_eq!(v["categories"][0]["categoryName"], "kubernetes-api");
        let c = &v["categories"][0]["checks"][0];
        assert_eq!(
            (c["id"].as_str(), c["result"].as_str(), c["fatal"].as_bool()),
            (Some("kubernetes-api.reachable"), Some("error"), Some(true))
        );
        assert!(c["hint"].as_str().unwrap().contains("refused"), "{c}");
        let y: serde_json::Value = serde_yaml_ng::from_str(&to_yaml(&checks).unwrap()).unwrap();
        assert_eq!(y, v, "the YAML form says the same");
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
            .any(|c| c.description == "sidecar injection enabled" && c.status == Status::Fail));
        let gateway = evaluate(&CheckInput {
            managed: vec![filter],
            ..base
        });
        assert!(!gateway
            .iter()
            .any(|c| c.description == "sidecar injection enabled"));
        assert!(gateway
            .iter()
            .any(|c| c.description.starts_with("filter object EnvoyFilter")
                && c.status == Status::Pass));
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
        assert!(failed.iter().any(|c| c.description.contains("1.15")));
        assert!(failed.iter().any(|c| c
            .hint
            .as_deref()
            .unwrap_or("")
            .starts_with("Istio is not installed")));
        assert!(failed
            .iter()
            .any(|c| c.description == "sidecar injection enabled"));
        let text = to_text(&checks);
        assert!(
            text.contains("Kubernetes API\n") && text.contains("[FAIL]"),
            "{text}"
        );
    }
}
