//! `enable` and `disable`: preflight, run the planned actions in order, report progress.

use crate::cluster::{Cluster, ClusterError};
use crate::gateway::{self, GatewayChoice, Listen};
use crate::plan::{self, Action, Observed, PlanError, MIN_KUBERNETES};
use crate::render::{Api, Context, RenderError, RenderOptions, Rendered};
use mesh_core::MeshConfig;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

/// Every kind kubectl-mesh creates (an uninstalled kind lists as empty).
pub const MANAGED_KINDS: [(&str, &str); 6] = [
    ("networking.istio.io/v1beta1", "VirtualService"),
    ("networking.istio.io/v1beta1", "Gateway"),
    ("networking.istio.io/v1alpha3", "EnvoyFilter"),
    ("extensions.istio.io/v1alpha1", "WasmPlugin"),
    ("extensions.istio.io/v1alpha1", "TrafficExtension"),
    ("v1", "ConfigMap"),
];

/// Why `enable`/`disable` stopped.
#[derive(Debug, thiserror::Error)]
pub enum EnableError {
    /// A preflight check failed before anything was changed.
    #[error("preflight failed, nothing was changed: {0}")]
    Preflight(String),
    /// Reading the cluster failed before anything was changed.
    #[error("{0}\nnothing was changed")]
    Read(#[from] ClusterError),
    /// The plan could not be made.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Rendering again for the chosen Gateway failed.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// An action failed after others had succeeded.
    #[error("{cause}\napplied:\n{}{}\nnot applied:\n{}\nfix the cause and run the same command again: it continues where it stopped", list(.applied), unknown_list(.unknown), list(.not_applied))]
    Partial {
        /// The failure.
        cause: ClusterError,
        /// Actions that took effect.
        applied: Vec<String>,
        /// The action whose answer was lost with the connection: the server may have applied it.
        unknown: Option<String>,
        /// Actions that did not take effect.
        not_applied: Vec<String>,
    },
    /// `--wait` ran out of time.
    #[error("timed out after {0}s waiting for pods with istio-proxy: {1}\n  fix: inspect with kubectl get pods and kubectl mesh check")]
    Timeout(u64, String),
}

fn unknown_list(item: &Option<String>) -> String {
    item.as_ref()
        .map(|i| format!("\nunknown (the connection was lost before the answer; a rerun checks it):\n  - {i}"))
        .unwrap_or_default()
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "  (none)".into();
    }
    items
        .iter()
        .map(|i| format!("  - {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The Istio release istiod runs, from its image tag (`.../pilot:1.27.3-distroless` is 1.27):
/// in `istio-system` where installs put it, else anywhere; `None` when no `app=istiod`
/// Deployment is found or its tag is not a release.
pub async fn istio_version(cluster: &Cluster) -> Result<Option<(u32, u32)>, ClusterError> {
    let mut istiods = cluster.deployments("istio-system", "app=istiod").await?;
    if istiods.is_empty() {
        istiods = cluster.deployments_everywhere("app=istiod").await?;
    }
    Ok(istiods
        .iter()
        .filter_map(|d| d.spec.template.spec.as_ref())
        .flat_map(|s| &s.containers)
        .filter_map(|c| c.image.as_deref())
        .filter_map(|image| image.rsplit_once(':').map(|(_, tag)| tag))
        .filter_map(crate::render::parse_istio_version)
        .min())
}

/// Checks that the cluster can take the objects; nothing is written.
pub async fn preflight(
    cluster: &Cluster,
    namespace: &str,
    api: Api,
    needs_gateway_api: bool,
) -> Result<String, EnableError> {
    let info = cluster.version().await?;
    let (min_major, min_minor) = MIN_KUBERNETES;
    let version = plan::parse_version(&info).ok_or_else(|| {
        EnableError::Preflight(format!(
            "cannot parse the server version {:?}",
            info.git_version
        ))
    })?;
    if version < MIN_KUBERNETES {
        return Err(EnableError::Preflight(format!(
            "the cluster runs Kubernetes {}.{}, Istio needs {min_major}.{min_minor} or newer\n  fix: upgrade the cluster",
            version.0, version.1
        )));
    }
    let served = cluster.resources("networking.istio.io/v1alpha3").await?;
    if !served.iter().any(|r| r == "envoyfilters") {
        return Err(EnableError::Preflight(
            "Istio is not installed: the API server does not serve networking.istio.io/v1alpha3 EnvoyFilter\n  fix: install Istio (istioctl install) first".into(),
        ));
    }
    if needs_gateway_api {
        let served = cluster.resources("networking.istio.io/v1beta1").await?;
        for plural in ["gateways", "virtualservices"] {
            if !served.iter().any(|r| r == plural) {
                return Err(EnableError::Preflight(format!(
                    "the API server does not serve networking.istio.io/v1beta1 {plural}, which the gateway context needs to bind the config's hosts\n  fix: use an Istio with networking.istio.io/v1beta1 (1.9 or newer)"
                )));
            }
        }
    }
    let extension = match api {
        Api::Envoyfilter => None,
        Api::Wasmplugin => Some(("wasmplugins", "WasmPlugin", "1.12")),
        Api::Trafficextension => Some(("trafficextensions", "TrafficExtension", "1.30")),
    };
    if let Some((plural, kind, since)) = extension {
        // The kind, not just the group: TrafficExtension is newer than WasmPlugin.
        let served = cluster.resources("extensions.istio.io/v1alpha1").await?;
        if !served.iter().any(|r| r == plural) {
            return Err(EnableError::Preflight(format!(
                "this Istio does not serve extensions.istio.io/v1alpha1 {kind} (Istio {since} or newer has it)\n  fix: use --api envoyfilter{}, or upgrade Istio",
                if api == Api::Trafficextension { " or --api wasmplugin" } else { "" }
            )));
        }
    }
    if cluster.namespace(namespace).await?.is_none() {
        return Err(EnableError::Preflight(format!(
            "namespace {namespace} does not exist\n  fix: kubectl create namespace {namespace}, or pass -n"
        )));
    }
    Ok(format!(
        "preflight ok: {} (Kubernetes {}.{}), Istio EnvoyFilter served, namespace {namespace} exists",
        cluster.url(),
        version.0,
        version.1
    ))
}

/// The Istio Gateway kind the gateway context binds to.
const GATEWAY: (&str, &str) = ("networking.istio.io/v1beta1", "Gateway");

fn listens_text(listens: &[Listen]) -> String {
    listens
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" and ")
}

/// Gateway context: which Istio Gateway the config's hosts are bound to. With `--gateway`, it
/// must exist. Without, the Gateways of every namespace are read and [`gateway::choose`]
/// decides; when it picks an existing one, `opts` names it and `rendered` is rendered again
/// (without kubectl-mesh's own Gateway). Returns the line to print; `None` for sidecars.
pub async fn choose_gateway(
    cluster: &Cluster,
    cfg: &MeshConfig,
    opts: &mut RenderOptions,
    rendered: &mut Rendered,
) -> Result<Option<String>, EnableError> {
    if opts.context != Context::Gateway {
        return Ok(None);
    }
    let (api_version, kind) = GATEWAY;
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
        return Ok(Some(format!(
            "gateway: binding the hosts to {existing} (--gateway)"
        )));
    }
    let selector: String = opts
        .selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut labels: Vec<BTreeMap<String, String>> = cluster
        .deployments(&opts.namespace, &selector)
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
    let choice = gateway::choose(&gateways, &labels, &hosts, &opts.namespace, &listens);
    let line = match choice {
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
            *rendered = crate::render::render(cfg, opts)?;
            line
        }
    };
    Ok(Some(line))
}

/// Reads what `plan_enable` compares against.
pub async fn observe(
    cluster: &Cluster,
    desired: &Rendered,
    namespace: &str,
    selector: &str,
) -> Result<Observed, ClusterError> {
    let mut objects = Vec::new();
    for o in &desired.objects {
        objects.push(cluster.get_object(o).await?);
    }
    let mut managed = Vec::new();
    for (api_version, kind) in MANAGED_KINDS {
        managed.extend(cluster.list_managed(api_version, kind, namespace).await?);
    }
    Ok(Observed {
        namespace: cluster.namespace(namespace).await?.unwrap_or_default(),
        objects,
        deployments: cluster.deployments(namespace, selector).await?,
        managed,
    })
}

async fn run_action(cluster: &Cluster, action: &Action) -> Result<(), ClusterError> {
    match action {
        Action::PatchNamespace {
            namespace, patch, ..
        } => cluster.patch_namespace(namespace, patch).await,
        Action::Apply { object, .. } => cluster.apply(object).await,
        Action::PatchDeployment {
            namespace,
            name,
            patch,
            ..
        } => cluster.patch_deployment(namespace, name, patch).await,
        Action::Delete {
            api_version,
            kind,
            namespace,
            name,
        } => cluster.delete(api_version, kind, namespace, name).await,
    }
}

/// Runs actions in order, printing each; on failure reports what was and was not applied.
pub async fn execute(
    cluster: &Cluster,
    actions: &[Action],
    out: &mut impl Write,
) -> Result<(), EnableError> {
    let mut applied = Vec::new();
    for (i, action) in actions.iter().enumerate() {
        tracing::info!("{}/{}: {action}", i + 1, actions.len());
        if let Err(cause) = run_action(cluster, action).await {
            tracing::warn!("{action} failed: {cause}");
            // Without an answer the request may still have reached the server, so that one
            // action is reported as unknown rather than claimed either way.
            let lost = matches!(cause, ClusterError::Unreachable { .. });
            let rest = if lost { i + 1 } else { i };
            return Err(EnableError::Partial {
                cause,
                applied,
                unknown: lost.then(|| action.to_string()),
                not_applied: actions[rest..].iter().map(ToString::to_string).collect(),
            });
        }
        let _ = writeln!(out, "  done: {action}");
        applied.push(action.to_string());
    }
    Ok(())
}

/// Waits until every selected Deployment has rolled out and all its pods run `istio-proxy`.
pub async fn wait(
    cluster: &Cluster,
    namespace: &str,
    selector: &str,
    timeout: Duration,
    out: &mut impl Write,
) -> Result<(), EnableError> {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let mut pending = Vec::new();
        let mut summary = Vec::new();
        for d in cluster.deployments(namespace, selector).await? {
            let name = d.metadata.name.clone().unwrap_or_default();
            let want = d.spec.replicas.unwrap_or(1);
            let status = d.status.clone().unwrap_or_default();
            let generation_seen = status.observed_generation >= d.metadata.generation;
            let updated = status.updated_replicas.unwrap_or(0);
            let pods = cluster.pods(namespace, &plan::pod_selector(&d)).await?;
            let ready = pods
                .iter()
                .filter(|p| {
                    let running =
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                    let proxy = p
                        .spec
                        .as_ref()
                        .is_some_and(|s| plan::proxy_container(s).is_some());
                    running && proxy
                })
                .count();
            let done = generation_seen
                && updated >= want
                && ready as i32 == want
                && pods.len() as i32 == want;
            summary.push(format!(
                "{name} {ready}/{want} pods running with istio-proxy"
            ));
            if !done {
                pending.push(name);
            }
        }
        let line = summary.join(", ");
        if line != last {
            let _ = writeln!(out, "  waiting: {line}");
            last = line;
        }
        if pending.is_empty() {
            let _ = writeln!(out, "  rolled out: every selected pod runs istio-proxy");
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(EnableError::Timeout(timeout.as_secs(), last));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
