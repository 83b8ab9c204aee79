//! Reading OpenShift Service Mesh 2.x's state from the cluster (thin I/O; the rules are in
//! [`super`]).

use super::{ControlPlane, Membership};
use crate::cluster::{Cluster, ClusterError};

/// OpenShift Service Mesh 2.x's control plane: served `maistra.io` and a
/// ServiceMeshControlPlane (the first by namespace). A user who may not list them is judged by
/// `namespace`'s own label: the operator labels its members `maistra.io/member-of: CP_NAMESPACE`.
/// `None` without one (a cluster that merely kept the CRDs).
pub async fn control_plane(
    cluster: &Cluster,
    namespace: &str,
) -> Result<Option<ControlPlane>, ClusterError> {
    let (api_version, kind) = super::CONTROL_PLANE;
    let served = cluster.resources(api_version).await?;
    if !served.iter().any(|r| r == "servicemeshcontrolplanes") {
        return Ok(None);
    }
    match cluster.list_all(api_version, kind).await {
        Ok(mut cps) => {
            cps.sort_by_key(crate::gateway::object_ref);
            Ok(cps.first().map(ControlPlane::from_object))
        }
        Err(e) if e.code() == Some(403) => {
            let member_of = cluster
                .namespace(namespace)
                .await?
                .and_then(|n| n.metadata.labels)
                .and_then(|l| l.get(super::MEMBER_OF_LABEL).cloned());
            Ok(member_of.map(|cp| ControlPlane {
                namespace: cp,
                name: "(not readable)".into(),
                version: None,
            }))
        }
        Err(e) => Err(e),
    }
}

/// `namespace`'s membership in `cp`'s mesh (its member roll, or a ServiceMeshMember there).
pub async fn membership(
    cluster: &Cluster,
    cp: &ControlPlane,
    namespace: &str,
) -> Result<Membership, ClusterError> {
    let get = |(api_version, kind): (&str, &str), ns: &str| {
        serde_json::json!({
            "apiVersion": api_version, "kind": kind,
            "metadata": { "namespace": ns, "name": "default" },
        })
    };
    // The operator's label on its configured members, readable by whoever may read the
    // namespace; the member roll and ServiceMeshMember when the user may read them.
    let labels = cluster
        .namespace(namespace)
        .await?
        .and_then(|n| n.metadata.labels)
        .unwrap_or_default();
    if labels.get(super::MEMBER_OF_LABEL) == Some(&cp.namespace) {
        return Ok(Membership::Member);
    }
    let readable = |r: Result<Option<serde_json::Value>, ClusterError>| match r {
        Err(e) if e.code() == Some(403) => Ok(None),
        other => other,
    };
    let roll = readable(
        cluster
            .get_object(&get(super::MEMBER_ROLL, &cp.namespace))
            .await,
    )?;
    let member = readable(cluster.get_object(&get(super::MEMBER, namespace)).await)?;
    Ok(super::membership(
        namespace,
        cp,
        roll.as_ref(),
        member.as_ref(),
    ))
}
