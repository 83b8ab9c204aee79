//! Step 7: the planned actions, in order, each printed as it is done; on a failure, what was
//! and was not applied. `--dry-run=server` sends each one as the API server's dry run
//! (validated, admitted and authorized, nothing stored); `--dry-run=client` sends nothing.

use super::EnableError;
use crate::cluster::{Cluster, ClusterError};
use crate::plan::Action;
use serde_json::Value;
use std::io::Write;

/// `--dry-run`, as kubectl spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DryRun {
    /// Change the cluster.
    #[default]
    None,
    /// Print what would change; send no write.
    Client,
    /// Send every write as the API server's dry run (`dryRun=All`): the server validates,
    /// admits and authorizes it, and stores nothing.
    Server,
}

impl DryRun {
    /// How it is spelt on the command line.
    pub fn flag(self) -> &'static str {
        match self {
            DryRun::None => "none",
            DryRun::Client => "client",
            DryRun::Server => "server",
        }
    }
}

/// One action against the cluster; the object the server answered with, if any.
async fn run_action(
    cluster: &Cluster,
    action: &Action,
    dry_run: bool,
) -> Result<Option<Value>, ClusterError> {
    match action {
        Action::PatchNamespace {
            namespace, patch, ..
        } => cluster
            .patch_namespace(namespace, patch, dry_run)
            .await
            .map(Some),
        Action::Apply { object, .. } => cluster.apply(object, dry_run).await.map(Some),
        Action::PatchDeployment {
            namespace,
            name,
            patch,
            ..
        } => cluster
            .patch_deployment(namespace, name, patch, dry_run)
            .await
            .map(Some),
        Action::Delete {
            api_version,
            kind,
            namespace,
            name,
        } => cluster
            .delete(api_version, kind, namespace, name, dry_run)
            .await
            .map(|()| None),
    }
}

/// Runs `actions` in order (as the API server's dry run with [`DryRun::Server`]), printing
/// each; on failure reports what was and was not applied. Returns the objects the server
/// answered with (`-o yaml|json` prints them).
pub async fn execute(
    cluster: &Cluster,
    actions: &[Action],
    dry_run: DryRun,
    out: &mut dyn Write,
) -> Result<Vec<Value>, EnableError> {
    let server_dry_run = dry_run == DryRun::Server;
    let mut applied = Vec::new();
    let mut answers = Vec::new();
    for (i, action) in actions.iter().enumerate() {
        tracing::info!("{}/{}: {action}", i + 1, actions.len());
        match run_action(cluster, action, server_dry_run).await {
            Ok(answer) => answers.extend(answer),
            Err(cause) => {
                tracing::warn!("{action} failed: {cause}");
                if server_dry_run {
                    return Err(EnableError::DryRunRefused {
                        cause,
                        action: action.to_string(),
                    });
                }
                // Without an answer the request may still have reached the server, so that
                // one action is reported as unknown rather than claimed either way.
                let lost = matches!(cause, ClusterError::Unreachable { .. });
                let rest = if lost { i + 1 } else { i };
                return Err(EnableError::Partial {
                    cause,
                    applied,
                    unknown: lost.then(|| action.to_string()),
                    not_applied: actions[rest..].iter().map(ToString::to_string).collect(),
                });
            }
        }
        let verb = if server_dry_run { "accepted" } else { "done" };
        let _ = writeln!(out, "  {verb}: {action}");
        applied.push(action.to_string());
    }
    Ok(answers)
}
