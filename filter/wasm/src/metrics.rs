//! The filter's counters, defined once per VM and surfaced by Envoy as `wasmcustom.mesh_filter_*`.

use crate::abi;
use mesh_core::ReplyKind;

/// Counter ids (0 when the host refused to define one; incrementing it is then a no-op).
#[derive(Debug, Clone, Copy, Default)]
pub struct Metrics {
    routed: u32,
    passed: u32,
    not_found: u32,
    preflight: u32,
    direct: u32,
    redirect: u32,
    errors: u32,
    config_ok: u32,
    revision: u32,
}

impl Metrics {
    /// Defines the counters; a failure only loses the metric, never the request.
    pub fn define() -> Self {
        let c = |name: &str| abi::define_counter(name).unwrap_or(0);
        Metrics {
            routed: c("mesh_filter_routed"),
            passed: c("mesh_filter_passed_through"),
            not_found: c("mesh_filter_not_found"),
            preflight: c("mesh_filter_cors_preflight"),
            direct: c("mesh_filter_direct_response"),
            redirect: c("mesh_filter_redirect"),
            errors: c("mesh_filter_host_errors"),
            config_ok: abi::define_gauge("mesh_filter_config_ok").unwrap_or(0),
            revision: abi::define_gauge("mesh_filter_config_revision").unwrap_or(0),
        }
    }

    fn bump(id: u32) {
        if id != 0 {
            let _ = abi::increment(id, 1);
        }
    }

    /// One request forwarded upstream.
    pub fn routed(&self) {
        Self::bump(self.routed);
    }

    /// One request the config does not own, left to Istio's routes.
    pub fn passed(&self) {
        Self::bump(self.passed);
    }

    /// One local reply of `kind`.
    pub fn reply(&self, kind: ReplyKind) {
        Self::bump(match kind {
            ReplyKind::NotFound => self.not_found,
            ReplyKind::Preflight => self.preflight,
            ReplyKind::Direct => self.direct,
            ReplyKind::Redirect => self.redirect,
        });
    }

    /// Whether the last configuration was accepted (1) or refused (0): `kubectl mesh check`
    /// reads it from the proxy's stats.
    pub fn configured(&self, ok: bool) {
        if self.config_ok != 0 {
            let _ = abi::record(self.config_ok, u64::from(ok));
        }
    }

    /// The revision of the configuration just accepted (0: it had none), which `kubectl mesh
    /// check` compares with the applied object's `kubectl-mesh/config-hash`.
    pub fn revision(&self, revision: Option<u64>) {
        if self.revision != 0 {
            let _ = abi::record(self.revision, revision.unwrap_or(0));
        }
    }

    /// One failed host call.
    pub fn error(&self) {
        Self::bump(self.errors);
    }
}
