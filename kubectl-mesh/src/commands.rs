//! One function per subcommand: each reads its flags, calls the pure planning or rendering code
//! and the thin cluster client, and prints. `cli::run` dispatches here.

use crate::check;
use crate::cli::{
    parse_selector, CheckArgs, Cli, CliError, Command, FilterArgs, ImportArgs, MigrateArgs,
    ModuleCommand, Outcome, Output, RunArgs, VerifyArgs, GATEWAY_NAMESPACE,
};
use crate::cluster::{self, Cluster};
use crate::delivery::{self, Pull};
use crate::enable;
use crate::import;
use crate::migrate;
use crate::render::{self, Context, GatewayOptions, Module, RenderError};
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
    let loaded = enable::load(&flags(cli, args))?;
    let rendered = render::render(&loaded.cfg, &loaded.opts)?;
    let _ = write!(
        out,
        "{}",
        render::render_text(&rendered, &loaded.opts, cli.output == Output::Json)
    );
    Ok(Outcome::Success)
}

/// `enable`: the one pass of [`crate::enable::run`].
pub async fn enable(
    cli: &Cli,
    args: &FilterArgs,
    wait: bool,
    timeout: u64,
    out: &mut impl Write,
) -> Result<Outcome, CliError> {
    let loaded = enable::load(&flags(cli, args))?;
    let cluster = connect(cli).await?;
    let settings = enable::Settings {
        dry_run: cli.dry_run,
        wait: wait.then(|| Duration::from_secs(timeout)),
    };
    enable::run(&cluster, loaded, settings, out).await?;
    Ok(Outcome::Success)
}

/// The render flags as enable's [`enable::Flags`].
fn flags(cli: &Cli, args: &FilterArgs) -> enable::Flags {
    enable::Flags {
        file: args.file.clone(),
        namespace: cli.namespace.clone(),
        selector: args.selector.clone(),
        context: args.envoy_context,
        api: args.api,
        module_url: args.module_url.clone(),
        module_sha256: args.module_sha256.clone(),
        pull: Pull {
            policy: args.image_pull_policy,
            secret: args.image_pull_secret.clone(),
        },
        name: args.name.clone(),
        gateway_deployment: args.gateway_deployment.clone(),
        gateway: GatewayOptions {
            existing: args.gateway.clone(),
            http_port: args.http_port,
            https_port: args.https_port,
            tls_secret: args.tls_secret.clone(),
        },
        istio_version: args.istio_version.clone(),
    }
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
    crate::disable::run(&cluster, &namespace, cli.dry_run, out).await?;
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
