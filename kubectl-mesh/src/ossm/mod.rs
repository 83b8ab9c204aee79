//! OpenShift Service Mesh 2.x (Maistra): the rules here are pure, [`read`] reads the cluster. Its istiod watches only the namespaces of the
//! ServiceMeshMemberRoll (`default`, in the control plane's namespace) and ServiceMeshMember
//! objects, and injects sidecars by the pod annotation `sidecar.istio.io/inject: "true"`: the
//! namespace label kubectl-mesh sets elsewhere does nothing there. Its releases ship older Istio
//! (2.4: 1.16, 2.5: 1.18, 2.6: 1.20), and its istiod image tag is the OSSM version, not Istio's.

pub mod read;

use serde_json::Value;

/// The API group of OSSM 2.x's control plane objects.
pub const GROUP: &str = "maistra.io";
/// ServiceMeshControlPlane.
pub const CONTROL_PLANE: (&str, &str) = ("maistra.io/v2", "ServiceMeshControlPlane");
/// ServiceMeshMemberRoll (named `default`, in the control plane's namespace).
pub const MEMBER_ROLL: (&str, &str) = ("maistra.io/v1", "ServiceMeshMemberRoll");
/// The label the operator puts on each configured member namespace: the control plane's
/// namespace.
pub const MEMBER_OF_LABEL: &str = "maistra.io/member-of";
/// ServiceMeshMember (named `default`, in a member namespace).
pub const MEMBER: (&str, &str) = ("maistra.io/v1", "ServiceMeshMember");

/// An OSSM 2.x control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlane {
    /// Its namespace (the member roll's too).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its `spec.version` (`v2.6`), if set.
    pub version: Option<String>,
}

impl ControlPlane {
    /// From a ServiceMeshControlPlane object.
    pub fn from_object(smcp: &Value) -> ControlPlane {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        ControlPlane {
            namespace: s(&smcp["metadata"]["namespace"]),
            name: s(&smcp["metadata"]["name"]),
            version: smcp["spec"]["version"].as_str().map(str::to_owned),
        }
    }

    /// The Istio release it runs, from its OSSM version.
    pub fn istio(&self) -> Option<(u32, u32)> {
        istio_release(self.version.as_deref()?)
    }
}

/// The Istio release of an OSSM 2.x version (`v2.6`, `2.5.3`).
pub fn istio_release(ossm: &str) -> Option<(u32, u32)> {
    let mut parts = ossm.trim_start_matches('v').split('.');
    let (major, minor): (u32, u32) = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
    match (major, minor) {
        (2, 0) => Some((1, 6)),
        (2, 1) => Some((1, 9)),
        (2, 2) => Some((1, 12)),
        (2, 3) => Some((1, 14)),
        (2, 4) => Some((1, 16)),
        (2, 5) => Some((1, 18)),
        (2, 6) => Some((1, 20)),
        _ => None,
    }
}

/// Whether a namespace is in the mesh of an OSSM 2.x control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// Listed, and the operator says it configured it.
    Member,
    /// Listed, not configured yet (the operator works on it, or failed).
    Pending,
    /// Not in the mesh.
    NotMember,
}

/// `namespace`'s membership: the control plane's own namespace always is; else the member roll
/// (`spec.members`, `*` for all; `status.configuredMembers` once done) or a ServiceMeshMember in
/// the namespace (`status.conditions` Ready).
pub fn membership(
    namespace: &str,
    cp: &ControlPlane,
    roll: Option<&Value>,
    member: Option<&Value>,
) -> Membership {
    if namespace == cp.namespace {
        return Membership::Member;
    }
    let listed = |v: &Value, key: &str| {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .any(|m| m == namespace || (key == "members" && m == "*"))
    };
    if let Some(r) = roll {
        if listed(&r["status"]["configuredMembers"], "configured") {
            return Membership::Member;
        }
        if listed(&r["spec"]["members"], "members") {
            return Membership::Pending;
        }
    }
    if let Some(m) = member {
        let ready = m["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        return match ready {
            true => Membership::Member,
            false => Membership::Pending,
        };
    }
    Membership::NotMember
}

/// What to run to make `namespace` a member of `cp`'s mesh.
pub fn join_command(namespace: &str, cp: &ControlPlane) -> String {
    format!(
        "oc -n {namespace} apply -f - <<'EOF'\napiVersion: maistra.io/v1\nkind: ServiceMeshMember\nmetadata: {{name: default}}\nspec: {{controlPlaneRef: {{namespace: {}, name: {}}}}}\nEOF\n  (or add it to the ServiceMeshMemberRoll: oc -n {} patch smmr default --type json -p '[{{\"op\":\"add\",\"path\":\"/spec/members/-\",\"value\":\"{namespace}\"}}]')",
        cp.namespace, cp.name, cp.namespace
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cp() -> ControlPlane {
        ControlPlane::from_object(&json!({
            "metadata": { "namespace": "istio-system", "name": "basic" },
            "spec": { "version": "v2.6" },
        }))
    }

    #[test]
    fn versions_and_membership() {
        assert_eq!(cp().istio(), Some((1, 20)));
        assert_eq!(istio_release("2.4.9"), Some((1, 16)));
        assert_eq!(istio_release("v3.0"), None);
        let roll = json!({ "spec": { "members": ["digimon", "shop"] },
            "status": { "configuredMembers": ["shop"] } });
        let m = |ns: &str, roll: Option<&Value>, member: Option<&Value>| {
            membership(ns, &cp(), roll, member)
        };
        assert_eq!(m("istio-system", None, None), Membership::Member);
        assert_eq!(m("shop", Some(&roll), None), Membership::Member);
        assert_eq!(m("digimon", Some(&roll), None), Membership::Pending);
        assert_eq!(m("web", Some(&roll), None), Membership::NotMember);
        let all = json!({ "spec": { "members": ["*"] } });
        assert_eq!(m("web", Some(&all), None), Membership::Pending);
        let ready = json!({ "status": { "conditions": [{ "type": "Ready", "status": "True" }] } });
        assert_eq!(m("web", Some(&roll), Some(&ready)), Membership::Member);
        let cmd = join_command("web", &cp());
        assert!(
            cmd.contains("kind: ServiceMeshMember")
                && cmd.contains("controlPlaneRef: {namespace: istio-system, name: basic}")
                && cmd.contains("oc -n istio-system patch smmr default"),
            "{cmd}"
        );
    }
}
