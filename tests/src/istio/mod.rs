//! The Istio-shape suite's machinery: real Istio config dumps made runnable, kubectl-mesh's
//! rendered patches applied to them with Istio's EnvoyFilter semantics, and the traffic that
//! compares Istio's own routing before and after (see `tests/istio/README.md`).

pub mod agent;
pub mod clusters;
pub mod dump;
pub mod envoyfilter;
pub mod generated;
pub mod istiod;
pub mod runnable;
pub mod scenario;
pub mod traffic;

/// The shared read-only fixtures (`../shared/fixtures/istio` beside the repository).
pub fn fixtures() -> std::path::PathBuf {
    crate::workspace_root().join("../shared/fixtures/istio")
}
