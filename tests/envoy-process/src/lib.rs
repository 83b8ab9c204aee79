//! A real Envoy process for tests: which binary, starting it with a bootstrap in its own
//! directory, its log, and cleanup (killed on drop; the log's tail printed if the test failed).
//! Shared by the plugin's tests and the cross-crate tests, which each wait for readiness their
//! own way. [`Captured`] runs any other child process with its output collected.

mod captured;

pub use captured::{read_lines, Captured};

use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;

/// Ports handed out by [`free_port`] in this process.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback port that was free a moment ago and that this process has not handed out before.
/// Envoy binds its ports after the test picked them; tests run as threads of one process, and
/// without the memory two of them could be handed the same just-released port.
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

/// The Envoy the Makefile pins when `$MESH_ENVOY` is not set.
pub const PINNED: &str = ".venv/envoy-1.40.0/bin/envoy";

/// The workspace root (this crate lives in `tests/envoy-process`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The Envoy binary: `$MESH_ENVOY`, else the Makefile's pinned one.
pub fn binary() -> PathBuf {
    match std::env::var_os("MESH_ENVOY") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join(PINNED),
    }
}

/// [`binary`], which must exist: a test without Envoy fails, saying how to get it.
pub fn require_binary() -> PathBuf {
    let path = binary();
    assert!(
        path.exists(),
        "no Envoy at {} (run `make envoy`, or set MESH_ENVOY)",
        path.display()
    );
    path
}

/// A running Envoy; killed on drop, and its log printed if the thread is panicking.
pub struct Envoy {
    child: Child,
    dir: PathBuf,
}

impl Envoy {
    /// Writes `bootstrap` into `dir` and starts Envoy on it with one worker, logging at info
    /// level to `dir/envoy.log`, plus `args`. It is not ready yet: poll it.
    pub fn spawn(bootstrap: &Value, dir: &Path, args: &[&str]) -> std::io::Result<Envoy> {
        let bin = binary();
        if !bin.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "Envoy not found at {} (set MESH_ENVOY or run `make envoy`)",
                    bin.display()
                ),
            ));
        }
        std::fs::create_dir_all(dir)?;
        let config = dir.join("envoy.json");
        std::fs::write(&config, serde_json::to_string_pretty(bootstrap)?)?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", "1", "--disable-hot-restart", "-l", "info"])
            .args(args)
            .arg("--log-path")
            .arg(dir.join("envoy.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Envoy {
            child,
            dir: dir.to_owned(),
        })
    }

    /// `Some(status)` once Envoy has exited (it refused its config, or a port was taken).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// Its directory (bootstrap, log).
    pub fn dir(&self) -> &Path {
        &self.dir
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
