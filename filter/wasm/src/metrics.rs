//! The filter's counters, defined once per VM and surfaced by Envoy as `wasmcustom.mesh_filter_*`.

use crate::abi;
use mesh_core::ReplyKind;

/// Counter ids (0 when the host refused to define one; incrementing it is then a no-op).
#[derive(Debug, Clone, Copy, Default)]
pub struct Metrics {
    routed: u32,
    not_found: u32,
    preflight: u32,
    direct: u32,
    redirect: u32,
    errors: u32,
}

impl Metrics {
    /// Defines the counters; a failure only loses the metric, never the request.
    pub fn define() -> Self {
        let c = |name: &str| abi::define_counter(name).unwrap_or(0);
        Metrics {
            routed: c("mesh_filter_routed"),
            not_found: c("mesh_filter_not_found"),
            preflight: c("mesh_filter_cors_preflight"),
            direct: c("mesh_filter_direct_response"),
            redirect: c("mesh_filter_redirect"),
            errors: c("mesh_filter_host_errors"),
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

    /// One local reply of `kind`.
    pub fn reply(&self, kind: ReplyKind) {
        Self::bump(match kind {
            ReplyKind::NotFound => self.not_found,
            ReplyKind::Preflight => self.preflight,
            ReplyKind::Direct => self.direct,
            ReplyKind::Redirect => self.redirect,
        });
    }

    /// One failed host call.
    pub fn error(&self) {
        Self::bump(self.errors);
    }
}
