//! The filter's counters, defined once per VM and surfaced by Envoy as `wasmcustom.mesh_filter_*`.
//!
//! Request counters are kept in the VM and handed to the host on a tick ([`TICK_MS`]) rather
//! than with one host call per request: `kubectl mesh check` and Prometheus see them at most
//! that much later. Failed host calls and the configuration gauge are recorded at once (both
//! are rare, and a refused configuration must show without waiting).

use crate::abi;
use mesh_core::ReplyKind;

/// How often the counters are flushed to the host (ms).
pub const TICK_MS: u32 = 1000;

/// Counter ids (0 when the host refused to define one; updating it is then a no-op).
#[derive(Debug, Clone, Copy, Default)]
struct Ids {
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

/// The VM's counters: their ids and the counts not yet handed to the host.
#[derive(Debug, Default)]
pub struct Metrics {
    ids: Ids,
    /// Pending counts, in the order of [`Metrics::flush`].
    pending: [u64; 6],
}

const ROUTED: usize = 0;
const PASSED: usize = 1;
const NOT_FOUND: usize = 2;
const PREFLIGHT: usize = 3;
const DIRECT: usize = 4;
const REDIRECT: usize = 5;

impl Metrics {
    /// Defines the counters; a failure only loses the metric, never the request.
    pub fn define() -> Self {
        let c = |name: &str| abi::define_counter(name).unwrap_or(0);
        Metrics {
            ids: Ids {
                routed: c("mesh_filter_routed"),
                passed: c("mesh_filter_passed_through"),
                not_found: c("mesh_filter_not_found"),
                preflight: c("mesh_filter_cors_preflight"),
                direct: c("mesh_filter_direct_response"),
                redirect: c("mesh_filter_redirect"),
                errors: c("mesh_filter_host_errors"),
                config_ok: abi::define_gauge("mesh_filter_config_ok").unwrap_or(0),
                revision: abi::define_gauge("mesh_filter_config_revision").unwrap_or(0),
            },
            pending: [0; 6],
        }
    }

    /// One request forwarded upstream.
    pub fn routed(&mut self) {
        self.pending[ROUTED] += 1;
    }

    /// One request the config does not own, left to Istio's routes.
    pub fn passed(&mut self) {
        self.pending[PASSED] += 1;
    }

    /// One local reply of `kind`.
    pub fn reply(&mut self, kind: ReplyKind) {
        self.pending[match kind {
            ReplyKind::NotFound => NOT_FOUND,
            ReplyKind::Preflight => PREFLIGHT,
            ReplyKind::Direct => DIRECT,
            ReplyKind::Redirect => REDIRECT,
        }] += 1;
    }

    /// Hands the pending counts to the host (one call per counter that moved).
    pub fn flush(&mut self) {
        let ids = [
            self.ids.routed,
            self.ids.passed,
            self.ids.not_found,
            self.ids.preflight,
            self.ids.direct,
            self.ids.redirect,
        ];
        for (id, n) in ids.into_iter().zip(&mut self.pending) {
            if *n > 0 && id != 0 {
                let _ = abi::increment(id, i64::try_from(*n).unwrap_or(i64::MAX));
            }
            *n = 0;
        }
    }

    /// Whether the last configuration was accepted (1) or refused (0): `kubectl mesh check`
    /// reads it from the proxy's stats.
    pub fn configured(&self, ok: bool) {
        if self.ids.config_ok != 0 {
            let _ = abi::record(self.ids.config_ok, u64::from(ok));
        }
    }

    /// The revision of the configuration just accepted (0: it had none), which `kubectl mesh
    /// check` compares with the applied object's `kubectl-mesh/config-hash`.
    pub fn revision(&self, revision: Option<u64>) {
        if self.ids.revision != 0 {
            let _ = abi::record(self.ids.revision, revision.unwrap_or(0));
        }
    }

    /// One failed host call (recorded at once).
    pub fn error(&self) {
        if self.ids.errors != 0 {
            let _ = abi::increment(self.ids.errors, 1);
        }
    }
}
