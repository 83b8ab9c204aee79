//! The command line (clap derive): flags, errors and exit outcomes; [`crate::commands::run`]
//! dispatches to one function per subcommand.

use crate::cluster::ClusterError;
use crate::enable::{DryRun, EnableError};
use crate::import::ImportError;
use crate::migrate::MigrateError;
use crate::render::{Api, Context, RenderError};
use crate::run::RunError;
use crate::verify::VerifyError;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::path::PathBuf;

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
    /// Print the result as data: `yaml` or `json` (render: the objects; enable, disable: the
    /// objects as the API server answered, progress on stderr; check: the checks by category,
    /// as `linkerd check -o json`; version, module, verify: their report). Default: text
    /// (render, import-envoy, migrate: YAML).
    #[arg(short = 'o', long, global = true, value_enum)]
    pub output: Option<Output>,
    /// Change nothing: `client` prints what would change, `server` also sends every write as
    /// the API server's dry run (validated, admitted and authorized, nothing stored). A bare
    /// `--dry-run` is `--dry-run=client`.
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "none|client|server",
        default_value = "none",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "client"
    )]
    pub dry_run: DryRun,
    /// Log more to stderr: -v what is done, -vv each API request; `run`: Envoy logs at info.
    /// `RUST_LOG` (e.g. `RUST_LOG=kubectl_mesh=debug`) overrides the level.
    #[arg(short = 'v', long = "verbose", global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats of `-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// YAML documents.
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
    /// Completions in Cobra's protocol, as kubectl asks a plugin's `kubectl_complete-mesh`.
    #[command(name = "__complete", hide = true)]
    Complete {
        /// The words so far, the last one being completed.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print every object `enable` would apply (offline).
    Render(FilterArgs),
    /// Apply the filter to the selected workloads.
    Enable {
        /// What to apply.
        #[command(flatten)]
        filter: FilterArgs,
        /// Wait for the proof: every selected pod rolled out with istio-proxy, and its proxy
        /// running the applied config (its stats; needs `get pods/proxy`). `--wait=rollout`
        /// waits for the rollout only.
        #[arg(
            long,
            value_enum,
            value_name = "filter|rollout",
            num_args = 0..=1,
            require_equals = true,
            default_missing_value = "filter"
        )]
        wait: Option<crate::enable::wait::WaitFor>,
        /// Seconds `--wait` waits.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Check the cluster, Istio and the selected workloads.
    Check(CheckArgs),
    /// Remove exactly what one `enable` added (without -n: where that enable put it).
    Disable(DisableArgs),
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
    /// The embedded filter module as an OCI image: push it to a registry, print its digests.
    Module {
        /// What to do with it.
        #[command(subcommand)]
        command: ModuleCommand,
    },
    /// Prove that a MeshConfig answers as the Envoy it replaces, or that `enable` on an Istio
    /// proxy changes nothing but the config's hosts (runs real Envoy locally).
    ///
    /// `-f envoy.yaml`: the original runs in a local Envoy, the MeshConfig (`--config`, or the
    /// import of the original) through the filter; requests generated from the original (every
    /// host and route, host variants, preflights, gRPC-Web calls, unknown hosts and paths) and
    /// `--requests` go to both, and every difference is printed. `--proxy-dump FILE` or `--pod
    /// NAMESPACE/POD`: the proxy's config runs as it is and with what `enable` adds; every route
    /// of the dump is requested on both. Exit 0 only when equal (nothing else changed).
    Verify(VerifyArgs),
}

/// Subcommands of `module`.
#[derive(Debug, Subcommand)]
pub enum ModuleCommand {
    /// Push the module as an image istio-agent pulls (one tar+gzip layer holding plugin.wasm)
    /// and print the digest `--module-url oci://...` is checked against.
    Push(PushArgs),
    /// Print the module's sha256 and its image's manifest digest, without pushing.
    Digest,
}

/// Options of `module push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Where: oci://REGISTRY/REPO:TAG (or @sha256:DIGEST of this module's image).
    #[arg(value_name = "oci://REGISTRY/REPO:TAG")]
    pub reference: String,
    /// Registry user name, with the password or token on stdin (default: docker's
    /// config.json, $DOCKER_CONFIG or ~/.docker, else anonymous).
    #[arg(long, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password or token for --username from stdin.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Speak plain HTTP to a registry that is not on this machine (localhost always is).
    #[arg(long)]
    pub plain_http: bool,
}

/// Options of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The standalone Envoy config (static bootstrap, v3 or v2, YAML or JSON).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Ingress manifests whose rules supply the hosts in front of the Envoy.
    #[arg(long, value_name = "FILE")]
    pub ingress: Option<PathBuf>,
    /// Name of the Envoy's Service in the Ingress rules.
    #[arg(long, default_value = "envoy", value_name = "NAME")]
    pub envoy_service: String,
    /// The MeshConfig to verify (default: `import-envoy` of -f, made on the fly).
    #[arg(long, value_name = "MESH_YAML")]
    pub config: Option<PathBuf>,
    /// The listener of -f to compare (its name, or listeners[N] / N); default: the first HTTP one.
    #[arg(long, value_name = "NAME")]
    pub listener: Option<String>,
    /// More requests: a YAML list of {hosts, paths, methods, origins, request_methods,
    /// request_headers, headers} matrices (each the cross product of its lists).
    #[arg(long, value_name = "FILE")]
    pub requests: Option<PathBuf>,
    /// An Istio proxy's /config_dump (`istioctl proxy-config all POD -o json`, or the admin
    /// port's /config_dump).
    #[arg(long, value_name = "FILE", conflicts_with = "pod")]
    pub proxy_dump: Option<PathBuf>,
    /// Read the /config_dump of this pod's istio-proxy through the API server (pods/proxy to
    /// port 15000).
    #[arg(long, value_name = "NAMESPACE/POD")]
    pub pod: Option<String>,
    /// With --proxy-dump/--pod: the context `enable` would use (default: gateway for a gateway's
    /// dump, sidecar-outbound for a sidecar's).
    #[arg(long, value_enum)]
    pub envoy_context: Option<Context>,
    /// The Envoy binary (default: $MESH_ENVOY, then `envoy` on PATH).
    #[arg(long, env = "MESH_ENVOY", value_name = "PATH")]
    pub envoy: Option<PathBuf>,
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
    /// Fail, printing nothing, when anything cannot be carried over (fields set to Envoy's
    /// defaults ask for nothing and do not count).
    #[arg(long)]
    pub strict: bool,
    /// The listener to import (its name, or listeners[N] / N); default: the first HTTP one, or
    /// with --ingress the one on the port the Ingress sends to.
    #[arg(long, value_name = "NAME")]
    pub listener: Option<String>,
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
    /// Fetch the module from this URL instead of a ConfigMap: http(s)://.../FILE.wasm, or
    /// oci://REGISTRY/REPO:TAG (what `kubectl mesh module push` made).
    #[arg(long, value_name = "URL")]
    pub module_url: Option<String>,
    /// The digest istio-agent checks: the .wasm file's sha256 for http(s) (required), the
    /// image manifest digest for oci:// (default: this build's module image).
    #[arg(long, requires = "module_url", value_name = "HEX")]
    pub module_sha256: Option<String>,
    /// When istio-agent pulls the --module-url again (default: Istio's, IfNotPresent except
    /// for an oci `:latest` tag).
    #[arg(long, requires = "module_url", value_enum, value_name = "POLICY")]
    pub image_pull_policy: Option<crate::delivery::PullPolicy>,
    /// A docker-registry Secret (in the objects' namespace) for pulling an oci:// module; needs
    /// --api wasmplugin or trafficextension.
    #[arg(long, requires = "module_url", value_name = "SECRET")]
    pub image_pull_secret: Option<String>,
    /// Base name of the created objects.
    #[arg(long, default_value = "kubectl-mesh")]
    pub name: String,
    /// Gateway context, render: the Deployment the rendered pod patch names (default: from the
    /// selector, as installs name it: istio=V is istio-V, istioctl's istio-ingressgateway or
    /// the Helm chart's release; gateway.networking.k8s.io/gateway-name=N is istiod's N-istio).
    /// enable patches the Deployments it finds.
    #[arg(long, value_name = "NAME")]
    pub gateway_deployment: Option<String>,
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
    /// The Istio release the objects are for (`1.27`): what its APIs accept. Default: for
    /// enable, istiod's version in the cluster; for render, the newest known.
    #[arg(long, value_name = "MAJOR.MINOR")]
    pub istio_version: Option<String>,
}

/// Options of `disable`.
#[derive(Debug, Args)]
pub struct DisableArgs {
    /// The `--name` given to enable: whose objects to remove (others' stay).
    #[arg(long, default_value = "kubectl-mesh")]
    pub name: String,
}

/// Options of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The `--name` given to enable: whose objects to check.
    #[arg(long, default_value = "kubectl-mesh")]
    pub name: String,
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
    #[arg(long, value_name = "URL")]
    pub module_url: Option<String>,
    /// The --module-sha256 given to enable.
    #[arg(long, requires = "module_url", value_name = "HEX")]
    pub module_sha256: Option<String>,
    /// For CI: check again until nothing fails (warnings are fine) or --timeout passes;
    /// progress on stderr, the last checklist on stdout.
    #[arg(long)]
    pub wait: bool,
    /// Seconds `--wait` waits.
    #[arg(long, default_value_t = 300, requires = "wait")]
    pub timeout: u64,
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
    /// Pushing the module failed.
    #[error(transparent)]
    Oci(#[from] crate::oci::OciError),
    /// check or disable could not tell where enable put the objects.
    #[error(transparent)]
    Locate(#[from] crate::locate::LocateError),
    /// verify could not compare.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A malformed flag value.
    #[error("{0}")]
    Usage(String),
    /// Serializing the output failed (a bug).
    #[error(transparent)]
    Serialize(#[from] crate::output::SerializeError),
}

impl From<EnableError> for CliError {
    fn from(e: EnableError) -> Self {
        CliError::Enable(Box::new(e))
    }
}

/// Exit status when the command ran and found something wrong: failed checks (`check`,
/// `verify`, `migrate --check`).
pub const EXIT_CHECKS_FAILED: u8 = 1;
/// Exit status when the command could not run: a bad flag or config, an unreachable or refusing
/// API server, a failed change (clap's usage errors exit 2 too).
pub const EXIT_ERROR: u8 = 2;

/// Result of a successful run: whether to exit 0.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit [`EXIT_CHECKS_FAILED`] without an error message (failed checks were already
    /// printed).
    ChecksFailed,
    /// Exit [`EXIT_ERROR`] without an error message: the command could not do its job and
    /// already said why (`check` with an unreachable API server).
    CouldNotRun,
    /// Exit with this code, the one of the process `run` started (Envoy).
    Exit(u8),
}

/// Sends `tracing` output to stderr: warnings by default, `-v` what kubectl-mesh does, `-vv`
/// also each Kubernetes API request; `RUST_LOG` overrides.
pub fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "warn,kubectl_mesh=info",
        2 => "info,kubectl_mesh=debug,kube_client=debug",
        _ => "debug,kubectl_mesh=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Parses `a=b,c=d`.
pub fn parse_selector(text: &str) -> Result<BTreeMap<String, String>, CliError> {
    crate::options::parse_selector(text).map_err(|e| CliError::Usage(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

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
        assert_eq!(cli.output, Some(Output::Json));
        assert!(matches!(
            cli.command,
            Command::Render(FilterArgs {
                envoy_context: Context::Gateway,
                ..
            })
        ));
    }

    #[test]
    fn module_url_needs_sha_for_http_only() {
        let parse = |url: &str| {
            let cli =
                Cli::try_parse_from(["kubectl-mesh", "render", "-f", "m", "--module-url", url])
                    .unwrap();
            let Command::Render(args) = cli.command else {
                panic!("render expected")
            };
            let pull = crate::delivery::Pull::default();
            crate::delivery::remote(args.module_url.as_deref().unwrap(), None, pull, b"\0asm")
        };
        assert!(parse("https://x").is_err());
        assert!(
            parse("oci://r.example.com/m:v1").is_ok(),
            "the image digest is computed"
        );
        assert!(Cli::try_parse_from([
            "kubectl-mesh",
            "render",
            "-f",
            "m",
            "--image-pull-policy",
            "Always"
        ])
        .is_err());
    }
}
