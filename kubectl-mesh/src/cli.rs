//! Command line (clap derive) and dispatch of `version`, `completion`, `render`, `enable`, `check`, `disable`, `migrate`, `run`, `import-envoy`.

use crate::check;
use crate::cluster::{self, ClusterError};
use crate::enable::{self, EnableError};
use crate::import::{self, ImportError};
use crate::migrate::{self, MigrateError};
use crate::plan;
use crate::render::{
    self, Api, Context, GatewayOptions, Module, RenderError, RenderOptions, Rendered,
};
use crate::run::{self, RunError};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Move routing, CORS and header logic into an Istio mesh as a Wasm filter.
#[derive(Debug, Parser)]
#[command(name = "kubectl-mesh", bin_name = "kubectl mesh", version, about)]
pub struct Cli {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace of the objects (default: the config's `namespace`, then the context's).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Output format for printed objects and check results.
    #[arg(short = 'o', long, global = true, value_enum, default_value = "yaml")]
    pub output: Output,
    /// Show what would change without changing anything.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// YAML documents (check: a text checklist).
    Yaml,
    /// JSON (a v1 List for objects).
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the plugin version and the embedded filter's sha256.
    Version,
    /// Print a shell completion script.
    Completion {
        /// Shell to generate for.
        shell: clap_complete::Shell,
    },
    /// Print every object `enable` would apply (offline).
    Render(FilterArgs),
    /// Apply the filter to the selected workloads.
    Enable {
        /// What to apply.
        #[command(flatten)]
        filter: FilterArgs,
        /// Wait until every selected pod runs with istio-proxy.
        #[arg(long)]
        wait: bool,
        /// Seconds `--wait` waits.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Check the cluster, Istio and the selected workloads.
    Check(CheckArgs),
    /// Remove exactly what `enable` added.
    Disable,
    /// Upgrade old workload and Ingress manifests that Kubernetes 1.16+ rejects (offline).
    ///
    /// Deployment/DaemonSet/ReplicaSet/StatefulSet go to apps/v1 (with spec.selector), Ingress
    /// to networking.k8s.io/v1. Plain YAML and Helm templates (files containing `{{`).
    /// `--check` prints a diff and exits 1 when something needs migrating (for CI).
    Migrate(MigrateArgs),
    /// Run the filter with this config in a local Envoy, service ports mapped to local addresses.
    Run(RunArgs),
    /// Turn a standalone Envoy's config (and the Ingress in front of it) into a MeshConfig.
    ///
    /// Prints the MeshConfig; everything it cannot express goes to stderr with its path in the
    /// Envoy file and the reason (`--strict`: that is an error).
    ImportEnvoy(ImportArgs),
}

/// Options of `import-envoy`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The Envoy config (static bootstrap, v3 or v2, YAML or JSON); `-` for stdin.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Ingress manifests whose rules supply the hosts in front of the Envoy.
    #[arg(long, value_name = "FILE")]
    pub ingress: Option<PathBuf>,
    /// Name of the Envoy's Service in the Ingress rules.
    #[arg(long, default_value = "envoy", value_name = "NAME")]
    pub envoy_service: String,
    /// Fail, printing nothing, when anything cannot be carried over.
    #[arg(long)]
    pub strict: bool,
}

/// Options of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The mesh config (kubectl-mesh/v1alpha1 MeshConfig YAML).
    #[arg(short = 'f', long, value_name = "FILE")]
    pub file: PathBuf,
    /// Where a cluster's requests go: SERVICE:PORT=HOST:PORT (the service resolved in the
    /// config's namespace, e.g. server:6000=127.0.0.1:9000) or CLUSTER=HOST:PORT; repeatable.
    #[arg(long = "upstream", value_name = "CLUSTER_OR_SERVICE:PORT=HOST:PORT")]
    pub upstreams: Vec<String>,
    /// Port of the listener on 127.0.0.1.
    #[arg(long, default_value_t = 10000)]
    pub port: u16,
    /// The Envoy binary (default: $MESH_ENVOY, then `envoy` on PATH).
    #[arg(long, env = "MESH_ENVOY", value_name = "PATH")]
    pub envoy: Option<PathBuf>,
    /// Only print the Envoy bootstrap (the module is still written where it points).
    #[arg(long)]
    pub print_config: bool,
    /// Envoy logs at info level (default: warnings and errors only).
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

/// Options of `migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Manifest file, directory (every .yaml/.yml/.json file below it, recursively; a Helm
    /// chart by its templates/) or `-` for stdin; repeatable. Default: stdin.
    #[arg(
        short = 'f',
        long = "file",
        visible_alias = "filename",
        value_name = "FILE|DIR"
    )]
    pub files: Vec<PathBuf>,
    /// Rewrite the files instead of printing (all or nothing: only if every file migrated).
    #[arg(long, conflicts_with = "check")]
    pub in_place: bool,
    /// For CI: print a unified diff of what would change, write nothing, exit 1 when anything
    /// needs migrating.
    #[arg(long)]
    pub check: bool,
}

/// Options shaping the rendered objects (render and enable).
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// The mesh config (kubectl-mesh/v1alpha1 MeshConfig YAML).
    #[arg(short = 'f', long, value_name = "FILE")]
    pub file: PathBuf,
    /// Workloads to run the filter in, as pod labels (`app=server,tier=api`).
    /// Default for the gateway context: istio=ingressgateway.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Where in Envoy the filter runs (EnvoyFilter match.context).
    #[arg(long, value_enum, default_value = "gateway")]
    pub envoy_context: Context,
    /// Istio API that carries the filter.
    #[arg(long, value_enum, default_value = "envoyfilter")]
    pub api: Api,
    /// Fetch the module from this URL instead of a ConfigMap.
    #[arg(long, requires = "module_sha256", value_name = "URL")]
    pub module_url: Option<String>,
    /// sha256 of the module at --module-url.
    #[arg(long, requires = "module_url", value_name = "HEX")]
    pub module_sha256: Option<String>,
    /// Base name of the created objects.
    #[arg(long, default_value = "kubectl-mesh")]
    pub name: String,
    /// Gateway context: the Deployment the rendered mount patch names.
    #[arg(long, default_value = "istio-ingressgateway")]
    pub gateway_deployment: String,
    /// Gateway context: bind the hosts to this existing Istio Gateway (NAMESPACE/NAME)
    /// instead of creating one.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub gateway: Option<String>,
    /// Gateway context: port of the created Gateway's HTTP server.
    #[arg(long, default_value_t = 80)]
    pub http_port: u16,
    /// Gateway context: also serve HTTPS with this Kubernetes TLS secret (credentialName).
    #[arg(long, value_name = "SECRET")]
    pub tls_secret: Option<String>,
    /// Gateway context: port of the HTTPS server (with --tls-secret).
    #[arg(long, default_value_t = 443)]
    pub https_port: u16,
}

/// Options of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also check that the applied config matches this file.
    #[arg(short = 'f', long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Workloads to check (pod labels); default: those the applied filter selects.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// The context used with enable (gateways need no injection label). Default: inferred
    /// from the applied EnvoyFilter.
    #[arg(long, value_enum)]
    pub envoy_context: Option<Context>,
    /// The --module-url given to enable, for comparing with `-f`.
    #[arg(long, requires = "module_sha256", value_name = "URL")]
    pub module_url: Option<String>,
    /// The --module-sha256 given to enable.
    #[arg(long, requires = "module_url", value_name = "HEX")]
    pub module_sha256: Option<String>,
}

/// Everything that makes the plugin exit non-zero with a message.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad config or render options.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// Talking to the cluster failed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// enable/disable failed (boxed: it carries the applied/not-applied lists).
    #[error(transparent)]
    Enable(Box<EnableError>),
    /// run failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// migrate failed.
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    /// import-envoy failed.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// A malformed flag value.
    #[error("{0}")]
    Usage(String),
}

impl From<EnableError> for CliError {
    fn from(e: EnableError) -> Self {
        CliError::Enable(Box::new(e))
    }
}

/// Result of a successful run: whether to exit 0.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1 without an error message (failed checks were already printed).
    ChecksFailed,
    /// Exit with this code, the one of the process `run` started (Envoy).
    Exit(u8),
}

/// Where the objects go for the gateway context without `-n`: Istio's default gateway namespace.
pub const GATEWAY_NAMESPACE: &str = "istio-system";

/// Parses `a=b,c=d`.
pub fn parse_selector(text: &str) -> Result<BTreeMap<String, String>, CliError> {
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
            _ => Err(CliError::Usage(format!(
                "--selector: `{pair}` is not key=value (example: --selector app=server)"
            ))),
        })
        .collect()
}

fn selector_text(selector: &BTreeMap<String, String>) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Builds options and renders; namespace falls back to the config's.
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
    let module = match (&args.module_url, &args.module_sha256) {
        (Some(url), Some(sha256)) => Module::Remote {
            url: url.clone(),
            sha256: sha256.clone(),
        },
        _ => Module::ConfigMap(crate::module::EMBEDDED.to_vec()),
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
    };
    let rendered = render::render(&cfg, &opts)?;
    Ok((cfg, opts, rendered))
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Runs the parsed command, writing to `out`.
pub async fn run(cli: Cli, out: &mut impl Write) -> Result<Outcome, CliError> {
    let ns = cli.namespace.as_deref();
    match &cli.command {
        Command::Version => {
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
        }
        Command::Completion { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(*shell, &mut cmd, "kubectl-mesh", out);
        }
        Command::Render(args) => {
            let (_, opts, rendered) = prepare(ns, args)?;
            let _ = write!(
                out,
                "{}",
                render::render_text(&rendered, &opts, cli.output == Output::Json)
            );
        }
        Command::Enable {
            filter,
            wait,
            timeout,
        } => {
            let (cfg, mut opts, mut rendered) = prepare(ns, filter)?;
            let cluster =
                cluster::connect(cli.kubeconfig.as_deref(), cli.context.as_deref()).await?;
            let line = enable::preflight(
                &cluster,
                &opts.namespace,
                opts.api != Api::Envoyfilter,
                opts.context == Context::Gateway,
            )
            .await?;
            let _ = writeln!(out, "{line}");
            if let Some(line) =
                enable::choose_gateway(&cluster, &cfg, &mut opts, &mut rendered).await?
            {
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
            if actions.is_empty() {
                let _ = writeln!(
                    out,
                    "nothing to change: namespace {} is already set up",
                    opts.namespace
                );
            } else if cli.dry_run {
                let _ = writeln!(out, "dry run, would apply {} changes:", actions.len());
                for a in &actions {
                    let _ = writeln!(out, "  - {a}");
                }
                return Ok(Outcome::Success);
            } else {
                let _ = writeln!(out, "applying {} changes:", actions.len());
                enable::execute(&cluster, &actions, out).await?;
                if !*wait
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
            if *wait {
                enable::wait(
                    &cluster,
                    &opts.namespace,
                    &selector,
                    Duration::from_secs(*timeout),
                    out,
                )
                .await?;
            }
        }
        Command::Check(args) => {
            let cluster =
                cluster::connect(cli.kubeconfig.as_deref(), cli.context.as_deref()).await?;
            // With -f, compare the applied config with the file (same digest enable writes).
            let desired = match &args.file {
                Some(file) => {
                    let cfg = render::load_config(file)?;
                    let module = match (&args.module_url, &args.module_sha256) {
                        (Some(url), Some(sha256)) => Module::Remote {
                            url: url.clone(),
                            sha256: sha256.clone(),
                        },
                        _ => Module::ConfigMap(crate::module::EMBEDDED.to_vec()),
                    };
                    Some((cfg.namespace.clone(), render::config_hash(&cfg, &module)?))
                }
                None => None,
            };
            let namespace = ns
                .map(str::to_owned)
                .or_else(|| desired.as_ref().map(|(n, _)| n.clone()))
                .unwrap_or_else(|| cluster.default_namespace().to_owned());
            let selector = args.selector.clone().unwrap_or_default();
            let hash = desired.map(|(_, h)| h);
            let mut input = check::gather(
                &cluster,
                &namespace,
                "",
                hash,
                args.envoy_context == Some(Context::Gateway),
            )
            .await?;
            // Without an explicit selector, check the workloads the applied filter selects.
            let selector = if selector.is_empty() {
                applied_selector(&input.managed)
            } else {
                selector
            };
            let wanted = parse_selector(&selector)?;
            input.workloads.retain(|w| {
                let labels = w
                    .deployment
                    .spec
                    .template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.labels.clone())
                    .unwrap_or_default();
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
            if checks.iter().any(|c| c.status == check::Status::Fail) {
                return Ok(Outcome::ChecksFailed);
            }
        }
        Command::Migrate(args) => {
            return migrate_command(args, cli.output, out);
        }
        Command::ImportEnvoy(args) => {
            import::run(
                &import::Options {
                    envoy_file: args.file.clone(),
                    ingress_file: args.ingress.clone(),
                    envoy_service: args.envoy_service.clone(),
                    namespace: cli.namespace.clone(),
                    strict: args.strict,
                    json: cli.output == Output::Json,
                },
                out,
                &mut std::io::stderr(),
            )?;
        }
        Command::Run(args) => {
            let code = run::run(
                &run::RunOptions {
                    file: args.file.clone(),
                    upstreams: args.upstreams.clone(),
                    port: args.port,
                    envoy: args.envoy.clone(),
                    print_config: args.print_config,
                    verbose: args.verbose,
                },
                out,
            )
            .await?;
            if code != 0 {
                return Ok(Outcome::Exit(code));
            }
        }
        Command::Disable => {
            let cluster =
                cluster::connect(cli.kubeconfig.as_deref(), cli.context.as_deref()).await?;
            let namespace =
                ns.map_or_else(|| cluster.default_namespace().to_owned(), str::to_owned);
            let Some(ns_obj) = cluster
                .namespace(&namespace)
                .await
                .map_err(EnableError::from)?
            else {
                return Err(EnableError::Preflight(format!(
                    "namespace {namespace} does not exist"
                ))
                .into());
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
                let _ = writeln!(out, "dry run, would apply {} changes:", actions.len());
                for a in &actions {
                    let _ = writeln!(out, "  - {a}");
                }
            } else {
                let _ = writeln!(out, "removing {} things kubectl-mesh added:", actions.len());
                enable::execute(&cluster, &actions, out).await?;
            }
        }
    }
    Ok(Outcome::Success)
}

/// `migrate`: `--check` finding something to migrate exits 1, like a failed check.
fn migrate_command(
    args: &MigrateArgs,
    output: Output,
    out: &mut impl Write,
) -> Result<Outcome, CliError> {
    let opts = migrate::Options {
        files: args.files.clone(),
        in_place: args.in_place,
        check: args.check,
        json: output == Output::Json,
    };
    Ok(match migrate::run(&opts, out, &mut std::io::stderr())? {
        migrate::Status::Done => Outcome::Success,
        migrate::Status::NeedsMigration => Outcome::ChecksFailed,
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn selector_parsing() {
        let s = parse_selector("app=server, tier=api").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s["tier"], "api");
        assert!(parse_selector("app").is_err());
        assert!(parse_selector("=x").is_err());
    }

    #[test]
    fn global_flags_parse_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "kubectl-mesh",
            "render",
            "-f",
            "m.yaml",
            "-n",
            "ns",
            "-o",
            "json",
            "--context",
            "kind",
            "--envoy-context",
            "gateway",
        ])
        .unwrap();
        assert_eq!(cli.namespace.as_deref(), Some("ns"));
        assert_eq!(cli.context.as_deref(), Some("kind"));
        assert_eq!(cli.output, Output::Json);
        assert!(matches!(
            cli.command,
            Command::Render(FilterArgs {
                envoy_context: Context::Gateway,
                ..
            })
        ));
    }

    #[test]
    fn module_url_needs_sha() {
        assert!(Cli::try_parse_from([
            "kubectl-mesh",
            "render",
            "-f",
            "m",
            "--module-url",
            "https://x"
        ])
        .is_err());
    }
}
