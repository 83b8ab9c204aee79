//! `make bench`: runs every measurement and writes `bench/README.md`.
//!
//! `mesh-bench [--smoke] [--out FILE]`; `mesh-bench rerender` rewrites the report from the last
//! run with the current `bench/reading.md`; `mesh-bench engine-loop CONFIG N` runs the core N
//! times (valgrind counts its instructions); `compile`, `configure`, `callgrind`, `wasm-cost` and
//! `bootstrap` are for studying one part by hand.

use mesh_bench::cost::{engine_loop, CountingAlloc};
use mesh_bench::{report, run, Options};
use std::path::PathBuf;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("engine-loop") {
        let file = PathBuf::from(args.get(1).cloned().unwrap_or_default());
        let n = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1000);
        return engine_loop(&file, n);
    }
    if args.first().map(String::as_str) == Some("compile") {
        // Compiles the N-host config natively M times (to profile configure by hand).
        let n = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(10_000);
        let m = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(5);
        let config = mesh_bench::cost::generated_config(n);
        for _ in 0..m {
            let t = std::time::Instant::now();
            let fc = mesh_core::FilterConfig::from_json(&config)?;
            let parsed = t.elapsed();
            let engine = mesh_core::compile::compile_owned(fc.mesh, fc.delivery)?;
            let compiled = t.elapsed();
            let hosts = engine.size().0;
            drop(engine);
            eprintln!(
                "{hosts} hosts: parse {parsed:?}, compile {:?}, drop the engine {:?}",
                compiled - parsed,
                t.elapsed() - compiled
            );
        }
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("configure") {
        // Configure of the N-host config in wasmtime for one module (fastest of three, as a
        // config push replaces the engine), and the linear memory after it.
        let n = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1_700);
        let module = mesh_bench::cost::load_module(std::path::Path::new(
            args.get(2).map(String::as_str).unwrap_or_default(),
        ))?;
        let config = mesh_bench::cost::generated_config(n);
        let c = mesh_bench::cost::wasm_cost(&module, &config, &[], 0)?;
        let path = std::path::Path::new(args.get(2).map(String::as_str).unwrap_or_default());
        let metered = mesh_bench::cost::load_metered_module(path)?;
        let requests = mesh_bench::cost::generated_requests(n, 64);
        let i = mesh_bench::cost::wasm_instructions(&metered, &config, &requests)?;
        eprintln!(
            "{n} hosts ({} KB of JSON): configure {:.1} ms, {:.1} M Wasm instructions; linear memory {} KiB; {:.0} Wasm instructions per request",
            config.len() / 1000,
            c.configure.as_secs_f64() * 1e3,
            i.configure as f64 / 1e6,
            c.memory_kib,
            i.per_request
        );
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("callgrind") {
        // Envoy's instructions per routed request of native, floor, probe and mesh (callgrind).
        let n = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1_000);
        let inputs = mesh_bench::run::inputs()?;
        let upstream = mesh_bench::run::start_upstream(&inputs, Some("0"))?;
        for (name, i) in mesh_bench::run::envoy_instructions(&inputs, upstream.port, Some("1"), n)?
        {
            eprintln!(
                "{name}: {:.0} instructions per request (worker), {:.0} (all threads)",
                i.worker, i.all
            );
        }
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("wasm-cost") {
        // The digimon request's cost in wasmtime for one module (to compare builds by hand),
        // configured with the digimon config or the text of CONFIG_FILE.
        let module = mesh_bench::cost::load_module(std::path::Path::new(
            args.get(1).map(String::as_str).unwrap_or_default(),
        ))?;
        let json = match args.get(2) {
            Some(file) => std::fs::read_to_string(file)?,
            None => mesh_bench::run::inputs()?.mesh_json,
        };
        for _ in 0..2 {
            let c = mesh_bench::cost::wasm_cost(
                &module,
                &json,
                &[mesh_bench::cost::digimon_request()],
                1_000_000,
            )?;
            eprintln!(
                "{:.0} ns per request, {:.1} host calls: {:?}",
                c.ns_per_request, c.host_calls, c.calls_by_name
            );
        }
        let path = std::path::Path::new(args.get(1).map(String::as_str).unwrap_or_default());
        let metered = mesh_bench::cost::load_metered_module(path)?;
        let i = mesh_bench::cost::wasm_instructions(
            &metered,
            &json,
            &[mesh_bench::cost::digimon_request()],
        )?;
        eprintln!("{:.0} Wasm instructions per request", i.per_request);
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("bootstrap") {
        // The mesh Envoy's bootstrap for N generated hosts (to study one by hand).
        let n = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(10);
        let mut local = mesh_bench::setups::mesh_envoy(
            &mesh_bench::run::inputs()?,
            &mesh_bench::cost::generated_config(n),
            9,
        )?;
        local.listen = "127.0.0.1:10000".parse()?;
        local.admin = Some("127.0.0.1:10001".parse()?);
        println!("{}", local.bootstrap());
        return Ok(());
    }
    let root = mesh_tests::workspace_root();
    let smoke = args.iter().any(|a| a == "--smoke");
    let out = match args.iter().position(|a| a == "--out") {
        Some(i) => PathBuf::from(args.get(i + 1).cloned().unwrap_or_default()),
        None => root.join("bench/README.md"),
    };
    let mut opts = if smoke {
        Options::smoke()
    } else {
        Options::full()
    };
    let valgrind = std::process::Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok();
    if valgrind && !smoke {
        opts.valgrind = std::env::current_exe().ok();
    }
    // The measured part and the values are kept in target/, so a change to the prose alone
    // (`mesh-bench rerender`) does not need another run.
    let last = root.join("target/bench-last");
    let (tables, values) = if args.first().map(String::as_str) == Some("rerender") {
        let values = std::fs::read_to_string(last.join("values.json"))?;
        (
            std::fs::read_to_string(last.join("tables.md"))?,
            serde_json::from_str(&values)?,
        )
    } else {
        let results = run(&opts)?;
        let tables = report::markdown(&results, &date(), &machine(), "")?;
        let values = report::values(&results);
        std::fs::create_dir_all(&last)?;
        std::fs::write(last.join("tables.md"), &tables)?;
        std::fs::write(last.join("values.json"), serde_json::to_string(&values)?)?;
        (tables, values)
    };
    let reading = std::fs::read_to_string(root.join("bench/reading.md"))?;
    let text = format!("{tables}{}", report::fill(&reading, &values));
    std::fs::write(&out, &text)?;
    print!("{text}");
    eprintln!("\nwritten to {}", out.display());
    Ok(())
}

/// The date, from `date` (no date crate for one line).
fn date() -> String {
    command("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
}

/// CPU model and count.
fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    // Counted from /proc/cpuinfo: this process is pinned to one CPU by then.
    let cpus = std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(0);
    format!("{cpus} CPUs ({model}), {}", command("uname", &["-sr"]))
}

fn command(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
