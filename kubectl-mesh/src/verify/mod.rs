//! The behavioural proof: an Envoy config runs in a local Envoy as written and its MeshConfig
//! through the filter, the same generated requests go to both and every difference is listed
//! ([`compare`]); Istio config dumps run with Istio's patch semantics ([`istio`]).
//!
//! Layout: `http` the raw client, `echo` the echo upstreams, `process` a local Envoy,
//! `requests` what is sent, `native` the original made runnable, `observe` what is compared,
//! `compare` the Envoy-config run, `istio/` config dumps and Istio's patch semantics.

pub mod compare;
pub mod echo;
pub mod http;
pub mod istio;
pub mod native;
pub mod observe;
pub mod process;
pub mod requests;

use crate::cluster::ClusterError;
use crate::import::ImportError;
use crate::render::RenderError;

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
