//! The Istio-shape suite's machinery: real Istio config dumps made runnable, kubectl-mesh's
//! rendered patches applied to them with Istio's EnvoyFilter semantics, and the traffic that
//! compares Istio's own routing before and after (see `tests/istio/README.md`). All but
//! `istiod` are the plugin's (`kubectl_mesh::verify::istio`, which `kubectl mesh verify
//! --proxy-dump` runs), re-exported here under their old names.

pub mod agent;
pub mod checks;
pub mod clusters;
pub mod generated;
pub mod istiod;
pub mod scenario;

pub use kubectl_mesh::verify::istio::{dump, envoyfilter, runnable, traffic};

/// The shared read-only fixtures (`../shared/fixtures/istio` beside the repository).
pub fn fixtures() -> std::path::PathBuf {
    crate::workspace_root().join("../shared/fixtures/istio")
}
