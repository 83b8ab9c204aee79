//! The commands that change or read a cluster's kubectl-mesh setup: `enable`, `check`,
//! `disable`. With `-o yaml|json`, standard output carries only the structured result; the
//! progress lines go to standard error.

use super::{connect, flags, print_objects};
use crate::check;
use crate::cli::{
    parse_selector, CheckArgs, Cli, CliError, DisableArgs, FilterArgs, Outcome, Output,
};
use crate::cluster::ClusterError;
use crate::delivery::{self, Module, Pull};
use crate::enable;
use crate::locate::{locate, LocateError};
use crate::options::Context;
use crate::render::{self, RenderError};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

/// `enable`: the one pass of [`crate::enable::run`].
pub async fn enable(
    cli: &Cli,
    args: &FilterArgs,
    wait: Option<crate::enable::wait::WaitFor>,
    timeout: u64,
    out: &mut impl Write,
) -> Result<Outcome, CliError> {
    let loaded = enable::load(&flags(cli, args))?;
    let cluster = connect(cli).await?;
    let settings = enable::Settings {
        dry_run: cli.dry_run,
        wait: wait.map(|w| (w, Duration::from_secs(timeout))),
    };
    match cli.output {
        None => {
            enable::run(&cluster, loaded, settings, out).await?;
        }
        Some(format) => {
            let objects = enable::run(&cluster, loaded, settings, &mut std::io::stderr()).await?;
            print_objects(&objects, format, out)?;
        }
    }
    Ok(Outcome::Success)
}

/// `check`: the checklist; exit 1 when a check fails.
pub async fn check(cli: &Cli, args: &CheckArgs, out: &mut impl Write) -> Result<Outcome, CliError> {
    let cluster = connect(cli).await?;
    // With -f, compare the applied config with the file (same digest enable writes).
    let desired = match &args.file {
        Some(file) => {
            let cfg = render::load_config(file)?;
            let module = match &args.module_url {
                Some(url) => delivery::remote(
                    url,
                    args.module_sha256.as_deref(),
                    Pull::default(),
                    crate::module::EMBEDDED,
                )
                .map_err(RenderError::from)?,
                None => Module::ConfigMap(crate::module::EMBEDDED.to_vec()),
            };
            Some((cfg.namespace.clone(), render::config_hash(&cfg, &module)?))
        }
        None => None,
    };
    let gateway = args.envoy_context == Some(Context::Gateway);
    // Where enable put the objects: found by the instance's name; without it, the config's
    // namespace, else the kubeconfig's.
    let fallback = desired
        .as_ref()
        .map(|(n, _)| n.clone())
        .unwrap_or_else(|| cluster.default_namespace().to_owned());
    let namespace = match locate(&cluster, &args.name, cli.namespace.as_deref(), &fallback).await {
        Ok(located) => {
            if let Some(how) = &located.how {
                match cli.output {
                    None => drop(writeln!(out, "{how}")),
                    Some(_) => eprintln!("{how}"),
                }
            }
            located.namespace
        }
        // An unreachable API is the checklist's first failure, not an error.
        Err(LocateError::Cluster(ClusterError::Unreachable { .. })) => fallback,
        Err(e) => return Err(e.into()),
    };
    let hash = desired.map(|(_, h)| h);
    tracing::info!("checking namespace {namespace} (gateway: {gateway})");
    let start = std::time::Instant::now();
    let mut last = String::new();
    let checks = loop {
        let checks = checklist(&cluster, args, &namespace, hash.clone(), gateway).await?;
        let failing: Vec<&str> = checks
            .iter()
            .filter(|c| c.status == check::Status::Fail)
            .map(|c| c.description.as_str())
            .collect();
        let timed_out = start.elapsed() >= Duration::from_secs(args.timeout);
        if !args.wait || failing.is_empty() || timed_out {
            break checks;
        }
        let line = format!(
            "check --wait: {} failing ({}); checking again",
            failing.len(),
            failing.join("; ")
        );
        if line != last {
            eprintln!("{line}");
            last = line;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let text = match cli.output {
        Some(Output::Json) => check::to_json(&checks) + "\n",
        Some(Output::Yaml) => check::to_yaml(&checks)?,
        None => check::to_text(&checks),
    };
    let _ = write!(out, "{text}");
    Ok(outcome(&checks))
}

/// `disable`: remove exactly what one `enable` added, where it added it.
pub async fn disable(
    cli: &Cli,
    args: &DisableArgs,
    out: &mut impl Write,
) -> Result<Outcome, CliError> {
    let cluster = connect(cli).await?;
    let fallback = cluster.default_namespace().to_owned();
    let located = locate(&cluster, &args.name, cli.namespace.as_deref(), &fallback).await?;
    let mut stderr = std::io::stderr();
    let progress: &mut dyn Write = match cli.output {
        None => out,
        Some(_) => &mut stderr,
    };
    if let Some(how) = &located.how {
        let _ = writeln!(progress, "{how}");
    }
    let objects = crate::disable::run(
        &cluster,
        &located.namespace,
        &args.name,
        cli.dry_run,
        progress,
    )
    .await?;
    if let Some(format) = cli.output {
        print_objects(&objects, format, out)?;
    }
    Ok(Outcome::Success)
}

/// One run of the checklist for `namespace`.
async fn checklist(
    cluster: &crate::cluster::Cluster,
    args: &CheckArgs,
    namespace: &str,
    hash: Option<String>,
    gateway: bool,
) -> Result<Vec<check::Check>, CliError> {
    let mut input = check::gather(cluster, namespace, &args.name, hash, gateway).await?;
    // Without an explicit selector, check the workloads the applied filter selects.
    let selector = match &args.selector {
        Some(s) if !s.is_empty() => s.clone(),
        _ => applied_selector(&input.managed),
    };
    let wanted = parse_selector(&selector)?;
    input.workloads.retain(|w| {
        let labels = crate::plan::template_labels(&w.deployment);
        let deployment_labels = w.deployment.metadata.labels.clone().unwrap_or_default();
        wanted
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v) || deployment_labels.get(k) == Some(v))
    });
    check::gather_proxy_stats(cluster, &mut input).await;
    Ok(check::evaluate(&input))
}

/// The exit of a checklist: could not run when a fatal check failed (the API server did not
/// answer: nothing was checked), checks failed when any did, else success.
fn outcome(checks: &[check::Check]) -> Outcome {
    let failed = |c: &&check::Check| c.status == check::Status::Fail;
    match (
        checks
            .iter()
            .filter(failed)
            .any(|c| c.id == "kubernetes-api.reachable"),
        checks.iter().any(|c| failed(&c)),
    ) {
        (true, _) => Outcome::CouldNotRun,
        (false, true) => Outcome::ChecksFailed,
        (false, false) => Outcome::Success,
    }
}

/// The selector of the applied filter object (its `workloadSelector` or `selector`).
fn applied_selector(managed: &[serde_json::Value]) -> String {
    for o in managed {
        let s = &o["spec"];
        for labels in [
            &s["selector"]["matchLabels"],
            &s["workloadSelector"]["labels"],
        ] {
            if let Ok(map) = serde_json::from_value::<BTreeMap<String, String>>(labels.clone()) {
                if !map.is_empty() {
                    return crate::options::selector_text(&map);
                }
            }
        }
    }
    String::new()
}
