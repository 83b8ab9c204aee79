//! A real Envoy process for tests: config builders (mesh filter or native routes), free ports,
//! readiness wait, and its log printed when the test fails.

use crate::client::Request;
use kubectl_mesh::envoy;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Path of the Envoy binary: `$MESH_ENVOY`, else the Makefile's pinned virtualenv.
pub fn envoy_binary() -> PathBuf {
    match std::env::var_os("MESH_ENVOY") {
        Some(p) => PathBuf::from(p),
        None => crate::workspace_root().join(".venv/envoy-1.40.0/bin/envoy"),
    }
}

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
            true,
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

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A running Envoy; killed on drop, and its log printed if the thread is panicking.
pub struct Envoy {
    child: Child,
    /// Listener port.
    pub port: u16,
    /// Admin port.
    pub admin_port: u16,
    dir: PathBuf,
}

impl Envoy {
    fn start(spec: &EnvoySpec) -> anyhow::Result<Envoy> {
        let bin = envoy_binary();
        anyhow::ensure!(
            bin.exists(),
            "Envoy not found at {} (set MESH_ENVOY or run `make envoy`)",
            bin.display()
        );
        // Ports are picked free just before start; a rare collision is retried.
        let mut last_err = None;
        for _ in 0..3 {
            let dir = std::env::temp_dir().join(format!(
                "mesh-envoy-{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&dir)?;
            let (port, admin_port) = (crate::free_port(), crate::free_port());
            let cfg = dir.join("envoy.yaml");
            std::fs::write(
                &cfg,
                serde_json::to_string_pretty(&spec.bootstrap(port, admin_port))?,
            )?;
            let log = dir.join("envoy.log");
            let child = Command::new(&bin)
                .arg("-c")
                .arg(&cfg)
                .args([
                    "--concurrency",
                    "1",
                    "--disable-hot-restart",
                    "-l",
                    "info",
                    "--component-log-level",
                    "wasm:debug",
                ])
                .arg("--log-path")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            let mut envoy = Envoy {
                child,
                port,
                admin_port,
                dir: dir.clone(),
            };
            match envoy.wait_ready(Duration::from_secs(60)) {
                Ok(()) => return Ok(envoy),
                Err(e) if e.to_string().contains("ddress already in use") => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("Envoy did not start")))
    }

    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("Envoy exited with {status}; log:\n{}", self.log());
            }
            if let Ok(r) = Request::get("admin", "/ready").send(self.admin_port) {
                if r.status == 200 {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!("Envoy not ready after {timeout:?}; log:\n{}", self.log())
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
        let r = Request::get("admin", &format!("/stats?filter=^{name}$"))
            .send(self.admin_port)
            .ok()?;
        let text = String::from_utf8_lossy(&r.body).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: "))?.trim().parse().ok())
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        Some(self.child.id())
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            // The startup inventory of extensions is noise; show the rest.
            let tail: Vec<&str> = log
                .lines()
                .rev()
                .filter(|l| !l.contains("][main]"))
                .take(150)
                .collect();
            eprintln!(
                "---- Envoy log (last {} lines, {}) ----",
                tail.len(),
                self.dir.display()
            );
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
