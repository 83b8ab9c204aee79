//! One function per subcommand: each reads its flags, calls the pure planning or rendering code
//! and the thin cluster client, and prints. `cli::run` dispatches here.

use crate::check;
use crate::cli::{
    parse_selector, CheckArgs, Cli, CliError, Command, FilterArgs, ImportArgs, MigrateArgs,
    ModuleCommand, Outcome, Output, RunArgs, VerifyArgs, GATEWAY_NAMESPACE,
};
use crate::cluster::{self, Cluster};
use crate::delivery::{self, Pull};
use crate::enable::{self, EnableError};
use crate::import;
use crate::migrate;
use crate::plan;
use crate::render::{self, Context, GatewayOptions, Module, RenderError, RenderOptions, Rendered};
use crate::verify;
use clap::CommandFactory;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

/// Runs the parsed command, writing to `out`: one function per subcommand in
/// [`crate::commands`].
pub async fn run(cli: Cli, out: &mut impl Write) -> Result<Outcome, CliError> {
    match &cli.command {
        Command::Version => version(out),
        Command::Completion { shell } => completion(*shell, out),
        Command::Render(args) => render(&cli, args, out),
        Command::Enable {
            filter,
            wait,
            timeout,
        } => enable(&cli, filter, *wait, *timeout, out).await,
        Command::Check(args) => check(&cli, args, out).await,
        Command::Disable => disable(&cli, out).await,
        Command::Migrate(args) => migrate(&cli, args, out),
        Command::ImportEnvoy(args) => import_envoy(&cli, args, out),
        Command::Run(args) => run_local(args, cli.verbose > 0, out).await,
        Command::Module { command } => module(&cli, command, out).await,
        Command::Verify(args) => verify(&cli, args, out).await,
    }
}

/// `version`: the plugin version and the embedded module's digest.
pub fn version(out: &mut impl Write) -> Result<Outcome, CliError> {
    let module = crate::module::EMBEDDED;
    let digest = if module.is_empty() {
        "none (built without `make wasm`)".to_owned()
    } else {
        format!(
            "sha256:{} ({} bytes)",
            crate::module::sha256_hex(module),
            module.len()
        )
    };
    let _ = writeln!(
        out,
        "kubectl-mesh {}\nfilter module: {digest}",
        env!("CARGO_PKG_VERSION")
    );
    Ok(Outcome::Success)
}

/// `completion`: a shell completion script.
pub fn completion(shell: clap_complete::Shell, out: &mut impl Write) -> Result<Outcome, CliError> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "kubectl-mesh", out);
    Ok(Outcome::Success)
}

/// `render`: every object `enable` would apply, offline.
pub fn render(cli: &Cli, args: &FilterArgs, out: &mut impl Write) -> Result<Outcome, CliError> {
    let (_, opts, rendered) = prepare(cli.namespace.as_deref(), args)?;
    let _ = write!(
        out,
        "{}",
        render::render_text(&rendered, &opts, cli.output == Output::Json)
    );
    Ok(Outcome::Success)
}

/// `enable`: preflight, plan against what the cluster has, apply in order, optionally wait.
pub async fn enable(
    cli: &Cli,
    args: &FilterArgs,
    wait: bool,
    timeout: u64,
    out: &mut impl Write,
) -> Result<Outcome, CliError> {
    let (cfg, mut opts, mut rendered) = prepare(cli.namespace.as_deref(), args)?;
    let cluster = connect(cli).await?;
    let line = enable::preflight(
        &cluster,
        &opts.namespace,
        opts.api,
        opts.context == Context::Gateway,
    )
    .await?;
    let _ = writeln!(out, "{line}");
    if args.istio_version.is_none() {
        // Best effort: reading istiod needs rights a user who may apply the objects need
        // not have; then the newest release is assumed and said so.
        let (detected, why) = match enable::istio_version(&cluster).await {
            Ok(Some(v)) => (Some(v), "istiod's image tag".to_owned()),
            Ok(None) => (
                None,
                "no app=istiod Deployment with a release tag found, so the newest known".to_owned(),
            ),
            Err(e) => (
                None,
                format!("istiod's version could not be read ({e}), so the newest known"),
            ),
        };
        let (major, minor) = detected.unwrap_or(render::NEWEST_ISTIO);
        let _ = writeln!(
            out,
            "istio: objects for Istio {major}.{minor} ({why}; --istio-version overrides)"
        );
        if (major, minor) != opts.istio_version {
            opts.istio_version = (major, minor);
            rendered = render::render(&cfg, &opts)?;
        }
    }
    if let Some(line) = enable::choose_gateway(&cluster, &cfg, &mut opts, &mut rendered).await? {
        let _ = writeln!(out, "{line}");
    }
    let selector = selector_text(&opts.selector);
    let observed = enable::observe(&cluster, &rendered, &opts.namespace, &selector)
        .await
        .map_err(EnableError::from)?;
    let actions = plan::plan_enable(
        &rendered,
        &opts.namespace,
        &selector,
        &observed,
        &now_rfc3339(),
    )
    .map_err(EnableError::from)?;
    tracing::info!("planned {} changes", actions.len());
    if actions.is_empty() {
        let _ = writeln!(
            out,
            "nothing to change: namespace {} is already set up",
            opts.namespace
        );
    } else if cli.dry_run {
        print_dry_run(&actions, out);
        return Ok(Outcome::Success);
    } else {
        let _ = writeln!(out, "applying {} changes:", actions.len());
        enable::execute(&cluster, &actions, out).await?;
        if !wait
            && actions
                .iter()
                .any(|a| matches!(a, plan::Action::PatchDeployment { .. }))
        {
            let _ = writeln!(
                out,
                "pods are rolling: follow with --wait or `kubectl mesh check`"
            );
        }
    }
    if wait {
        enable::wait(
            &cluster,
            &opts.namespace,
            &selector,
            Duration::from_secs(timeout),
            out,
        )
        .await?;
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
    // Where enable put the objects: the gateway's namespace, else the config's.
    let namespace = cli
        .namespace
        .clone()
        .or_else(|| gateway.then(|| GATEWAY_NAMESPACE.to_owned()))
        .or_else(|| desired.as_ref().map(|(n, _)| n.clone()))
        .unwrap_or_else(|| cluster.default_namespace().to_owned());
    let hash = desired.map(|(_, h)| h);
    tracing::info!("checking namespace {namespace} (gateway: {gateway})");
    let mut input = check::gather(&cluster, &namespace, "", hash, gateway).await?;
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
    check::gather_proxy_stats(&cluster, &mut input).await;
    let checks = check::evaluate(&input);
    let text = match cli.output {
        Output::Json => check::to_json(&checks) + "\n",
        Output::Yaml => check::to_text(&checks),
    };
    let _ = write!(out, "{text}");
    Ok(
        match checks.iter().any(|c| c.status == check::Status::Fail) {
            true => Outcome::ChecksFailed,
            false => Outcome::Success,
        },
    )
}

/// `disable`: remove exactly what `enable` added to the namespace.
pub async fn disable(cli: &Cli, out: &mut impl Write) -> Result<Outcome, CliError> {
    let cluster = connect(cli).await?;
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| cluster.default_namespace().to_owned());
    let Some(ns_obj) = cluster
        .namespace(&namespace)
        .await
        .map_err(EnableError::from)?
    else {
        return Err(EnableError::Preflight(format!("namespace {namespace} does not exist")).into());
    };
    let mut managed = Vec::new();
    for (av, kind) in enable::MANAGED_KINDS {
        managed.extend(
            cluster
                .list_managed(av, kind, &namespace)
                .await
                .map_err(EnableError::from)?,
        );
    }
    let deployments = cluster
        .deployments(&namespace, "")
        .await
        .map_err(EnableError::from)?;
    let actions = plan::plan_disable(&ns_obj, &managed, &deployments);
    if actions.is_empty() {
        let _ = writeln!(
            out,
            "nothing to change: kubectl-mesh added nothing to namespace {namespace}"
        );
    } else if cli.dry_run {
        print_dry_run(&actions, out);
    } else {
        let _ = writeln!(out, "removing {} things kubectl-mesh added:", actions.len());
        enable::execute(&cluster, &actions, out).await?;
    }
    Ok(Outcome::Success)
}

/// `migrate`: `--check` finding something to migrate exits 1, like a failed check.
pub fn migrate(cli: &Cli, args: &MigrateArgs, out: &mut impl Write) -> Result<Outcome, CliError> {
    let opts = migrate::Options {
        files: args.files.clone(),
        in_place: args.in_place,
        check: args.check,
        json: cli.output == Output::Json,
    };
    Ok(match migrate::run(&opts, out, &mut std::io::stderr())? {
        migrate::Status::Done => Outcome::Success,
        migrate::Status::NeedsMigration => Outcome::ChecksFailed,
    })
}

/// `import-envoy`: a standalone Envoy config (and Ingress) as a MeshConfig.
pub fn import_envoy(
    cli: &Cli,
    args: &ImportArgs,
    out: &mut impl Write,
) -> Result<Outcome, CliError> {
    import::run(
        &import::Options {
            envoy_file: args.file.clone(),
            ingress_file: args.ingress.clone(),
            envoy_service: args.envoy_service.clone(),
            namespace: cli.namespace.clone(),
            listener: args.listener.clone(),
            strict: args.strict,
            json: cli.output == Output::Json,
        },
        out,
        &mut std::io::stderr(),
    )?;
    Ok(Outcome::Success)
}

/// `run`: the filter with the config in a local Envoy; exits with Envoy's status.
pub async fn run_local(
    args: &RunArgs,
    verbose: bool,
    out: &mut impl Write,
) -> Result<Outcome, CliError> {
    let code = crate::run::run(
        &crate::run::RunOptions {
            file: args.file.clone(),
            upstreams: args.upstreams.clone(),
            port: args.port,
            envoy: args.envoy.clone(),
            print_config: args.print_config,
            verbose,
        },
        out,
    )
    .await?;
    Ok(match code {
        0 => Outcome::Success,
        code => Outcome::Exit(code),
    })
}

/// `module push` and `module digest`: the embedded module as an OCI image.
pub async fn module(
    cli: &Cli,
    command: &ModuleCommand,
    out: &mut impl Write,
) -> Result<Outcome, CliError> {
    let module = crate::module::EMBEDDED;
    if module.is_empty() {
        return Err(RenderError::NoModule.into());
    }
    let json = cli.output == Output::Json;
    match command {
        ModuleCommand::Digest => crate::oci::push::print_digests(module, json, out),
        ModuleCommand::Push(args) => {
            let password = match args.password_stdin {
                true => Some(crate::oci::push::read_password(std::io::stdin().lock())?),
                false => None,
            };
            let opts = crate::oci::push::PushOptions {
                reference: args.reference.clone(),
                username: args.username.clone(),
                password,
                plain_http: args.plain_http,
                json,
            };
            crate::oci::push::push(&opts, module, out).await?;
        }
    }
    Ok(Outcome::Success)
}

/// `verify`: exit 1 when the two sides differ (or something besides the config's hosts
/// changed).
pub async fn verify(
    cli: &Cli,
    args: &VerifyArgs,
    out: &mut impl Write,
) -> Result<Outcome, CliError> {
    let cluster = match &args.pod {
        Some(_) => Some(connect(cli).await?),
        None => None,
    };
    let opts = verify::Options {
        file: args.file.clone(),
        ingress: args.ingress.clone(),
        envoy_service: args.envoy_service.clone(),
        config: args.config.clone(),
        listener: args.listener.clone(),
        requests: args.requests.clone(),
        namespace: cli.namespace.clone(),
        proxy_dump: args.proxy_dump.clone(),
        pod: args.pod.clone(),
        envoy_context: args.envoy_context,
        envoy: args.envoy.clone(),
        json: cli.output == Output::Json,
        verbose: cli.verbose > 0,
    };
    Ok(match verify::run(&opts, cluster.as_ref(), out).await? {
        true => Outcome::Success,
        false => Outcome::ChecksFailed,
    })
}

async fn connect(cli: &Cli) -> Result<Cluster, CliError> {
    Ok(cluster::connect(cli.kubeconfig.as_deref(), cli.context.as_deref()).await?)
}

fn print_dry_run(actions: &[plan::Action], out: &mut impl Write) {
    let _ = writeln!(out, "dry run, would apply {} changes:", actions.len());
    for a in actions {
        let _ = writeln!(out, "  - {a}");
    }
}

fn selector_text(selector: &BTreeMap<String, String>) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads the config and renders it with the flags; the namespace defaults to the gateway's
/// (`istio-system`) for the gateway and to the config's for sidecars.
fn prepare(
    cli_ns: Option<&str>,
    args: &FilterArgs,
) -> Result<(mesh_core::MeshConfig, RenderOptions, Rendered), CliError> {
    let cfg = render::load_config(&args.file)?;
    let mut selector = match &args.selector {
        Some(s) => parse_selector(s)?,
        None => BTreeMap::new(),
    };
    if selector.is_empty() && args.envoy_context == Context::Gateway {
        selector.insert("istio".into(), "ingressgateway".into());
    }
    let pull = Pull {
        policy: args.image_pull_policy,
        secret: args.image_pull_secret.clone(),
    };
    let module = match &args.module_url {
        Some(url) => delivery::remote(
            url,
            args.module_sha256.as_deref(),
            pull,
            crate::module::EMBEDDED,
        )
        .map_err(RenderError::from)?,
        None => {
            delivery::check_configmap(&pull).map_err(RenderError::from)?;
            Module::ConfigMap(crate::module::EMBEDDED.to_vec())
        }
    };
    // The gateway's objects live where the gateway runs; a sidecar's where its workload runs.
    let default_ns = match args.envoy_context {
        Context::Gateway => GATEWAY_NAMESPACE.to_owned(),
        _ => cfg.namespace.clone(),
    };
    let opts = RenderOptions {
        name: args.name.clone(),
        namespace: cli_ns.map_or(default_ns, str::to_owned),
        selector,
        context: args.envoy_context,
        api: args.api,
        module,
        gateway_deployment: args.gateway_deployment.clone(),
        gateway: GatewayOptions {
            existing: args.gateway.clone(),
            http_port: args.http_port,
            https_port: args.https_port,
            tls_secret: args.tls_secret.clone(),
        },
        source: args.file.display().to_string(),
        istio_version: match &args.istio_version {
            Some(v) => render::parse_istio_version(v).ok_or_else(|| {
                CliError::Usage(format!(
                    "--istio-version `{v}` must be MAJOR.MINOR of an Istio release, e.g. --istio-version 1.27"
                ))
            })?,
            None => render::NEWEST_ISTIO,
        },
    };
    let rendered = render::render(&cfg, &opts)?;
    tracing::info!(
        "{}: {} objects for {:?} in namespace {} (selector {}), config hash {}",
        opts.source,
        rendered.objects.len(),
        opts.context,
        opts.namespace,
        selector_text(&opts.selector),
        rendered.config_hash
    );
    Ok((cfg, opts, rendered))
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
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
                    return selector_text(&map);
                }
            }
        }
    }
    String::new()
}
