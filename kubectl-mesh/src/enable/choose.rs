//! Step 3: where the filter goes, read only. Sidecars: the namespace must exist. The gateway:
//! which Istio Gateway the config's hosts are bound to (an existing one that serves them, or
//! kubectl-mesh's own); the options are settled here, so the next step renders once.

use super::access::Need;
use super::EnableError;
use crate::cluster::Cluster;
use crate::gateway::{self, GatewayChoice, Listen};
use crate::options::{selector_text, Context, RenderOptions};
use mesh_core::MeshConfig;
use serde_json::json;
use std::collections::BTreeMap;

/// The Istio Gateway kind the gateway context binds to.
pub const ISTIO_GATEWAY: (&str, &str) = ("networking.istio.io/v1beta1", "Gateway");

/// Settles the namespace and, at the gateway, the Gateway binding in `opts`; the lines to print.
pub async fn choose(
    cluster: &Cluster,
    cfg: &MeshConfig,
    opts: &mut RenderOptions,
) -> Result<Vec<String>, EnableError> {
    let namespace = &opts.namespace;
    if cluster.namespace(namespace).await?.is_none() {
        return Err(EnableError::Preflight(format!(
            "namespace {namespace} does not exist\n  fix: kubectl create namespace {namespace}, or pass -n"
        )));
    }
    let mut lines = vec![format!("namespace {namespace} exists")];
    if opts.context == Context::Gateway {
        lines.push(bind_hosts(cluster, cfg, opts).await?);
    }
    Ok(lines)
}

fn listens_text(listens: &[Listen]) -> String {
    listens
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" and ")
}

/// Which Istio Gateway the config's hosts are bound to. With `--gateway`, it must exist.
/// Without, the Gateways of every namespace are read and [`gateway::choose`] decides; when it
/// picks an existing one, `opts` names it.
async fn bind_hosts(
    cluster: &Cluster,
    cfg: &MeshConfig,
    opts: &mut RenderOptions,
) -> Result<String, EnableError> {
    let (api_version, kind) = ISTIO_GATEWAY;
    let reads = match &opts.gateway.existing {
        Some(existing) => {
            let (namespace, name) = existing.split_once('/').unwrap_or_default();
            vec![Need::of("get", api_version, kind, namespace, name)]
        }
        None => vec![
            Need::of("list", api_version, kind, "", ""),
            Need::of("list", "apps/v1", "Deployment", &opts.namespace, ""),
        ],
    };
    super::require(cluster, &reads, "enable").await?;
    if let Some(existing) = &opts.gateway.existing {
        let (namespace, name) = existing.split_once('/').unwrap_or_default();
        let stub = json!({
            "apiVersion": api_version, "kind": kind,
            "metadata": { "namespace": namespace, "name": name },
        });
        if cluster.get_object(&stub).await?.is_none() {
            return Err(EnableError::Preflight(format!(
                "--gateway {existing}: no such Istio Gateway\n  fix: name an existing one (kubectl get gateways.networking.istio.io -A), or leave --gateway out and kubectl-mesh finds or creates one"
            )));
        }
        return Ok(format!(
            "gateway: binding the hosts to {existing} (--gateway)"
        ));
    }
    let mut labels: Vec<BTreeMap<String, String>> = cluster
        .deployments(&opts.namespace, &selector_text(&opts.selector))
        .await?
        .iter()
        .map(crate::plan::template_labels)
        .collect();
    if labels.is_empty() {
        // The plan reports the missing Deployment; judge by the selector meanwhile.
        labels.push(opts.selector.clone());
    }
    let hosts = crate::istio::domains(cfg);
    let g = &opts.gateway;
    let listens =
        gateway::required_listens(g.http_port, g.tls_secret.as_ref().map(|_| g.https_port));
    let gateways = cluster.list_all(api_version, kind).await?;
    Ok(
        match gateway::choose(&gateways, &labels, &hosts, &opts.namespace, &listens) {
            GatewayChoice::Create => format!(
                "gateway: no Istio Gateway of these pods serves {} on {}; creating {}/{}",
                hosts.join(", "),
                listens_text(&listens),
                opts.namespace,
                opts.name
            ),
            GatewayChoice::Existing { gateway, unserved } => {
                let line = if unserved.is_empty() {
                    format!(
                        "gateway: using the existing Gateway {gateway}, which serves {} on {}",
                        hosts.join(", "),
                        listens_text(&listens)
                    )
                } else {
                    let missing: Vec<String> = unserved
                        .iter()
                        .map(|(h, l)| format!("{h} on {l}"))
                        .collect();
                    format!(
                        "gateway: using the existing Gateway {gateway}: it already terminates HTTPS for some of the hosts, and a second Gateway with the same host on the same HTTPS port conflicts in Istio\n  warning: {gateway} does not serve {}; add them to its servers (kubectl mesh check reports them until then)",
                        missing.join(", ")
                    )
                };
                opts.gateway.existing = Some(gateway);
                line
            }
        },
    )
}
