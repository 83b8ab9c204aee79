//! `kubectl mesh disable`: find what `enable` added, plan its removal ([`crate::plan`], pure) and
//! apply it with enable's [`crate::enable::execute`].

use crate::cluster::Cluster;
use crate::enable::{self, DryRun, EnableError};
use crate::plan;
use serde_json::Value;
use std::io::Write;

/// Removes what the `enable` of instance `name` added to `namespace`. Progress goes to `out`;
/// returns the objects the server answered with (patched Deployments and namespace).
pub async fn run(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    dry_run: DryRun,
    out: &mut dyn Write,
) -> Result<Vec<Value>, EnableError> {
    enable::require(
        cluster,
        &enable::access::disable_reads(namespace),
        "disable",
    )
    .await?;
    let Some(ns_obj) = cluster.namespace(namespace).await? else {
        return Err(EnableError::Preflight(format!(
            "namespace {namespace} does not exist"
        )));
    };
    let (managed, hidden) = enable::observe::managed(cluster, namespace).await?;
    for note in hidden {
        let _ = writeln!(out, "{note}");
    }
    let deployments = cluster.deployments(namespace, "").await?;
    let actions = plan::plan_disable(&ns_obj, &managed, &deployments, name);
    if actions.is_empty() {
        let _ = writeln!(
            out,
            "nothing to change: kubectl-mesh instance {name} added nothing to namespace {namespace}"
        );
        return Ok(Vec::new());
    }
    if dry_run != DryRun::Client {
        enable::require(cluster, &enable::access::writes(&actions), "disable").await?;
    }
    match dry_run {
        DryRun::Client => {
            enable::print_dry_run(&actions, out);
            Ok(enable::planned_objects(&actions))
        }
        DryRun::Server => {
            let _ = writeln!(
                out,
                "server dry run, the API server checks {} changes and stores none:",
                actions.len()
            );
            enable::execute(cluster, &actions, dry_run, out).await
        }
        DryRun::None => {
            let _ = writeln!(out, "removing {} things kubectl-mesh added:", actions.len());
            enable::execute(cluster, &actions, dry_run, out).await
        }
    }
}
