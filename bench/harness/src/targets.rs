//! The targets and the measures they are read from: throughput and CPU ratios per
//! round, memory per worker count, Envoy's instructions, the largest deployable config.

use crate::load::{median, pct};
use crate::run::Results;
use crate::setups::Setup;

/// Median over the rounds of `a`'s throughput over `b`'s in the same round (0 without runs):
/// per-round ratios cancel what the machine did during that round.
pub fn paired_ratio(r: &Results, a: Setup, b: Setup) -> f64 {
    let (Some(x), Some(y)) = (r.wrk.get(a.name()), r.wrk.get(b.name())) else {
        return 0.0;
    };
    median(
        &x.iter()
            .zip(y)
            .map(|(x, y)| x.rps / y.rps.max(1e-9))
            .collect::<Vec<_>>(),
    )
}

/// Median Envoy CPU per request (µs) of `s` over the rounds.
pub fn cpu_per_request(r: &Results, s: Setup) -> f64 {
    median(
        &r.wrk
            .get(s.name())
            .map(|v| v.iter().map(|w| w.cpu_us).collect::<Vec<_>>())
            .unwrap_or_default(),
    )
}

/// RSS (MiB) of `setup` with `workers` workers, from the memory table.
pub fn rss(r: &Results, setup: Setup, workers: usize) -> Option<f64> {
    r.memory
        .iter()
        .find(|(s, m)| *s == setup && m.workers == workers)
        .map(|(_, m)| m.rss_mib)
}

/// Envoy's instructions per request (worker thread) of the setup named `name`, under callgrind.
pub fn envoy_instructions(r: &Results, name: &str) -> Option<f64> {
    r.envoy_instructions
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, i)| i.worker)
}

/// The scaling row of the largest config a cluster can store.
pub fn deployable(r: &Results) -> Option<&crate::run::ScaleRow> {
    r.scale
        .iter()
        .find(|s| s.hosts == crate::run::LARGEST_DEPLOYABLE)
        .or(r.scale.last())
}

/// The targets (issue 21), measured in this run: (target, measured, met).
pub fn targets(r: &Results) -> Vec<(String, String, bool)> {
    let m_floor = paired_ratio(r, Setup::Mesh, Setup::Floor);
    let cpu_added = cpu_per_request(r, Setup::Mesh) - cpu_per_request(r, Setup::Floor);
    let instr = match (
        envoy_instructions(r, Setup::Mesh.name()),
        envoy_instructions(r, Setup::Floor.name()),
    ) {
        (Some(m), Some(f)) => format!(
            " (callgrind: {:.0} instructions over the floor's {:.0})",
            m - f,
            f
        ),
        _ => String::new(),
    };
    let mut t = vec![
        (
            "throughput at 16 connections >= 0.95x the no-op floor".into(),
            format!("{m_floor:.2}x"),
            m_floor >= 0.95,
        ),
        (
            "Envoy CPU per request over the floor <= 3 µs (routed gRPC-Web call with an Origin)"
                .into(),
            format!("{cpu_added:.1} µs{instr}"),
            cpu_added <= 3.0,
        ),
        (
            "mesh_filter.wasm < 250 KB (after wasm-opt)".into(),
            format!("{:.0} KB", r.module_bytes.0 as f64 / 1e3),
            r.module_bytes.0 < 250_000,
        ),
    ];
    let workers: Vec<usize> = r
        .options
        .as_ref()
        .map(|o| o.workers.clone())
        .unwrap_or_default();
    for w in workers {
        if let (Some(m), Some(f)) = (rss(r, Setup::Mesh, w), rss(r, Setup::Floor, w)) {
            let budget = 8.0 * w as f64;
            t.push((
                format!(
                    "RSS with {w} worker{} <= floor + {budget:.0} MiB (digimon config)",
                    if w == 1 { "" } else { "s" }
                ),
                format!("{:.1} MiB over the floor ({m:.1} against {f:.1})", m - f),
                m - f <= budget,
            ));
        }
    }
    if let Some(s) = deployable(r) {
        let ms = s.mesh.configure.as_secs_f64() * 1e3;
        t.push((
            format!("{} hosts configure in < 20 ms (wasmtime)", s.hosts),
            format!("{ms:.1} ms"),
            ms < 20.0,
        ));
    }
    t
}

/// The targets of the first round (issue 11) that the current ones do not restate.
pub fn earlier_targets(r: &Results) -> Vec<(String, String, bool)> {
    let seq = |s: Setup, p: f64| {
        let mut v = r
            .sequential
            .get(&(s.name(), r.kinds.first().copied().unwrap_or_default()))
            .cloned()
            .unwrap_or_default();
        pct(&mut v, p)
    };
    let own = r.digimon_wasm.0.ns_per_request - r.digimon_wasm.1.ns_per_request;
    let own_scale: Vec<f64> = r
        .scale
        .iter()
        .map(|s| (s.mesh.ns_per_request - s.noop.ns_per_request) / 1e3)
        .collect();
    let flat = own_scale
        .iter()
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join(" / ");
    let max_own = own_scale.iter().copied().fold(0.0f64, f64::max);
    let largest = r.scale.last();
    let configure = largest.map_or(0.0, |s| s.mesh.configure.as_secs_f64() * 1e3);
    let p50_added = seq(Setup::Mesh, 0.5) - seq(Setup::Floor, 0.5);
    let p99_added = seq(Setup::Mesh, 0.99) - seq(Setup::Native, 0.99);
    let m_lua = paired_ratio(r, Setup::Mesh, Setup::Lua);
    vec![
        (
            "throughput at 16 connections >= 1.10x Lua".into(),
            format!("{m_lua:.2}x"),
            m_lua >= 1.10,
        ),
        (
            "p50 added over the floor <= 10 µs (routed request, sequential)".into(),
            format!("{p50_added:.0} µs"),
            p50_added <= 10.0,
        ),
        (
            "p99 added over native <= 50 µs (routed request, sequential)".into(),
            format!("{p99_added:.0} µs"),
            p99_added <= 50.0,
        ),
        (
            "filter's own work <= 2 µs per request (wasmtime, mesh minus no-op)".into(),
            format!("{:.2} µs (digimon)", own / 1e3),
            own / 1e3 <= 2.0,
        ),
        (
            format!(
                "... flat from {} to {} hosts",
                r.scale.first().map_or(0, |s| s.hosts),
                largest.map_or(0, |s| s.hosts)
            ),
            format!("{flat} µs"),
            max_own <= 2.0,
        ),
        (
            format!(
                "{} hosts configure in < 50 ms (wasmtime)",
                largest.map_or(0, |s| s.hosts)
            ),
            format!("{configure:.1} ms"),
            configure < 50.0,
        ),
    ]
}
