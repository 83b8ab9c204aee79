//! The report (`bench/README.md`): the machine, the targets, the tables, the commands, and the
//! reading of where the time goes (prose from `bench/reading.md`, with this run's numbers).

use crate::load::{median, pct};
use crate::run::Results;
use crate::setups::Setup;
use crate::targets::{
    cpu_per_request, deployable, earlier_targets, envoy_instructions, paired_ratio, rss, targets,
};
use std::collections::BTreeMap;
use std::fmt::Write as _;

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "**no**"
    }
}

/// Values the reading's `{placeholders}` are filled with.
pub fn values(r: &Results) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    let mut put = |k: &str, x: String| {
        v.insert(k.to_owned(), x);
    };
    for (i, (_, m, _)) in targets(r).iter().enumerate() {
        put(&format!("target{i}"), m.clone());
    }
    for (i, (_, m, _)) in earlier_targets(r).iter().enumerate() {
        put(&format!("earlier{i}"), m.clone());
    }
    for (k, name) in [
        ("native", Setup::Native.name()),
        ("floor", Setup::Floor.name()),
        ("probe", crate::run::PROBE),
        ("mesh", Setup::Mesh.name()),
    ] {
        if let Some(i) = envoy_instructions(r, name) {
            put(&format!("instr_{k}"), format!("{i:.0}"));
        }
    }
    if let (Some(m), Some(p), Some(f), Some(n)) = (
        envoy_instructions(r, Setup::Mesh.name()),
        envoy_instructions(r, crate::run::PROBE),
        envoy_instructions(r, Setup::Floor.name()),
        envoy_instructions(r, Setup::Native.name()),
    ) {
        put("instr_mesh_floor", format!("{:.0}", m - f));
        put("instr_probe_floor", format!("{:.0}", p - f));
        put("instr_mesh_probe", format!("{:.0}", m - p));
        put("instr_floor_native", format!("{:.0}", f - n));
        for (k, (name, _)) in ["part_read", "part_grant", "part_write"]
            .iter()
            .zip(crate::run::PROBE_PARTS)
        {
            if let Some(v) = envoy_instructions(r, name) {
                put(k, format!("{:.0}", (v - p).abs()));
            }
        }
        // Instructions per µs of Envoy CPU, from the floor's two measures of the same work.
        let per_us = (f - n)
            / (cpu_per_request(r, Setup::Floor) - cpu_per_request(r, Setup::Native)).max(1e-9);
        put("instr_per_us", format!("{per_us:.0}"));
        put(
            "instr_probe_floor_us",
            format!("{:.1}", (p - f) / per_us.max(1e-9)),
        );
        put(
            "instr_mesh_floor_us",
            format!("{:.1}", (m - f) / per_us.max(1e-9)),
        );
    }
    for w in r
        .options
        .as_ref()
        .map(|o| o.workers.clone())
        .unwrap_or_default()
    {
        for (k, s) in [
            ("native", Setup::Native),
            ("floor", Setup::Floor),
            ("mesh", Setup::Mesh),
        ] {
            if let Some((_, m)) = r.memory.iter().find(|(x, m)| *x == s && m.workers == w) {
                put(&format!("rss_{k}_{w}"), format!("{:.1}", m.rss_mib));
                put(&format!("live_{k}_{w}"), format!("{:.1}", m.allocated_mib));
                put(&format!("heap_{k}_{w}"), format!("{:.1}", m.heap_mib));
            }
        }
        if let (Some(m), Some(f)) = (rss(r, Setup::Mesh, w), rss(r, Setup::Floor, w)) {
            put(&format!("rss_over_{w}"), format!("{:.1}", m - f));
        }
    }
    if let Some(s) = deployable(r) {
        put("dep_hosts", s.hosts.to_string());
        put(
            "dep_configure_ms",
            format!("{:.1}", s.mesh.configure.as_secs_f64() * 1e3),
        );
        put(
            "dep_configure_minstr",
            format!("{:.0}", s.instructions.configure as f64 / 1e6),
        );
        put(
            "dep_memory_mib",
            format!("{:.1}", s.mesh.memory_kib as f64 / 1024.0),
        );
        put("dep_json_mb", format!("{:.1}", s.config_bytes as f64 / 1e6));
    }
    put("probe_kb", format!("{:.0}", r.module_bytes.2 as f64 / 1e3));
    let cpu = |s| cpu_per_request(r, s);
    let ratio = |a, b| paired_ratio(r, a, b);
    for (k, s) in [
        ("native", Setup::Native),
        ("floor", Setup::Floor),
        ("mesh", Setup::Mesh),
        ("lua", Setup::Lua),
        ("direct", Setup::Direct),
    ] {
        put(&format!("cpu_{k}"), format!("{:.1}", cpu(s)));
    }
    put(
        "cpu_wasm_floor",
        format!("{:.1}", cpu(Setup::Floor) - cpu(Setup::Native)),
    );
    put(
        "cpu_mesh_added",
        format!("{:.1}", cpu(Setup::Mesh) - cpu(Setup::Floor)),
    );
    put(
        "cpu_lua_added",
        format!("{:.1}", cpu(Setup::Lua) - cpu(Setup::Native)),
    );
    put(
        "cpu_mesh_lua",
        format!("{:.2}", cpu(Setup::Mesh) / cpu(Setup::Lua).max(1e-9)),
    );
    put(
        "cpu_mesh_floor",
        format!("{:.2}", cpu(Setup::Mesh) / cpu(Setup::Floor).max(1e-9)),
    );
    put(
        "rps_floor_native",
        format!("{:.2}", ratio(Setup::Floor, Setup::Native)),
    );
    put(
        "rps_direct_native",
        format!("{:.2}", ratio(Setup::Direct, Setup::Native)),
    );
    let p50 = |s: Setup, k: usize| {
        let mut x = r
            .sequential
            .get(&(s.name(), r.kinds.get(k).copied().unwrap_or_default()))
            .cloned()
            .unwrap_or_default();
        pct(&mut x, 0.5)
    };
    for (k, i) in [
        ("routed", 0),
        ("preflight", 1),
        ("get", 2),
        ("nf", 3),
        ("pass", 4),
    ] {
        put(
            &format!("seq_{k}_floor"),
            format!("{:.0}", p50(Setup::Mesh, i) - p50(Setup::Floor, i)),
        );
        put(
            &format!("seq_{k}_lua"),
            format!("{:.0}", p50(Setup::Lua, i) - p50(Setup::Floor, i)),
        );
    }
    let (mesh, noop) = &r.digimon_wasm;
    put(
        "own_ns",
        format!("{:.0}", mesh.ns_per_request - noop.ns_per_request),
    );
    if let Some((a, b)) = r.jit_share {
        put(
            "jit_own_ns",
            format!("{:.0}", a * mesh.ns_per_request - b * noop.ns_per_request),
        );
        put("jit_mesh_pct", format!("{:.0}", a * 100.0));
    }
    put("host_calls", format!("{:.0}", mesh.host_calls));
    put("native_ns", format!("{:.0}", r.digimon_native.ns));
    put("allocs", format!("{:.1}", r.digimon_native.allocations));
    put(
        "instructions",
        r.instructions
            .map_or("(not measured)".to_owned(), |i| format!("{i:.0}")),
    );
    put("module_kb", format!("{:.0}", r.module_bytes.0 as f64 / 1e3));
    put("noop_kb", format!("{:.0}", r.module_bytes.1 as f64 / 1e3));
    if let Some(s) = r.scale.last() {
        put("big_hosts", s.hosts.to_string());
        put("big_json_mb", format!("{:.1}", s.config_bytes as f64 / 1e6));
        put(
            "big_configure_ms",
            format!("{:.0}", s.mesh.configure.as_secs_f64() * 1e3),
        );
        put(
            "big_compile_ms",
            format!("{:.0}", s.native.compile.as_secs_f64() * 1e3),
        );
        put(
            "big_memory_mib",
            format!("{:.0}", s.mesh.memory_kib as f64 / 1024.0),
        );
        put(
            "big_start_ms",
            format!("{:.0}", s.envoy.startup.as_secs_f64() * 1e3),
        );
        put(
            "big_rss_mib",
            format!("{:.0}", s.envoy.rss_kib as f64 / 1024.0),
        );
    }
    let start = |s: Setup| {
        r.startup
            .get(s.name())
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    put("start_native", format!("{:.0}", start(Setup::Native)));
    put("start_floor", format!("{:.0}", start(Setup::Floor)));
    put("start_mesh", format!("{:.0}", start(Setup::Mesh)));
    v
}

/// Replaces `{name}` in `text` with `values[name]`.
pub fn fill(text: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = text.to_owned();
    for (k, val) in values {
        out = out.replace(&format!("{{{k}}}"), val);
    }
    out
}

/// The whole report.
pub fn markdown(r: &Results, date: &str, machine: &str, reading: &str) -> anyhow::Result<String> {
    let mut o = String::new();
    let opts = r.options.clone().unwrap_or_else(crate::Options::full);
    writeln!(o, "# kubectl-mesh benchmarks\n")?;
    writeln!(
        o,
        "Generated by `make bench` on {date}. Every number below comes from this one run; ratios compare setups measured side by side, interleaved, on the same Envoy, listener and upstream.\n"
    )?;
    writeln!(o, "## Machine\n")?;
    writeln!(o, "- {machine}")?;
    writeln!(
        o,
        "- Envoy {} (`--concurrency 1`: one worker)",
        r.envoy_version
    )?;
    match &r.pinning {
        Some((e, l)) => writeln!(o, "- CPU pinning: the Envoy under test on CPU {e} (`taskset -c {e}`), wrk and the upstream Envoy on CPU {l}")?,
        None => writeln!(o, "- CPU pinning: none (fewer than 2 CPUs or no taskset)")?,
    }
    writeln!(
        o,
        "- Modules: `mesh_filter.wasm` {} bytes, no-op filter {} bytes, probe {} bytes",
        r.module_bytes.0, r.module_bytes.1, r.module_bytes.2
    )?;
    writeln!(
        o,
        "- Load average (1, 5, 15 min) of the machine, shared with other work: {} when the run started, {} when it ended. Other work moves the times and throughputs, not the instruction counts.\n",
        r.load[0], r.load[1]
    )?;

    writeln!(o, "## Targets (issue 21)\n")?;
    writeln!(o, "| target | this run | met |\n|---|---:|:---:|")?;
    for (t, m, ok) in targets(r) {
        writeln!(o, "| {t} | {m} | {} |", yes(ok))?;
    }
    writeln!(
        o,
        "\nEarlier targets (issue 11) that the ones above do not restate:\n"
    )?;
    writeln!(o, "| target | this run | met |\n|---|---:|:---:|")?;
    for (t, m, ok) in earlier_targets(r) {
        writeln!(o, "| {t} | {m} | {} |", yes(ok))?;
    }

    writeln!(
        o,
        "\n## Concurrent load\n\nwrk, one thread, {} connections, {:.1} s per run, {} rounds of A B C D E; the routed gRPC-Web POST with an Origin (CORS grant on the response). Throughput is the median over rounds; ratios are medians of per-round ratios.\n",
        opts.connections,
        opts.wrk_duration.as_secs_f64(),
        opts.rounds
    )?;
    writeln!(
        o,
        "| setup | req/s | vs native | vs floor | vs Lua | Envoy CPU per request (µs) | CPU vs floor | p50 (µs) | p99 (µs) | RSS after (MiB) | start to first answer (ms) |"
    )?;
    writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for s in Setup::ALL {
        let runs = r.wrk.get(s.name()).cloned().unwrap_or_default();
        let rps = median(&runs.iter().map(|w| w.rps).collect::<Vec<_>>());
        let p50 = median(&runs.iter().map(|w| w.p50).collect::<Vec<_>>());
        let p99 = median(&runs.iter().map(|w| w.p99).collect::<Vec<_>>());
        writeln!(
            o,
            "| {} | {rps:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {:.2} | {p50:.0} | {p99:.0} | {:.1} | {:.0} |",
            s.name(),
            paired_ratio(r, s, Setup::Native),
            paired_ratio(r, s, Setup::Floor),
            paired_ratio(r, s, Setup::Lua),
            cpu_per_request(r, s),
            cpu_per_request(r, s) / cpu_per_request(r, Setup::Floor).max(1e-9),
            r.rss_kib.get(s.name()).copied().unwrap_or(0) as f64 / 1024.0,
            r.startup
                .get(s.name())
                .map_or(0.0, |d| d.as_secs_f64() * 1e3)
        )?;
    }

    if !r.envoy_instructions.is_empty() {
        writeln!(
            o,
            "\n## Envoy's instructions per request (callgrind)\n\nThe routed gRPC-Web POST with an Origin, {} sequential requests on one connection per setup, Envoy under `valgrind --tool=callgrind` with counting switched on for those requests only; the worker thread's instructions (the main thread's timers left out). Repeatable to a fraction of a percent on a loaded machine. The probe is `bench/probe-filter`: the mesh filter's host calls for this request (read the headers, set the routing header and the gRPC-Web marker, the CORS grant and `Vary` on the response) with no logic, in the mesh setup's Envoy.\n",
            opts.callgrind_requests
        )?;
        writeln!(o, "The last rows take one part of the probe's calls away (or add one): their difference from the whole probe is what that part costs Envoy.\n")?;
        writeln!(o, "| setup | instructions per request | over native | over the floor | against the whole probe |\n|---|---:|---:|---:|---:|")?;
        let base = |name: &str| envoy_instructions(r, name).unwrap_or(0.0);
        for (name, i) in &r.envoy_instructions {
            writeln!(
                o,
                "| {name} | {:.0} | {:+.0} | {:+.0} | {:+.0} |",
                i.worker,
                i.worker - base(Setup::Native.name()),
                i.worker - base(Setup::Floor.name()),
                i.worker - base(crate::run::PROBE)
            )?;
        }
    }

    if !r.memory.is_empty() {
        writeln!(
            o,
            "\n## Memory per proxy\n\nEach setup started alone with 1, 2 and 8 workers (each worker runs its own Wasm VM), a second of wrk from 32 connections so every worker serves, then its RSS and, from the admin `/memory` endpoint, the live heap (`allocated`) and the heap the allocator holds (`heap_size`). The digimon config.\n"
        )?;
        writeln!(o, "| workers | native RSS (MiB) | floor RSS | mesh RSS | mesh over the floor | budget (8 MiB per worker) | live heap native / floor / mesh | heap held native / floor / mesh |\n|---:|---:|---:|---:|---:|---:|---:|---:|")?;
        for w in &opts.workers {
            let row = |s: Setup| {
                r.memory
                    .iter()
                    .find(|(x, m)| *x == s && m.workers == *w)
                    .map(|(_, m)| *m)
                    .unwrap_or_default()
            };
            let (n, f, m) = (row(Setup::Native), row(Setup::Floor), row(Setup::Mesh));
            writeln!(
                o,
                "| {w} | {:.1} | {:.1} | {:.1} | {:+.1} | {} | {:.1} / {:.1} / {:.1} | {:.0} / {:.0} / {:.0} |",
                n.rss_mib,
                f.rss_mib,
                m.rss_mib,
                m.rss_mib - f.rss_mib,
                8 * w,
                n.allocated_mib,
                f.allocated_mib,
                m.allocated_mib,
                n.heap_mib,
                f.heap_mib,
                m.heap_mib
            )?;
        }
    }

    writeln!(
        o,
        "\n## Sequential latency per request kind\n\nOne keep-alive connection, {} requests per setup and kind in {} interleaved blocks. p50 / p99 in µs; \"added\" is the mesh filter's p50 minus the other setup's.\n",
        opts.sequential * opts.blocks,
        opts.blocks
    )?;
    write!(o, "| request |")?;
    for s in Setup::ALL {
        write!(o, " {} |", s.name())?;
    }
    writeln!(o, " mesh added vs native | mesh added vs floor |")?;
    writeln!(o, "|---|{}---:|---:|", "---:|".repeat(Setup::ALL.len()))?;
    for k in &r.kinds {
        write!(o, "| {k} |")?;
        let mut p50s = BTreeMap::new();
        for s in Setup::ALL {
            let mut v = r
                .sequential
                .get(&(s.name(), *k))
                .cloned()
                .unwrap_or_default();
            let (p50, p99) = (pct(&mut v, 0.5), pct(&mut v, 0.99));
            p50s.insert(s.name(), p50);
            write!(o, " {p50:.0} / {p99:.0} |")?;
        }
        let m = p50s[Setup::Mesh.name()];
        writeln!(
            o,
            " {:.0} | {:.0} |",
            m - p50s[Setup::Native.name()],
            m - p50s[Setup::Floor.name()]
        )?;
    }

    let (mesh, noop) = &r.digimon_wasm;
    writeln!(
        o,
        "\n## The filter's own work (digimon gRPC-Web POST with Origin)\n"
    )?;
    writeln!(
        o,
        "| measure | mesh filter | no-op filter |\n|---|---:|---:|"
    )?;
    writeln!(
        o,
        "| wasmtime: time per request + response (ns) | {:.0} | {:.0} |",
        mesh.ns_per_request, noop.ns_per_request
    )?;
    writeln!(
        o,
        "| wasmtime: host calls per request + response | {:.1} | {:.1} |",
        mesh.host_calls, noop.host_calls
    )?;
    writeln!(
        o,
        "| wasmtime: buffers the host allocates in the guest | {:.1} | {:.1} |",
        mesh.guest_allocations, noop.guest_allocations
    )?;
    let names = |w: &crate::cost::WasmCost| {
        w.calls_by_name
            .iter()
            .map(|(n, c)| format!("{n} {c:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    writeln!(
        o,
        "| wasmtime: host calls by name | {} | {} |",
        names(mesh),
        names(noop)
    )?;
    if let Some((a, b)) = r.jit_share {
        writeln!(
            o,
            "| wasmtime: of that, in the module's own code (perf, JIT samples) (ns) | {:.0} ({:.0}%) | {:.0} ({:.0}%) |",
            a * mesh.ns_per_request,
            a * 100.0,
            b * noop.ns_per_request,
            b * 100.0
        )?;
    }
    let n = &r.digimon_native;
    writeln!(
        o,
        "| core natively: ns / heap allocations / header changes per request + response | {:.0} / {:.1} / {:.0} | |",
        n.ns, n.allocations, n.header_ops
    )?;
    if let Some(i) = r.instructions {
        writeln!(
            o,
            "| core natively: instructions per request + response (valgrind) | {i:.0} | |"
        )?;
    }

    writeln!(
        o,
        "\n## Scaling\n\nGenerated configs, {} routes per host (every tenth host a `*.zone-N.example.com` wildcard, every fourth with CORS); 64 requests spread over the hosts, each trying every route of its host. wasmtime: the real modules in the proxy-wasm host of `tests/wasm-host`; \"own work\" is mesh minus no-op on the same requests. Envoy: the mesh filter with that config as `render` emits it, start to the first routed answer, and sequential routed requests.\n",
        crate::cost::ROUTES_PER_HOST
    )?;
    writeln!(
        o,
        "| hosts | config JSON (KB) | on_configure, wasmtime (ms) | on_configure, Wasm instructions (M) | compile natively (ms) | linear memory after configure (KiB) | own work per request, wasmtime (µs) | Wasm instructions per request | host calls per request | core natively (ns) | Envoy start to first routed answer (ms) | Envoy RSS (MiB) | Envoy routed p50 (µs) |"
    )?;
    writeln!(
        o,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )?;
    for s in &r.scale {
        writeln!(
            o,
            "| {} | {:.0} | {:.1} | {:.0} | {:.1} | {} | {:.2} | {:.0} | {:.1} | {:.0} | {:.0} | {:.1} | {:.0} |",
            s.hosts,
            s.config_bytes as f64 / 1e3,
            s.mesh.configure.as_secs_f64() * 1e3,
            s.instructions.configure as f64 / 1e6,
            s.native.compile.as_secs_f64() * 1e3,
            s.mesh.memory_kib,
            (s.mesh.ns_per_request - s.noop.ns_per_request) / 1e3,
            s.instructions.per_request,
            s.mesh.host_calls,
            s.native.ns,
            s.envoy.startup.as_secs_f64() * 1e3,
            s.envoy.rss_kib as f64 / 1024.0,
            s.envoy.p50
        )?;
    }

    if !r.perf.is_empty() {
        writeln!(o, "\n## Where Envoy's CPU goes under load (perf)\n")?;
        writeln!(o, "`perf record -e cpu-clock -p ENVOY` during one more wrk run per setup, samples by binary (percent). `envoy` includes V8's runtime (linked in); JIT-compiled Wasm and Lua run from anonymous memory (`[unknown]`/`//anon`/`[JIT]`); the kernel part is mostly loopback TCP.\n")?;
        let mut dsos: Vec<String> = Vec::new();
        for (_, shares) in &r.perf {
            for (d, p) in shares {
                if *p >= 0.5 && !dsos.contains(d) {
                    dsos.push(d.clone());
                }
            }
        }
        write!(o, "| setup |")?;
        for d in &dsos {
            write!(o, " {} |", d.replace('|', "/"))?;
        }
        writeln!(o, "\n|---|{}", "---:|".repeat(dsos.len()))?;
        for (name, shares) in &r.perf {
            write!(o, "| {name} |")?;
            for d in &dsos {
                let p = shares.iter().find(|(x, _)| x == d).map_or(0.0, |(_, p)| *p);
                write!(o, " {p:.1} |")?;
            }
            writeln!(o)?;
        }
    }

    writeln!(o, "\n## Startup per module\n")?;
    writeln!(
        o,
        "| setup | module (bytes) | Envoy start to first routed answer (ms) |\n|---|---:|---:|"
    )?;
    for (s, bytes) in [
        (Setup::Native, 0),
        (Setup::Floor, r.module_bytes.1),
        (Setup::Mesh, r.module_bytes.0),
    ] {
        writeln!(
            o,
            "| {} | {} | {:.0} |",
            s.name(),
            bytes,
            r.startup
                .get(s.name())
                .map_or(0.0, |d| d.as_secs_f64() * 1e3)
        )?;
    }
    writeln!(o)?;
    o.push_str(&fill(reading, &values(r)));
    Ok(o)
}
