//! A real Envoy process for tests: config builders (mesh filter or native routes), free ports,
//! readiness wait, and its log printed when the test fails.

use crate::client::Request;
use kubectl_mesh::envoy;
use kubectl_mesh::verify::process;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Path of the Envoy binary: `$MESH_ENVOY`, else the Makefile's pinned virtualenv.
pub use envoy_process::binary as envoy_binary;

/// Path of the filter module: `$MESH_WASM`, else the default release build output.
pub fn wasm_module() -> PathBuf {
    match std::env::var_os("MESH_WASM") {
        Some(p) => PathBuf::from(p),
        None => crate::workspace_root().join("target/wasm32-wasip1/release/mesh_filter.wasm"),
    }
}

/// What an Envoy instance should run.
#[derive(Debug, Clone)]
pub struct EnvoySpec {
    /// `route_config` of the HTTP connection manager.
    pub route_config: Value,
    /// HTTP filters before the router.
    pub http_filters: Vec<Value>,
    /// Clusters: name and loopback port.
    pub clusters: Vec<(String, u16)>,
    /// Extra HTTP connection manager fields: the mesh side's reserved-header strip, or
    /// `strip_any_host_port` for native configs whose domains have no ports.
    pub hcm_extra: serde_json::Map<String, Value>,
}

impl EnvoySpec {
    /// The mesh filter with `config_json` (a MeshConfig or the filter's envelope, possibly
    /// invalid on purpose), routing to `clusters`: the filters, routing route and header strip
    /// `render` emits, from the plugin's builder.
    pub fn mesh(config_json: &str, clusters: Vec<(String, u16)>) -> EnvoySpec {
        let grpc_web = mesh_core::FilterConfig::from_json(config_json)
            .map(|fc| envoy::uses_grpc_web(&fc.mesh))
            .unwrap_or(false);
        let code = envoy::local_code(&wasm_module().display().to_string());
        let mut http_filters = vec![envoy::http_filter(envoy::plugin_config_json(
            config_json,
            envoy::FailPolicy::Reload,
            code,
        ))];
        if grpc_web {
            http_filters.push(envoy::grpc_web_filter());
        }
        let local = envoy::LocalEnvoy::mesh_with(http_filters, loopback(0), vec![]);
        EnvoySpec {
            route_config: local.route_config,
            http_filters: local.http_filters,
            clusters,
            hcm_extra: local.hcm_extra,
        }
    }

    /// The bootstrap document for listener `port` and admin `admin_port`.
    pub fn bootstrap(&self, port: u16, admin_port: u16) -> Value {
        let mut hcm_extra = self.hcm_extra.clone();
        // Room for the 64 KiB header cases (Envoy's default limit is 60 KiB).
        hcm_extra.insert("max_request_headers_kb".into(), json!(96));
        hcm_extra.insert("stat_prefix".into(), json!("test"));
        envoy::LocalEnvoy {
            listen: loopback(port),
            admin: Some(loopback(admin_port)),
            http_filters: self.http_filters.clone(),
            route_config: self.route_config.clone(),
            clusters: self
                .clusters
                .iter()
                .map(|(name, p)| envoy::StaticCluster {
                    name: name.clone(),
                    address: loopback(*p),
                    http2: false,
                })
                .collect(),
            hcm_extra,
        }
        .bootstrap()
    }

    /// Starts Envoy and waits until it is ready.
    pub fn start(&self) -> anyhow::Result<Envoy> {
        Envoy::start(self)
    }
}

/// `strip_any_host_port: true`, which native configs need: their domains have no ports.
pub fn strip_any_host_port() -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("strip_any_host_port".into(), json!(true));
    m
}

fn loopback(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

/// A running Envoy (the plugin's [`kubectl_mesh::verify::process::Envoy`]) with its listener
/// and admin ports; killed on drop, and its log printed if the test failed.
pub struct Envoy {
    process: process::Envoy,
    /// Listener port.
    pub port: u16,
    /// Admin port.
    pub admin_port: u16,
}

impl Envoy {
    fn start(spec: &EnvoySpec) -> anyhow::Result<Envoy> {
        Envoy::start_with(&|admin_port| {
            let port = crate::free_port();
            (spec.bootstrap(port, admin_port), port)
        })
    }

    /// Starts Envoy (`$MESH_ENVOY`, else the Makefile's pinned one) with the bootstrap
    /// `make(admin_port)` returns (with the port requests go to) and waits until it is ready.
    /// Ports are picked free just before start; a rare collision is retried with new ones.
    pub fn start_with(make: &dyn Fn(u16) -> (Value, u16)) -> anyhow::Result<Envoy> {
        let process = process::Envoy::start_with(
            &envoy_binary(),
            &["--component-log-level", "wasm:debug"],
            make,
        )?;
        Ok(Envoy {
            port: process.port,
            admin_port: process.admin_port,
            process,
        })
    }

    /// Sends a request through the listener.
    pub fn send(&self, req: &Request) -> crate::client::Response {
        match req.send(self.port) {
            Ok(r) => r,
            Err(e) => panic!(
                "request {} {} failed: {e}\nEnvoy log:\n{}",
                req.method,
                req.path,
                self.log()
            ),
        }
    }

    /// A counter or gauge from the admin `/stats` endpoint.
    pub fn stat(&self, name: &str) -> Option<u64> {
        self.process.stat(name)
    }

    /// A counter once it reaches `value`: the filter hands its request counters to Envoy on a
    /// one-second tick, so a count shows up to a second after the request. `None` if it has
    /// not after ten seconds (the last value read is in the panic message of a failed assert).
    pub fn stat_reaching(&self, name: &str, value: u64) -> Option<u64> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.stat(name);
            if got == Some(value) || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        Some(self.process.pid())
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The startup inventory of extensions is noise; show the rest.
            let log = self.log();
            let tail: Vec<&str> = log
                .lines()
                .rev()
                .filter(|l| !l.contains("][main]"))
                .take(150)
                .collect();
            eprintln!(
                "---- Envoy log (last {} lines, {}) ----",
                tail.len(),
                self.process.dir().display()
            );
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}
