//! Permissions, asked before they are used: every verb and resource a step will use goes to the
//! API server as a SelfSubjectAccessReview, and everything missing is listed at once, with the
//! Role rules that grant it, before anything is written. What is needed is pure data (reads of
//! the namespace before observing it; the planned writes once the plan is made).

use super::observe::MANAGED_KINDS;
use crate::cluster::{plural, Cluster, ClusterError};
use crate::plan::Action;
use crate::render::Rendered;
use serde_json::Value;
use std::collections::BTreeSet;

/// One permission: `verb` on `resource` (in API `group`) in `namespace` (`""`: every
/// namespace, or a cluster-scoped resource) on `name` (`""`: any).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Need {
    /// The verb (`get`, `list`, `create`, `patch`, `delete`).
    pub verb: &'static str,
    /// The API group (`""` for the core group).
    pub group: String,
    /// The resource, plural (`deployments`), or with its subresource (`pods/proxy`).
    pub resource: String,
    /// Where.
    pub namespace: String,
    /// Which object.
    pub name: String,
}

impl Need {
    /// A need from an apiVersion and a kind.
    pub fn of(
        verb: &'static str,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Need {
        let group = api_version
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or_default();
        Need {
            verb,
            group: group.to_owned(),
            resource: plural(kind),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl std::fmt::Display for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = match self.group.as_str() {
            "" => String::new(),
            g => format!(".{g}"),
        };
        write!(f, "{} {}{group}", self.verb, self.resource)?;
        if !self.name.is_empty() {
            write!(f, " {}", self.name)?;
        }
        match self.namespace.as_str() {
            "" if self.resource == "namespaces" => Ok(()),
            "" => write!(f, " (all namespaces)"),
            ns => write!(f, " in namespace {ns}"),
        }
    }
}

/// What `enable` reads in the objects' namespace before planning: the namespace, the live
/// version and the list of each kind it renders, the selected Deployments.
pub fn enable_reads(rendered: &Rendered, namespace: &str) -> Vec<Need> {
    let mut v = vec![
        Need::of("get", "v1", "Namespace", "", namespace),
        Need::of("list", "apps/v1", "Deployment", namespace, ""),
    ];
    for o in &rendered.objects {
        let (av, kind) = (
            o["apiVersion"].as_str().unwrap_or_default(),
            o["kind"].as_str().unwrap_or_default(),
        );
        v.push(Need::of("get", av, kind, namespace, ""));
        v.push(Need::of("list", av, kind, namespace, ""));
    }
    v
}

/// What `disable` reads: the namespace, the Deployments, and the kinds kubectl-mesh makes (a
/// kind the user may not list is only a note there, so it is not required).
pub fn disable_reads(namespace: &str) -> Vec<Need> {
    vec![
        Need::of("get", "v1", "Namespace", "", namespace),
        Need::of("list", "apps/v1", "Deployment", namespace, ""),
        Need::of("list", "v1", "ConfigMap", namespace, ""),
        Need::of(
            "list",
            MANAGED_KINDS[3].0,
            MANAGED_KINDS[3].1,
            namespace,
            "",
        ),
    ]
}

/// The writes of the plan: server-side apply is a `patch`, and also a `create` when the object
/// is new (the API server checks both; measured on the real one); patches; deletes.
pub fn writes(actions: &[Action]) -> Vec<Need> {
    let mut v = Vec::new();
    for a in actions {
        match a {
            Action::PatchNamespace { namespace, .. } => {
                v.push(Need::of("patch", "v1", "Namespace", "", namespace));
            }
            Action::Apply { object, exists } => {
                let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                let (av, kind, ns, name) = (
                    s(&object["apiVersion"]),
                    s(&object["kind"]),
                    s(&object["metadata"]["namespace"]),
                    s(&object["metadata"]["name"]),
                );
                v.push(Need::of("patch", &av, &kind, &ns, &name));
                if !exists {
                    v.push(Need::of("create", &av, &kind, &ns, &name));
                }
            }
            Action::PatchDeployment {
                namespace, name, ..
            } => v.push(Need::of("patch", "apps/v1", "Deployment", namespace, name)),
            Action::Delete {
                api_version,
                kind,
                namespace,
                name,
            } => v.push(Need::of("delete", api_version, kind, namespace, name)),
        }
    }
    v
}

/// The needs the API server says the user lacks (each asked once).
pub async fn missing(cluster: &Cluster, needs: &[Need]) -> Result<Vec<Need>, ClusterError> {
    let unique: BTreeSet<&Need> = needs.iter().collect();
    let mut out = Vec::new();
    for n in unique {
        let (resource, subresource) = n.resource.split_once('/').unwrap_or((&n.resource, ""));
        // The API server authorizes a request for namespace X as one in namespace X (so a
        // Role there may grant it); the review must ask it the same way.
        let namespace = match (resource, n.namespace.as_str()) {
            ("namespaces", "") => &n.name,
            _ => &n.namespace,
        };
        if !cluster
            .can(n.verb, &n.group, resource, subresource, namespace, &n.name)
            .await?
        {
            out.push(n.clone());
        }
    }
    Ok(out)
}

/// The message for missing permissions: each one, then the RBAC rules granting them (a Role in
/// the namespace; a ClusterRole for what is cluster-wide).
pub fn report(missing: &[Need], doing: &str) -> String {
    let mut out = format!(
        "you may not do everything {doing} needs; missing ({}):\n",
        missing.len()
    );
    for n in missing {
        out.push_str(&format!("  - {n}\n"));
    }
    let mut rules: Vec<(bool, String, String, BTreeSet<&str>)> = Vec::new();
    for n in missing {
        let cluster_wide = n.namespace.is_empty();
        match rules
            .iter_mut()
            .find(|(c, g, r, _)| *c == cluster_wide && *g == n.group && *r == n.resource)
        {
            Some((_, _, _, verbs)) => {
                verbs.insert(n.verb);
            }
            None => rules.push((
                cluster_wide,
                n.group.clone(),
                n.resource.clone(),
                BTreeSet::from([n.verb]),
            )),
        }
    }
    out.push_str("  fix: have an administrator grant these rules (docs/cluster.md lists all kubectl-mesh uses):\n");
    for (cluster_wide, group, resource, verbs) in rules {
        let kind = if cluster_wide { "ClusterRole" } else { "Role" };
        let verbs: Vec<&str> = verbs.into_iter().collect();
        out.push_str(&format!(
            "    {kind}: {{apiGroups: [\"{group}\"], resources: [\"{resource}\"], verbs: [{}]}}\n",
            verbs
                .iter()
                .map(|v| format!("\"{v}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_plan_says_which_writes_and_apply_of_a_new_object_is_a_create_too() {
        let ef = json!({ "apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
            "metadata": { "namespace": "d", "name": "kubectl-mesh" } });
        let actions = [
            Action::PatchNamespace {
                namespace: "d".into(),
                patch: json!({}),
                summary: String::new(),
            },
            Action::Apply {
                object: ef.clone(),
                exists: false,
            },
            Action::Apply {
                object: json!({ "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": { "namespace": "d", "name": "kubectl-mesh-filter" } }),
                exists: true,
            },
            Action::Delete {
                api_version: "extensions.istio.io/v1alpha1".into(),
                kind: "WasmPlugin".into(),
                namespace: "d".into(),
                name: "kubectl-mesh".into(),
            },
        ];
        let lines: Vec<String> = writes(&actions).iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "patch namespaces d",
                "patch envoyfilters.networking.istio.io kubectl-mesh in namespace d",
                "create envoyfilters.networking.istio.io kubectl-mesh in namespace d",
                "patch configmaps kubectl-mesh-filter in namespace d",
                "delete wasmplugins.extensions.istio.io kubectl-mesh in namespace d",
            ]
        );
        let text = report(&writes(&actions)[1..3], "enable");
        assert!(text.starts_with("you may not do everything enable needs; missing (2):"));
        assert!(
            text.contains("Role: {apiGroups: [\"networking.istio.io\"], resources: [\"envoyfilters\"], verbs: [\"create\", \"patch\"]}"),
            "{text}"
        );
        let wide = report(
            &[Need::of(
                "list",
                "networking.istio.io/v1beta1",
                "Gateway",
                "",
                "",
            )],
            "enable",
        );
        assert!(
            wide.contains("list gateways.networking.istio.io (all namespaces)"),
            "{wide}"
        );
        assert!(wide.contains("ClusterRole: {apiGroups"), "{wide}");
    }
}
