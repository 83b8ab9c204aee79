//! `kubectl mesh enable`, one pass: [`load`] the config and flags, [`preflight`] the cluster,
//! [`choose`] where the filter goes (read only), render once, [`observe`] the cluster, plan
//! ([`crate::plan`], pure), [`apply`] the actions, and [`wait`] for the rollout. One file per
//! step; `disable` ([`crate::disable`]) shares apply and the error.

pub mod access;
pub mod apply;
pub mod choose;
pub mod load;
pub mod observe;
pub mod preflight;
pub mod wait;

pub use apply::{execute, DryRun};
pub use load::{load, Flags, Loaded};
pub use observe::MANAGED_KINDS;

use crate::cluster::{Cluster, ClusterError};
use crate::options::selector_text;
use crate::plan::{self, Action, PlanError};
use crate::render::{self, RenderError};
use serde_json::Value;
use std::io::Write;
use std::time::Duration;

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
    /// Rendering failed.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// An action failed after others had succeeded.
    #[error("{cause}\napplied:\n{}{}\nnot applied:\n{}\nfix the cause and run the same command again: it continues where it stopped", list(.applied), unknown_list(.unknown), list(.not_applied))]
    Partial {
        /// The failure.
        #[source]
        cause: ClusterError,
        /// Actions that took effect.
        applied: Vec<String>,
        /// The action whose answer was lost with the connection: the server may have applied it.
        unknown: Option<String>,
        /// Actions that did not take effect.
        not_applied: Vec<String>,
    },
    /// `--dry-run=server`: the API server refused one of the actions.
    #[error("{cause}\nthe API server's dry run refused: {action}\nnothing was changed (--dry-run=server)")]
    DryRunRefused {
        /// The refusal.
        #[source]
        cause: ClusterError,
        /// The refused action.
        action: String,
    },
    /// `--wait` ran out of time.
    #[error("every change was applied, but --wait timed out after {0}s: {1}\n  fix: inspect with kubectl get pods and kubectl mesh check")]
    Timeout(u64, String),
    /// Every change was applied, then `--wait` could not read the cluster.
    #[error("every change was applied, but --wait could not follow the rollout: {cause}\n  fix: follow it with kubectl mesh check --wait")]
    WaitFailed {
        /// What reading the cluster said.
        #[source]
        cause: ClusterError,
    },
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

/// What `enable` does besides rendering.
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings {
    /// `--dry-run`.
    pub dry_run: DryRun,
    /// `--wait` with its `--timeout`.
    pub wait: Option<(wait::WaitFor, Duration)>,
}

/// The pass. Progress goes to `out`; returns the objects the command applied (as the API server
/// answered; with `--dry-run=client`, as they would be sent), which `-o yaml|json` prints.
pub async fn run(
    cluster: &Cluster,
    mut loaded: Loaded,
    settings: Settings,
    out: &mut dyn Write,
) -> Result<Vec<Value>, EnableError> {
    let (facts, lines) = preflight::preflight(cluster, &loaded).await?;
    print(out, &lines);
    loaded.opts.istio_version = facts.istio;
    let lines = choose::choose(cluster, &mut loaded).await?;
    print(out, &lines);
    let (cfg, opts) = (&loaded.cfg, &loaded.opts);
    let rendered = render::render(cfg, opts)?;
    tracing::info!(
        "{}: {} objects for {:?} in namespace {} (selector {}), config hash {}",
        opts.source,
        rendered.objects.len(),
        opts.context,
        opts.namespace,
        selector_text(&opts.selector),
        rendered.config_hash
    );
    require(
        cluster,
        &access::enable_reads(&rendered, &opts.namespace),
        "enable",
    )
    .await?;
    let observed = observe::observe(cluster, &rendered, opts, facts.ossm.is_some()).await?;
    let selector = selector_text(&opts.selector);
    let actions = plan::plan_enable(
        &rendered,
        &opts.namespace,
        &selector,
        &observed,
        &now_rfc3339(),
    )?;
    tracing::info!("planned {} changes", actions.len());
    if settings.dry_run != DryRun::Client {
        require(cluster, &access::writes(&actions), "enable").await?;
    }
    if actions.is_empty() {
        let _ = writeln!(
            out,
            "nothing to change: namespace {} is already set up",
            opts.namespace
        );
    }
    let objects = match settings.dry_run {
        _ if actions.is_empty() => Vec::new(),
        DryRun::Client => {
            print_dry_run(&actions, out);
            return Ok(planned_objects(&actions));
        }
        DryRun::Server => {
            let _ = writeln!(
                out,
                "server dry run, the API server checks {} changes and stores none:",
                actions.len()
            );
            return execute(cluster, &actions, DryRun::Server, out).await;
        }
        DryRun::None => {
            let _ = writeln!(out, "applying {} changes:", actions.len());
            let objects = execute(cluster, &actions, DryRun::None, out).await?;
            let rolled = actions
                .iter()
                .any(|a| matches!(a, Action::PatchDeployment { .. }));
            if settings.wait.is_none() && rolled {
                let _ = writeln!(
                    out,
                    "pods are rolling: follow with --wait or `kubectl mesh check`"
                );
            }
            objects
        }
    };
    if let Some((what, timeout)) = settings.wait {
        // Everything is applied now: a failed read is not "nothing was changed".
        let hash = &rendered.config_hash;
        let waited = wait_for(cluster, opts, hash, &selector, what, timeout, out);
        match waited.await {
            Err(EnableError::Read(cause)) => return Err(EnableError::WaitFailed { cause }),
            other => other?,
        }
    }
    Ok(objects)
}

/// `--wait` after the changes: the rollout, then (when the user may read the proxies' stats)
/// each pod's proof that it runs the applied config.
async fn wait_for(
    cluster: &Cluster,
    opts: &crate::options::RenderOptions,
    config_hash: &str,
    selector: &str,
    mut what: wait::WaitFor,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<(), EnableError> {
    if what == wait::WaitFor::Filter {
        let proxy = access::Need {
            verb: "get",
            group: String::new(),
            resource: "pods/proxy".into(),
            namespace: opts.namespace.clone(),
            name: String::new(),
        };
        if !access::missing(cluster, &[proxy]).await?.is_empty() {
            let _ = writeln!(
                    out,
                    "note: you may not get pods/proxy in {}: --wait cannot read the proxies' stats, so it waits for the rollout only",
                    opts.namespace
                );
            what = wait::WaitFor::Rollout;
        }
    }
    wait::wait(
        cluster,
        &opts.namespace,
        selector,
        config_hash,
        what,
        timeout,
        out,
    )
    .await
}

/// Fails, listing them, when the user lacks any of `needs` (see [`access`]).
pub async fn require(
    cluster: &Cluster,
    needs: &[access::Need],
    doing: &str,
) -> Result<(), EnableError> {
    let missing = access::missing(cluster, needs).await?;
    match missing.is_empty() {
        true => Ok(()),
        false => Err(EnableError::Preflight(access::report(&missing, doing))),
    }
}

fn print(out: &mut dyn Write, lines: &[String]) {
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
}

/// `--dry-run=client`: the plan, one line per change.
pub fn print_dry_run(actions: &[Action], out: &mut dyn Write) {
    let _ = writeln!(out, "dry run, would apply {} changes:", actions.len());
    for a in actions {
        let _ = writeln!(out, "  - {a}");
    }
}

/// What `--dry-run=client -o yaml|json` prints: the objects as they would be sent (the applied
/// objects whole; for patches, the patch with the target's apiVersion, kind and name).
pub fn planned_objects(actions: &[Action]) -> Vec<Value> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Apply { object, .. } => Some(object.clone()),
            Action::PatchNamespace {
                namespace, patch, ..
            } => {
                let mut o = patch.clone();
                o["apiVersion"] = "v1".into();
                o["kind"] = "Namespace".into();
                o["metadata"]["name"] = namespace.as_str().into();
                Some(o)
            }
            Action::PatchDeployment {
                namespace,
                name,
                patch,
                ..
            } => {
                let mut o = patch.clone();
                o["apiVersion"] = "apps/v1".into();
                o["kind"] = "Deployment".into();
                o["metadata"]["name"] = name.as_str().into();
                o["metadata"]["namespace"] = namespace.as_str().into();
                Some(o)
            }
            Action::Delete { .. } => None,
        })
        .collect()
}

/// Now, RFC 3339, to the second (the restart annotation's value).
pub fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
