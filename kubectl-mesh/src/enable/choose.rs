//! Step 3: where the filter goes, read only. Sidecars: the namespace must exist. The gateway:
//! which gateway runs the filter ([`crate::discover`]: istioctl's, the Helm chart's, a Gateway
//! API gateway; the one serving the hosts, or refused with what to pass), then which Istio
//! Gateway the hosts are bound to (an existing one that serves them, or kubectl-mesh's own; a
//! Gateway API gateway gets an HTTPRoute instead). The options are settled here, so the next
//! step renders once.

use super::access::Need;
use super::load::Loaded;
use super::EnableError;
use crate::cluster::Cluster;
use crate::discover::{self, Decision};
use crate::gateway::{self, GatewayChoice, Listen};
use crate::options::{selector_text, Context, RenderOptions};
use mesh_core::MeshConfig;
use serde_json::json;
use std::collections::BTreeMap;

/// The Istio Gateway kind the gateway context binds to.
pub const ISTIO_GATEWAY: (&str, &str) = ("networking.istio.io/v1beta1", "Gateway");

/// The Gateway API's Gateway kind.
const K8S_GATEWAY: (&str, &str) = ("gateway.networking.k8s.io/v1", "Gateway");

/// Settles the namespace and, at the gateway, the gateway and its binding in `loaded.opts`; the
/// lines to print.
pub async fn choose(cluster: &Cluster, loaded: &mut Loaded) -> Result<Vec<String>, EnableError> {
    let mut lines = Vec::new();
    if loaded.opts.context == Context::Gateway {
        if !loaded.selector_given {
            lines.push(find_gateway(cluster, loaded).await?);
        } else if !loaded.namespace_given {
            if let Some(line) = namespace_of_selector(cluster, &mut loaded.opts).await? {
                lines.push(line);
            }
        }
    }
    let (cfg, opts) = (&loaded.cfg, &mut loaded.opts);
    let namespace = &opts.namespace;
    if cluster.namespace(namespace).await?.is_none() {
        return Err(EnableError::Preflight(format!(
            "namespace {namespace} does not exist\n  fix: kubectl create namespace {namespace}, or pass -n"
        )));
    }
    lines.push(format!("namespace {namespace} exists"));
    if let Some(gateway) = opts.gateway_api() {
        let served = cluster.resources(K8S_GATEWAY.0).await?;
        if !served.iter().any(|r| r == "httproutes") {
            return Err(EnableError::Preflight(format!(
                "the API server does not serve {} HTTPRoute, which binds the hosts to the Gateway API gateway {gateway}
  fix: install the Gateway API CRDs (standard channel)",
                K8S_GATEWAY.0
            )));
        }
        lines.push(format!(
            "gateway: binding the hosts to the Gateway API Gateway {}/{gateway} with an HTTPRoute",
            opts.namespace
        ));
    } else if opts.context == Context::Gateway {
        lines.push(bind_hosts(cluster, cfg, opts).await?);
    }
    Ok(lines)
}

/// Without `-l`: the gateway, among those installed ([`discover`]); `-n` limits the search.
async fn find_gateway(cluster: &Cluster, loaded: &mut Loaded) -> Result<String, EnableError> {
    let opts = &mut loaded.opts;
    let scope = loaded.namespace_given.then(|| opts.namespace.clone());
    let scope_ns = scope.clone().unwrap_or_default();
    let k8s_served = cluster
        .resources(K8S_GATEWAY.0)
        .await?
        .iter()
        .any(|r| r == "gateways");
    let mut reads = vec![
        Need::of("list", "apps/v1", "Deployment", &scope_ns, ""),
        Need::of("list", ISTIO_GATEWAY.0, ISTIO_GATEWAY.1, "", ""),
    ];
    if k8s_served {
        reads.push(Need::of("list", K8S_GATEWAY.0, K8S_GATEWAY.1, "", ""));
    }
    let missing = super::access::missing(cluster, &reads).await?;
    if !missing.is_empty() {
        return Err(EnableError::Preflight(format!(
            "{}
  or name the gateway's pods yourself: -n NAMESPACE -l LABEL=VALUE (istioctl's: -n istio-system -l istio=ingressgateway)",
            super::access::report(&missing, "finding the ingress gateway")
        )));
    }
    let deployments = match &scope {
        Some(ns) => cluster.deployments(ns, "").await?,
        None => cluster.deployments_everywhere("").await?,
    };
    let k8s_gateways = match k8s_served {
        true => cluster.list_all(K8S_GATEWAY.0, K8S_GATEWAY.1).await?,
        false => Vec::new(),
    };
    let istio_class = |ns: &str, name: &str| {
        k8s_gateways.iter().any(|g| {
            g["metadata"]["namespace"] == ns
                && g["metadata"]["name"] == name
                && g["spec"]["gatewayClassName"] == "istio"
        })
    };
    let mut found = discover::candidates(&deployments, istio_class);
    let istio_gateways = cluster.list_all(ISTIO_GATEWAY.0, ISTIO_GATEWAY.1).await?;
    // `--gateway`: the pods that Istio Gateway selects (one that does not exist, or selects
    // none of them, is reported when the hosts are bound).
    if let Some(existing) = &opts.gateway.existing {
        let named: Vec<&serde_json::Value> = istio_gateways
            .iter()
            .filter(|g| crate::gateway::object_ref(g) == *existing)
            .collect();
        let selected =
            |c: &discover::Candidate| named.iter().any(|g| crate::gateway::selects(g, &c.labels));
        if found.iter().any(selected) {
            found.retain(selected);
        }
    }
    let hosts = crate::istio::domains(&loaded.cfg);
    let served: Vec<(discover::Candidate, Vec<String>)> = found
        .into_iter()
        .map(|c| {
            let s = discover::served(&c, &istio_gateways, &k8s_gateways, &hosts);
            (c, s)
        })
        .collect();
    match discover::decide(&served, &hosts) {
        Decision::Use(c, why) => {
            opts.namespace = c.namespace;
            opts.selector = c.selector;
            opts.gateway_deployment = c.deployment;
            Ok(why)
        }
        Decision::Refuse(message) => Err(EnableError::Preflight(message)),
    }
}

/// `-l` without `-n`: the namespace of the Deployments it selects (one; several are refused);
/// none found leaves Istio's default, where the plan says nothing matches.
async fn namespace_of_selector(
    cluster: &Cluster,
    opts: &mut RenderOptions,
) -> Result<Option<String>, EnableError> {
    let selector = selector_text(&opts.selector);
    let reads = [Need::of("list", "apps/v1", "Deployment", "", "")];
    if !super::access::missing(cluster, &reads).await?.is_empty() {
        // Not allowed to look everywhere: Istio's default namespace (or -n).
        return Ok(None);
    }
    let mut namespaces: Vec<String> = cluster
        .deployments_everywhere(&selector)
        .await?
        .iter()
        .filter_map(|d| d.metadata.namespace.clone())
        .collect();
    namespaces.sort();
    namespaces.dedup();
    match namespaces.as_slice() {
        [] => Ok(None),
        [one] => {
            opts.namespace = one.clone();
            Ok(Some(format!(
                "gateway: the Deployments labelled {selector} are in namespace {one}"
            )))
        }
        several => Err(EnableError::Preflight(format!(
            "Deployments labelled {selector} are in several namespaces: {}
  fix: pass -n with one of them",
            several.join(", ")
        ))),
    }
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
