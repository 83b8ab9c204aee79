//! `kubectl mesh verify`: the behavioural proof as a command. An Envoy config runs in a local
//! Envoy as written and its MeshConfig (given, or imported on the fly) through the filter, the
//! same generated requests go to both and every difference is printed ([`compare`]); or an
//! Istio proxy's config dump runs before and after what `enable` would add ([`proxy`]).
//!
//! Layout: `http` the raw client, `echo` the echo upstreams, `process` a local Envoy,
//! `requests` what is sent, `native` the original made runnable, `observe` what is compared,
//! `compare` the Envoy-config run, `istio/` config dumps and Istio's patch semantics, `proxy`
//! the dump run, `report` the output.

pub mod compare;
pub mod echo;
pub mod http;
pub mod istio;
pub mod native;
pub mod observe;
pub mod process;
pub mod proxy;
pub mod report;
pub mod requests;

use crate::cluster::{Cluster, ClusterError};
use crate::import::{self, ImportError};
use crate::render::{self, Context, RenderError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why `verify` could not compare. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A file could not be read.
    #[error("cannot read {file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The Envoy config could not be imported (the notes were printed).
    #[error(transparent)]
    Import(#[from] ImportError),
    /// The given MeshConfig is invalid.
    #[error(transparent)]
    Config(#[from] RenderError),
    /// Bad flags or input.
    #[error("{0}")]
    Usage(String),
    /// A local Envoy could not run one side.
    #[error("{side} side: {source}")]
    Envoy {
        /// `native`, `mesh` or `ingress`.
        side: &'static str,
        /// Why.
        #[source]
        source: process::ProcessError,
    },
    /// No Envoy binary, or the module could not be written.
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    /// An echo upstream could not start.
    #[error("cannot start a local echo upstream: {0}")]
    Upstream(#[source] std::io::Error),
    /// A request to one side failed (the proxy closed the connection, or timed out).
    #[error("{side} side: {request} failed: {source}; Envoy's log:\n{log}")]
    Send {
        /// `native` or `mesh`.
        side: &'static str,
        /// The request.
        request: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
        /// That Envoy's log.
        log: String,
    },
    /// A config dump could not be read, patched or run.
    #[error(transparent)]
    Istio(#[from] istio::IstioError),
    /// Reading a pod's config dump through the API server failed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// The options of one `verify`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The Envoy config (`-f`).
    pub file: Option<PathBuf>,
    /// The Ingress in front of it.
    pub ingress: Option<PathBuf>,
    /// The Envoy's Service in the Ingress rules.
    pub envoy_service: String,
    /// The MeshConfig to verify (default: the import of `file`).
    pub config: Option<PathBuf>,
    /// The listener of `file` (name, `listeners[N]` or `N`).
    pub listener: Option<String>,
    /// Requests of the user's own (a YAML list of request matrices).
    pub requests: Option<PathBuf>,
    /// The MeshConfig namespace for the import.
    pub namespace: Option<String>,
    /// An Istio proxy's `/config_dump`.
    pub proxy_dump: Option<PathBuf>,
    /// `NAMESPACE/POD` whose istio-proxy's `/config_dump` to read.
    pub pod: Option<String>,
    /// The context `enable` would use with the dump.
    pub envoy_context: Option<Context>,
    /// The Envoy binary (default: `$MESH_ENVOY`, then `envoy` on PATH).
    pub envoy: Option<PathBuf>,
    /// JSON output.
    pub json: bool,
    /// Print both sides of every difference in full.
    pub verbose: bool,
}

/// istio-proxy's admin port, where `/config_dump` is served.
pub const ADMIN_PORT: u16 = 15000;

fn read(path: &Path) -> Result<(String, String), VerifyError> {
    let file = path.display().to_string();
    std::fs::read_to_string(path)
        .map(|t| (file.clone(), t))
        .map_err(|source| VerifyError::Read { file, source })
}

/// `outbound|6000||server.digimon.svc.cluster.local` -> `server:6000`; other names unchanged.
pub fn short_name(cluster: &str) -> String {
    let mut parts = cluster.split('|');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("outbound"), Some(port), Some(_), Some(fqdn)) => {
            format!("{}:{port}", fqdn.split('.').next().unwrap_or(fqdn))
        }
        _ => cluster.to_owned(),
    }
}

/// The embedded filter module, written where the local Envoy can read it.
fn module() -> Result<PathBuf, VerifyError> {
    crate::run::write_module().map_err(|e| VerifyError::Usage(e.to_string()))
}

/// Runs `kubectl mesh verify`; `Ok(true)` when everything compared equal (exit 0).
pub async fn run(
    opts: &Options,
    cluster: Option<&Cluster>,
    out: &mut impl Write,
) -> Result<bool, VerifyError> {
    let envoy = process::envoy_binary(opts.envoy.as_deref())?;
    let config = match &opts.config {
        Some(p) => Some(render::load_config(p)?),
        None => None,
    };
    if opts.proxy_dump.is_some() || opts.pod.is_some() {
        let (source, dump) = match (&opts.proxy_dump, &opts.pod, cluster) {
            (Some(p), _, _) => (p.display().to_string(), istio::dump::read(p)?),
            (None, Some(pod), Some(c)) => {
                let (ns, name) = pod.split_once('/').ok_or_else(|| {
                    VerifyError::Usage(format!("--pod `{pod}`: give it as NAMESPACE/POD"))
                })?;
                let text = c.pod_proxy_get(ns, name, ADMIN_PORT, "config_dump").await?;
                let dump = serde_json::from_str(&text).map_err(|e| {
                    VerifyError::Usage(format!(
                        "pod {pod}: istio-proxy's /config_dump (port {ADMIN_PORT}) is not JSON: {e}"
                    ))
                })?;
                (format!("pod {pod}"), dump)
            }
            _ => {
                return Err(VerifyError::Usage(
                    "--pod needs a cluster connection".into(),
                ))
            }
        };
        let config = match config {
            Some(c) => c,
            None => imported_config(opts)?.ok_or_else(|| {
                VerifyError::Usage(
                    "--proxy-dump/--pod: give the MeshConfig `enable` would apply with --config (or an Envoy config to import with -f)".into(),
                )
            })?,
        };
        let input = proxy::ProxyInput {
            source,
            dump,
            config,
            context: opts.envoy_context,
        };
        let wasm = module()?;
        let r = proxy::run(&input, &envoy, &wasm)?;
        report::print_proxy(&r, opts, out);
        return Ok(r.clean());
    }
    let Some(file) = &opts.file else {
        return Err(VerifyError::Usage(
            "give the Envoy config with -f envoy.yaml (or an Istio proxy's dump with --proxy-dump FILE or --pod NAMESPACE/POD)".into(),
        ));
    };
    let (envoy_file, envoy_text) = read(file)?;
    let ingress = opts.ingress.as_deref().map(read).transpose()?;
    let mut extra = Vec::new();
    if let Some(p) = &opts.requests {
        let (f, t) = read(p)?;
        for m in requests::read_matrices(&f, &t).map_err(VerifyError::Usage)? {
            extra.extend(m.expand());
        }
    }
    let input = compare::Input {
        name: envoy_file.clone(),
        source: import::Source {
            envoy_file: &envoy_file,
            envoy_text: &envoy_text,
            ingress: ingress.as_ref().map(|(f, t)| (f.as_str(), t.as_str())),
            envoy_service: &opts.envoy_service,
            namespace: opts.namespace.as_deref(),
            listener: opts.listener.as_deref(),
        },
        config,
        extra,
    };
    let tools = compare::Tools {
        envoy,
        wasm: module()?,
    };
    let result = compare::run(&input, &tools);
    let r = match result {
        Ok(r) => r,
        Err(VerifyError::Import(e)) => {
            import::print_notes(&envoy_file, e.notes(), &mut std::io::stderr());
            return Err(e.into());
        }
        Err(e) => return Err(e),
    };
    report::print(&r, opts, out);
    Ok(r.equal())
}

/// The import of `-f` (for `--proxy-dump` without `--config`), notes on stderr.
fn imported_config(opts: &Options) -> Result<Option<mesh_core::MeshConfig>, VerifyError> {
    let Some(file) = &opts.file else {
        return Ok(None);
    };
    let (f, t) = read(file)?;
    let ingress = opts.ingress.as_deref().map(read).transpose()?;
    let src = import::Source {
        envoy_file: &f,
        envoy_text: &t,
        ingress: ingress.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
        envoy_service: &opts.envoy_service,
        namespace: opts.namespace.as_deref(),
        listener: opts.listener.as_deref(),
    };
    match import::import_source(&src) {
        Ok(i) => {
            import::print_notes(&f, &i.notes, &mut std::io::stderr());
            Ok(Some(i.config))
        }
        Err(e) => {
            import::print_notes(&f, e.notes(), &mut std::io::stderr());
            Err(e.into())
        }
    }
}
