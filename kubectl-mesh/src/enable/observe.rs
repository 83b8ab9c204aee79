//! Step 5: what the plan compares against, read from the cluster.

use crate::cluster::{Cluster, ClusterError};
use crate::options::selector_text;
use crate::plan::Observed;
use crate::render::{RenderOptions, Rendered};

/// Every kind kubectl-mesh creates (an uninstalled kind lists as empty).
pub const MANAGED_KINDS: [(&str, &str); 7] = [
    ("networking.istio.io/v1beta1", "VirtualService"),
    ("networking.istio.io/v1beta1", "Gateway"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("networking.istio.io/v1alpha3", "EnvoyFilter"),
    ("extensions.istio.io/v1alpha1", "WasmPlugin"),
    ("extensions.istio.io/v1alpha1", "TrafficExtension"),
    ("v1", "ConfigMap"),
];

/// The objects kubectl-mesh manages in `namespace`, every kind it can see, and a note for
/// each kind the user may not list (the objects this run needs are checked by the permission
/// preflight; a kind it never used, such as HTTPRoute for a sidecar, need not be readable).
pub async fn managed(
    cluster: &Cluster,
    namespace: &str,
) -> Result<(Vec<serde_json::Value>, Vec<String>), ClusterError> {
    let mut managed = Vec::new();
    let mut hidden = Vec::new();
    for (api_version, kind) in MANAGED_KINDS {
        match cluster.list_managed(api_version, kind, namespace).await {
            Ok(found) => managed.extend(found),
            Err(e) if e.code() == Some(403) => {
                tracing::info!("{e}");
                hidden.push(format!(
                    "note: you may not list {kind}s in {namespace}: one kubectl-mesh made there would be left as it is"
                ));
            }
            Err(e) => return Err(e),
        }
    }
    Ok((managed, hidden))
}

/// Reads what `plan_enable` compares against: the live version of each rendered object, the
/// namespace, the selected Deployments and every object of ours in the namespace.
pub async fn observe(
    cluster: &Cluster,
    desired: &Rendered,
    opts: &RenderOptions,
    ossm: bool,
) -> Result<Observed, ClusterError> {
    let mut objects = Vec::new();
    for o in &desired.objects {
        objects.push(cluster.get_object(o).await?);
    }
    let namespace = &opts.namespace;
    Ok(Observed {
        namespace: cluster.namespace(namespace).await?.unwrap_or_default(),
        objects,
        deployments: cluster
            .deployments(namespace, &selector_text(&opts.selector))
            .await?,
        managed: managed(cluster, namespace).await?.0,
        ossm,
    })
}
