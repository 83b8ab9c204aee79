//! One function per subcommand: each reads its flags, calls the pure planning or rendering code
//! and the thin cluster client, and prints. [`run`] dispatches.

pub mod complete;
mod setup;

pub use setup::{check, disable, enable};

use crate::cli::{
    Cli, CliError, Command, FilterArgs, ImportArgs, MigrateArgs, ModuleCommand, Outcome, Output,
    RunArgs, VerifyArgs,
};
use crate::cluster::Cluster;
use crate::delivery::Pull;
use crate::enable;
use crate::import;
use crate::migrate;
use crate::output::SerializeError;
use crate::render::{self, GatewayOptions, RenderError};
use crate::verify;
use clap::CommandFactory;
use serde_json::Value;
use std::io::Write;

/// Runs the parsed command, writing to `out`: one function per subcommand in
/// [`crate::commands`].
pub async fn run(cli: Cli, out: &mut impl Write) -> Result<Outcome, CliError> {
    match &cli.command {
        Command::Version => version(&cli, out),
        Command::Completion { shell } => completion(*shell, out),
        Command::Complete { args } => {
            complete::print(args, out);
            Ok(Outcome::Success)
        }
        Command::Render(args) => render(&cli, args, out),
        Command::Enable {
            filter,
            wait,
            timeout,
        } => enable(&cli, filter, *wait, *timeout, out).await,
        Command::Check(args) => check(&cli, args, out).await,
        Command::Disable(args) => disable(&cli, args, out).await,
        Command::Migrate(args) => migrate(&cli, args, out),
        Command::ImportEnvoy(args) => import_envoy(&cli, args, out),
        Command::Run(args) => run_local(args, cli.verbose > 0, out).await,
        Command::Module { command } => module(&cli, command, out).await,
        Command::Verify(args) => verify(&cli, args, out).await,
    }
}

/// `version`: the plugin version and the embedded module's digest (`-o`: as data).
pub fn version(cli: &Cli, out: &mut impl Write) -> Result<Outcome, CliError> {
    let module = crate::module::EMBEDDED;
    let sha = (!module.is_empty()).then(|| crate::module::sha256_hex(module));
    if let Some(format) = cli.output {
        let v = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "module": sha.as_ref().map(|s| serde_json::json!({
                "sha256": format!("sha256:{s}"), "size": module.len(),
            })),
        });
        let _ = write!(out, "{}", structured(&v, format)?);
        return Ok(Outcome::Success);
    }
    let digest = match sha {
        None => "none (built without `make wasm`)".to_owned(),
        Some(sha) => format!("sha256:{sha} ({} bytes)", module.len()),
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
        render::render_text(&rendered, &loaded.opts, cli.output == Some(Output::Json))?
    );
    Ok(Outcome::Success)
}

/// The render flags as enable's [`enable::Flags`].
pub(crate) fn flags(cli: &Cli, args: &FilterArgs) -> enable::Flags {
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

/// `migrate`: `--check` finding something to migrate exits 1, like a failed check.
pub fn migrate(cli: &Cli, args: &MigrateArgs, out: &mut impl Write) -> Result<Outcome, CliError> {
    let opts = migrate::Options {
        files: args.files.clone(),
        in_place: args.in_place,
        check: args.check,
        json: cli.output == Some(Output::Json),
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
            json: cli.output == Some(Output::Json),
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
    let json = cli.output.is_some();
    let mut buf = Vec::new();
    match command {
        ModuleCommand::Digest => crate::oci::push::print_digests(module, json, &mut buf),
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
            crate::oci::push::push(&opts, module, &mut buf).await?;
        }
    }
    let _ = out.write_all(&reformat(&buf, cli.output)?);
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
        json: cli.output.is_some(),
        verbose: cli.verbose > 0,
    };
    let mut buf = Vec::new();
    let same = verify::run(&opts, cluster.as_ref(), &mut buf).await;
    let _ = out.write_all(&reformat(&buf, cli.output)?);
    Ok(match same? {
        true => Outcome::Success,
        false => Outcome::ChecksFailed,
    })
}

/// `value` as `-o yaml|json` prints it.
pub fn structured(value: &Value, format: Output) -> Result<String, SerializeError> {
    match format {
        Output::Json => Ok(format!("{value:#}\n")),
        Output::Yaml => crate::output::yaml("the output", value),
    }
}

/// Objects as `kubectl get -o yaml|json` prints several: YAML documents, or one `v1` `List`.
pub fn print_objects(
    objects: &[Value],
    format: Output,
    out: &mut impl Write,
) -> Result<(), SerializeError> {
    let text = match format {
        Output::Json => render::to_json(objects) + "\n",
        Output::Yaml => render::to_yaml(objects)?,
    };
    let _ = write!(out, "{text}");
    Ok(())
}

/// What a command printed as JSON (with `-o`), in the format asked for: `-o yaml` gets the same
/// data as YAML documents. Text (no `-o`) and anything that is not JSON pass unchanged.
fn reformat(printed: &[u8], format: Option<Output>) -> Result<Vec<u8>, SerializeError> {
    if format != Some(Output::Yaml) {
        return Ok(printed.to_vec());
    }
    let docs: Result<Vec<Value>, _> = serde_json::Deserializer::from_slice(printed)
        .into_iter::<Value>()
        .collect();
    match docs {
        Ok(docs) if !docs.is_empty() => Ok(render::to_yaml(&docs)?.into_bytes()),
        _ => Ok(printed.to_vec()),
    }
}

async fn connect(cli: &Cli) -> Result<Cluster, CliError> {
    Ok(crate::cluster::connect(cli.kubeconfig.as_deref(), cli.context.as_deref()).await?)
}
