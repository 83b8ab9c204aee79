//! The filter's own cost, without Envoy: generated configs of many hosts, the module in the
//! wasmtime proxy-wasm host (time per request against the no-op module, host calls, guest
//! allocations, configure time, linear memory), and the core natively (time, heap allocations
//! and, under valgrind, instructions per request).

use mesh_core::{Engine, HeaderList, HeaderMap, Pairs, RequestOutcome};
use mesh_wasm_host::wasmtime::{Engine as WasmEngine, Module};
use mesh_wasm_host::Filter;
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Routes per generated host.
pub const ROUTES_PER_HOST: usize = 10;

/// A config with `hosts` hosts of [`ROUTES_PER_HOST`] routes each: every tenth host is a
/// `*.zone-N.example.com` wildcard, every fourth has a CORS policy; routes are prefixes
/// `/api/v0/` .. `/api/v8/` and a last `/`, to one of 100 services (so the Envoy running it
/// has 100 clusters, not one per route).
pub fn generated_config(hosts: usize) -> String {
    let hosts: Vec<_> = (0..hosts)
        .map(|i| {
            let domain = match i % 10 {
                9 => format!("*.zone-{i}.example.com"),
                _ => format!("svc-{i}.example.com"),
            };
            let mut routes: Vec<_> = (0..ROUTES_PER_HOST - 1)
                .map(|j| json!({"name": format!("r{j}"), "match": {"prefix": format!("/api/v{j}/")}, "to": {"service": format!("svc-{}", i % 100), "port": 8080}}))
                .collect();
            routes.push(json!({"name": "rest", "to": {"service": format!("svc-{}", i % 100), "port": 8080}}));
            let mut h = json!({"name": format!("h{i}"), "domains": [domain], "routes": routes});
            if i % 4 == 0 {
                h["cors"] = json!({"allowOrigins": [{"exact": format!("https://app-{i}.example.com")}], "allowMethods": ["GET", "POST"], "maxAge": 600});
            }
            h
        })
        .collect();
    json!({"apiVersion": "kubectl-mesh/v1alpha1", "kind": "MeshConfig", "namespace": "bench", "hosts": hosts}).to_string()
}

/// Requests spread over the generated config's hosts: exact and wildcard hosts, the last prefix
/// route (every route is tried), an Origin on CORS hosts.
pub fn generated_requests(hosts: usize, count: usize) -> Vec<Vec<(String, String)>> {
    (0..count)
        .map(|k| {
            let i = (k * 7919) % hosts;
            let authority = match i % 10 {
                9 => format!("a{k}.zone-{i}.example.com"),
                _ => format!("svc-{i}.example.com"),
            };
            let mut h = vec![
                (":authority".to_owned(), authority),
                (":path".to_owned(), "/api/v8/items?page=2".to_owned()),
                (":method".to_owned(), "GET".to_owned()),
                (":scheme".to_owned(), "http".to_owned()),
                ("user-agent".to_owned(), "bench".to_owned()),
                ("accept".to_owned(), "*/*".to_owned()),
            ];
            if i % 4 == 0 {
                h.push(("origin".to_owned(), format!("https://app-{i}.example.com")));
            }
            h
        })
        .collect()
}

/// The digimon gRPC-Web call as header pairs.
pub fn digimon_request() -> Vec<(String, String)> {
    [
        (":authority", "api.backend.com"),
        (":path", "/digimon.Digimon/Query"),
        (":method", "POST"),
        (":scheme", "http"),
        ("origin", "http://web.backend.com"),
        ("content-type", "application/grpc-web-text"),
        ("x-grpc-web", "1"),
        ("user-agent", "bench"),
        ("content-length", "20"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

/// What one module costs per request in the wasmtime host.
#[derive(Debug, Clone, Default)]
pub struct WasmCost {
    /// Wall time per request + response (ns), averaged.
    pub ns_per_request: f64,
    /// Host calls per request + response.
    pub host_calls: f64,
    /// Host calls by name, per request.
    pub calls_by_name: Vec<(&'static str, f64)>,
    /// Buffers the host allocated in the guest, per request.
    pub guest_allocations: f64,
    /// `on_configure` wall time.
    pub configure: Duration,
    /// Linear memory after configure (KiB).
    pub memory_kib: u64,
}

/// Loads a module into a fresh wasmtime engine (`MESH_BENCH_PERFMAP=1`: one that writes
/// `/tmp/perf-PID.map`, so `perf report` names the module's functions).
pub fn load_module(path: &Path) -> anyhow::Result<Module> {
    let mut config = mesh_wasm_host::wasmtime::Config::new();
    if std::env::var_os("MESH_BENCH_PERFMAP").is_some() {
        config.profiler(mesh_wasm_host::wasmtime::ProfilingStrategy::PerfMap);
    }
    let engine = WasmEngine::new(&config)?;
    Module::from_file(&engine, path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Loads a module into an engine that meters fuel, for [`wasm_instructions`].
pub fn load_metered_module(path: &Path) -> anyhow::Result<Module> {
    let mut config = mesh_wasm_host::wasmtime::Config::new();
    config.consume_fuel(true);
    let engine = WasmEngine::new(&config)?;
    Module::from_file(&engine, path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Wasm instructions the module runs (wasmtime fuel): repeatable regardless of the machine's
/// load, unlike the times of [`wasm_cost`]. Host calls are not in them.
#[derive(Debug, Clone, Copy, Default)]
pub struct WasmInstructions {
    /// One configure with `config` that replaces an engine compiled from it (a config push).
    pub configure: u64,
    /// Per request + response, averaged over the requests.
    pub per_request: f64,
}

/// Counts [`WasmInstructions`] for `config` and one pass over `requests` (after a warm-up pass),
/// with a module from [`load_metered_module`].
pub fn wasm_instructions(
    module: &Module,
    config: &str,
    requests: &[Vec<(String, String)>],
) -> anyhow::Result<WasmInstructions> {
    let mut f = Filter::with_module(module, &mesh_tests_small_config())?;
    let fuel = |f: &Filter| {
        f.fuel()
            .ok_or_else(|| anyhow::anyhow!("the module's engine meters no fuel"))
    };
    anyhow::ensure!(f.configure(config)?, "the filter refused the config");
    let before = fuel(&f)?;
    anyhow::ensure!(f.configure(config)?, "the filter refused the config");
    let configure = fuel(&f)? - before;
    let response = [(":status", "200"), ("content-type", "application/grpc")];
    let pass = |f: &mut Filter| -> anyhow::Result<()> {
        for r in requests {
            f.request(r)?;
            f.response(&response)?;
        }
        f.finish()?;
        Ok(())
    };
    pass(&mut f)?;
    let before = fuel(&f)?;
    pass(&mut f)?;
    Ok(WasmInstructions {
        configure,
        per_request: (fuel(&f)? - before) as f64 / requests.len().max(1) as f64,
    })
}

/// Configures `module` with `config` and sends `requests` (cycled, `n` in all, after a warm-up
/// of one pass), each with a 200 response.
pub fn wasm_cost(
    module: &Module,
    config: &str,
    requests: &[Vec<(String, String)>],
    n: usize,
) -> anyhow::Result<WasmCost> {
    // Configure a small config first so the measured configure is the big one alone.
    let mut f = Filter::with_module(module, &mesh_tests_small_config())?;
    // The fastest of three configures (each replaces the previous engine, as a config push does).
    let mut configure = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        anyhow::ensure!(f.configure(config)?, "the filter refused the config");
        configure = configure.min(t.elapsed());
    }
    let memory_kib = f.memory_pages() * 64;
    let response = [(":status", "200"), ("content-type", "application/grpc")];
    for r in requests {
        f.request(r)?;
        f.response(&response)?;
    }
    f.finish()?;
    let calls_before: Vec<(&'static str, u64)> = f.host_call_counts().to_vec();
    let (calls0, allocs0) = (f.host_calls(), f.guest_allocations());
    // The fastest of five passes: on a shared machine, other work only ever adds time.
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for r in requests.iter().cycle().take(n / 5) {
            f.request(r)?;
            f.response(&response)?;
        }
        f.finish()?;
        best = best.min(t.elapsed().as_nanos() as f64 / (n / 5).max(1) as f64);
    }
    let n = (n / 5).max(1) * 5;
    let per = |x: u64| x as f64 / n as f64;
    let calls_by_name = f
        .host_call_counts()
        .iter()
        .map(|(name, c)| {
            let before = calls_before
                .iter()
                .find(|(b, _)| b == name)
                .map_or(0, |(_, c)| *c);
            (*name, per(c - before))
        })
        .filter(|(_, c)| *c > 0.0)
        .collect();
    Ok(WasmCost {
        ns_per_request: best,
        host_calls: per(f.host_calls() - calls0),
        calls_by_name,
        guest_allocations: per(f.guest_allocations() - allocs0),
        configure,
        memory_kib,
    })
}

fn mesh_tests_small_config() -> String {
    generated_config(1)
}

/// Heap allocations made by this process (counted by the bench binary's allocator; 0 where
/// it is not installed, as in the smoke test).
pub static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting allocations into [`ALLOCATIONS`].
pub struct CountingAlloc;

#[allow(unsafe_code)]
// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { std::alloc::System.realloc(ptr, layout, size) }
    }
}

/// Counts header changes instead of making them (what the adapter turns into host calls).
#[derive(Debug, Default)]
pub struct CountingMap(pub u64);

impl HeaderMap for CountingMap {
    type Error = std::convert::Infallible;
    fn set(&mut self, _: &str, _: &[u8]) -> Result<(), Self::Error> {
        self.0 += 1;
        Ok(())
    }
    fn add(&mut self, _: &str, _: &[u8]) -> Result<(), Self::Error> {
        self.0 += 1;
        Ok(())
    }
    fn remove(&mut self, _: &str) -> Result<(), Self::Error> {
        self.0 += 1;
        Ok(())
    }
}

/// One request and its response through the engine, reading the request from the proxy-wasm
/// map bytes as the adapter does.
pub fn engine_once(engine: &Engine, pairs_bytes: &[u8], map: &mut CountingMap) {
    let Ok(pairs) = Pairs::parse(pairs_bytes) else {
        return;
    };
    if let Ok(RequestOutcome::Forward(state)) = engine.on_request_headers(&pairs, map) {
        if state.needs_response() {
            let _ = engine.on_response_headers(&state, map);
        }
    }
}

/// The core natively: ns, heap allocations and header changes per request + response.
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeCost {
    /// Wall time (ns).
    pub ns: f64,
    /// Heap allocations.
    pub allocations: f64,
    /// Header changes (set/add/remove), i.e. host calls besides reading and metrics.
    pub header_ops: f64,
    /// `compile_json` of the config (wall time).
    pub compile: Duration,
}

/// Serialized request maps for `requests`.
pub fn pairs_bytes(requests: &[Vec<(String, String)>]) -> Vec<Vec<u8>> {
    requests
        .iter()
        .map(|r| {
            HeaderList::from_pairs(r.iter().map(|(k, v)| (k.as_str(), v.as_str()))).to_pairs_bytes()
        })
        .collect()
}

/// Measures the core natively on `requests` (cycled, `n` in all).
pub fn native_cost(
    config: &str,
    requests: &[Vec<(String, String)>],
    n: usize,
) -> anyhow::Result<NativeCost> {
    let t = Instant::now();
    let engine = mesh_core::compile_json(config)?;
    let compile = t.elapsed();
    let bytes = pairs_bytes(requests);
    let mut map = CountingMap::default();
    for b in &bytes {
        engine_once(&engine, b, &mut map);
    }
    let (allocs0, ops0) = (ALLOCATIONS.load(Ordering::Relaxed), map.0);
    let mut ns = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        for b in bytes.iter().cycle().take(n / 5) {
            engine_once(&engine, std::hint::black_box(b), &mut map);
        }
        ns = ns.min(t.elapsed().as_nanos() as f64 / (n / 5).max(1) as f64);
    }
    let n = (n / 5).max(1) * 5;
    Ok(NativeCost {
        ns,
        allocations: (ALLOCATIONS.load(Ordering::Relaxed) - allocs0) as f64 / n as f64,
        header_ops: (map.0 - ops0) as f64 / n as f64,
        compile,
    })
}

/// Instructions per request + response of the core natively, counted by valgrind (cachegrind,
/// no cache simulation): deterministic, unlike time. Runs `exe engine-loop CONFIG N` twice and
/// takes the difference. `None` when valgrind is missing.
pub fn instructions_per_request(exe: &Path, config_file: &Path) -> Option<f64> {
    let run = |n: usize| -> Option<f64> {
        let out = std::process::Command::new("valgrind")
            .args([
                "--tool=cachegrind",
                "--cache-sim=no",
                "--cachegrind-out-file=/dev/null",
            ])
            .arg(exe)
            .arg("engine-loop")
            .arg(config_file)
            .arg(n.to_string())
            .output()
            .ok()?;
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let line = err
            .lines()
            .find(|l| l.contains("I") && l.contains("refs:"))?;
        line.split("refs:")
            .nth(1)?
            .trim()
            .replace(',', "")
            .parse()
            .ok()
    };
    let (a, b) = (run(1_000)?, run(11_000)?);
    Some((b - a) / 10_000.0)
}

/// The `engine-loop` subcommand: `n` digimon requests through the core (for valgrind).
pub fn engine_loop(config_file: &Path, n: usize) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(config_file)?;
    let engine = mesh_core::compile_json(&text)?;
    let bytes = pairs_bytes(&[digimon_request()]);
    let mut map = CountingMap::default();
    for _ in 0..n {
        engine_once(&engine, std::hint::black_box(&bytes[0]), &mut map);
    }
    std::hint::black_box(map.0);
    Ok(())
}
