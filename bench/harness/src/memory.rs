//! Memory per proxy: the RSS of native, floor and mesh Envoys with 1, 2 and 8 workers (each
//! worker runs its own Wasm VM, as Istio's sidecars run 2 and gateways more), and how much of
//! it is live heap rather than memory the allocator keeps after V8 compiled the module.

use crate::load;
use crate::setups::{self, Inputs, Launch, Proc, Setup};
use std::path::Path;
use std::time::Duration;

/// One Envoy's memory after a short load spread over its workers.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemRow {
    /// Worker threads.
    pub workers: usize,
    /// Resident set (MiB).
    pub rss_mib: f64,
    /// Live heap (MiB, admin `/memory` `allocated`).
    pub allocated_mib: f64,
    /// Heap the allocator holds (MiB, `heap_size`).
    pub heap_mib: f64,
}

/// The setups measured.
pub const SETUPS: [Setup; 3] = [Setup::Native, Setup::Floor, Setup::Mesh];

/// Starts each of [`SETUPS`] with each worker count in turn (one at a time, so they do not
/// share the machine), sends `script` from 32 connections for a second, and reads its memory.
pub fn measure(
    inputs: &Inputs,
    upstream: u16,
    workers: &[usize],
    script: &Path,
    cpu_load: Option<&str>,
) -> anyhow::Result<Vec<(Setup, MemRow)>> {
    let mut rows = Vec::new();
    for &w in workers {
        for setup in SETUPS {
            let local = setups::local_envoy(setup, inputs, upstream)?;
            let how = Launch {
                workers: w,
                ..Launch::default()
            };
            let p = Proc::launch(&inputs.envoy, local, &how, &load::routed())?;
            load::wrk(script, p.port, 32, Duration::from_secs(1), cpu_load)?;
            std::thread::sleep(Duration::from_millis(500));
            let (allocated_mib, heap_mib) = p.heap_mib().unwrap_or_default();
            rows.push((
                setup,
                MemRow {
                    workers: w,
                    rss_mib: p.rss_kib() as f64 / 1024.0,
                    allocated_mib,
                    heap_mib,
                },
            ));
        }
    }
    Ok(rows)
}
