//! An Istio proxy's config in a local Envoy: real config dumps made runnable ([`runnable`]),
//! kubectl-mesh's rendered objects applied to them with Istio's semantics ([`envoyfilter`],
//! [`rendered`]), and the traffic that compares Istio's own routing before and after
//! ([`traffic`]). `verify --proxy-dump` and the Istio-shape suite (`tests/istio/`) use these.

pub mod dump;
pub mod envoyfilter;
pub mod rendered;
pub mod runnable;
pub mod traffic;

use super::process::ProcessError;

/// What went wrong reading a dump, applying a patch or running the result.
#[derive(Debug, thiserror::Error)]
pub enum IstioError {
    /// A dump could not be read or is not a config dump.
    #[error("{file}: {message}")]
    Dump {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A patch cannot be applied faithfully (an operation or match field not implemented).
    #[error("patch {patch}: {message}")]
    Patch {
        /// Its index in the patches.
        patch: usize,
        /// What is wrong.
        message: String,
    },
    /// A rendered object does not have the shape this applies.
    #[error("{0}")]
    Rendered(String),
    /// A listener could not be made runnable.
    #[error("{what}: {message}")]
    Runnable {
        /// The listener and filter chain.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// An echo upstream could not start.
    #[error("cannot start a local echo upstream: {0}")]
    Upstream(#[source] std::io::Error),
    /// Envoy could not run the result.
    #[error(transparent)]
    Envoy(#[from] ProcessError),
    /// A request through it failed.
    #[error("{request} failed: {source}; Envoy's log:\n{log}")]
    Send {
        /// The request.
        request: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
        /// Envoy's log.
        log: String,
    },
}
