//! `kubectl mesh run` in real Envoy ($MESH_ENVOY): the ready line, a routed request, log level,
//! signals forwarded to Envoy and its exit status passed on.

// A failed unwrap in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use envoy_process::{free_port, Captured};
use rustix::process::{kill_process, Pid, Signal};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

/// A one-thread HTTP/1.1 server answering every request with what it received.
fn echo_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf).to_lowercase();
            let body = format!("upstream got: {}", head.trim_end());
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// A running `kubectl mesh run`, its stdout and stderr collected; stopped with SIGTERM (which
/// it forwards to Envoy) and then SIGKILL when the test ends.
struct Running(Captured);

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kubectl-mesh"));
        cmd.arg("run").args(args);
        Running(Captured::spawn(&mut cmd).unwrap())
    }

    fn output(&self) -> String {
        self.0.output()
    }

    /// Waits until the output contains `needle`; false if the process exits or time runs out.
    fn wait_for(&mut self, needle: &str) -> bool {
        self.0.wait_for(needle, Duration::from_secs(90))
    }

    fn signal(&self, sig: Signal) {
        kill_process(Pid::from_raw(self.0.child.id() as i32).unwrap(), sig).unwrap();
    }

    /// Waits for the exit (at most 30 s) and returns the exit code.
    fn exit_code(&mut self) -> Option<i32> {
        self.0.exit_code(Duration::from_secs(30))
    }

    /// The processes this one started (Envoy), from /proc.
    fn children(&self) -> Vec<u32> {
        let me = self.0.child.id();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| stat(*pid).is_some_and(|(_, ppid)| ppid == me))
            .collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let child = &mut self.0.child;
        if child.try_wait().ok().flatten().is_none() {
            let _ = kill_process(Pid::from_raw(child.id() as i32).unwrap(), Signal::TERM);
            if self.exit_code().is_none() {
                let _ = self.0.child.kill();
                let _ = self.0.child.wait();
            }
        }
    }
}

/// State and parent of a process from /proc/PID/stat (None once it is gone).
fn stat(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE PPID ...": COMM may contain spaces and parentheses.
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` still runs (a zombie waiting for its reaper does not).
fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z')
}

/// Waits until none of `pids` runs; false after 30 s.
fn all_gone(pids: &[u32]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if !pids.iter().any(|p| alive(*p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn get(port: u16, host: &str, path: &str, extra: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {host}\r\n{extra}connection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Envoy ($MESH_ENVOY, else the pinned one); the build must embed the module.
fn envoy() -> Option<String> {
    let envoy = envoy_process::require_binary();
    assert!(
        !kubectl_mesh::module::EMBEDDED.is_empty(),
        "this build has no embedded filter module (run `make wasm`)"
    );
    Some(envoy.display().to_string())
}

/// A config routing api.test/api/ to service `server` port 6000, in a fresh directory.
fn shop_config(name: &str) -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(format!(
        "kubectl-mesh-run-test-{name}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("mesh.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: kubectl-mesh/v1alpha1\nkind: MeshConfig\nnamespace: shop\nhosts:\n  - domains: [api.test]\n    routes:\n      - match: { prefix: /api/ }\n        to: { service: server, port: 6000, prefixRewrite: / }\n",
    )
    .unwrap();
    (dir, cfg.to_string_lossy().into_owned())
}

#[test]
fn run_routes_a_request_to_the_mapped_upstream_in_real_envoy() {
    let Some(envoy) = envoy() else { return };
    let (dir, cfg) = shop_config("route");
    let upstream = echo_upstream();
    let port = free_port();
    let mut run = Running::start(&[
        "-f",
        &cfg,
        "--upstream",
        &format!("server:6000=127.0.0.1:{upstream}"),
        "--port",
        &port.to_string(),
        "--envoy",
        &envoy,
    ]);
    let ready = format!("ready: listening on 127.0.0.1:{port}");
    assert!(run.wait_for(&ready), "no `{ready}`:\n{}", run.output());
    // Ready means the listener accepts: the first request must succeed, no retries.
    let routed = get(
        port,
        "api.test",
        "/api/items?x=1",
        "x-mesh-upstream: evil\r\n",
    )
    .unwrap();
    let log = run.output();
    assert!(routed.starts_with("HTTP/1.1 200"), "{routed}\nlog:\n{log}");
    assert!(
        routed.contains("upstream got: get /items?x=1 http/1.1"),
        "{routed}"
    );
    assert!(
        !routed.contains("x-mesh-upstream"),
        "the routing header never reaches the upstream: {routed}"
    );
    assert!(
        log.contains("outbound|6000||server.shop.svc.cluster.local"),
        "the mapping is printed: {log}"
    );
    assert!(
        !log.contains("][info]["),
        "without -v Envoy logs warnings only: {log}"
    );
    let unknown = get(port, "other.test", "/api/items", "").unwrap();
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");
    assert!(!unknown.contains("upstream got"), "{unknown}");

    // SIGTERM reaches Envoy through the plugin, which exits with Envoy's status.
    let envoys = run.children();
    assert_eq!(envoys.len(), 1, "one Envoy child: {envoys:?}");
    run.signal(Signal::TERM);
    assert_eq!(run.exit_code(), Some(0), "{}", run.output());
    assert!(all_gone(&envoys), "Envoy {envoys:?} outlived the plugin");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_verbose_logs_envoy_info_and_forwards_ctrl_c() {
    let Some(envoy) = envoy() else { return };
    let (dir, cfg) = shop_config("verbose");
    let port = free_port();
    let mut run = Running::start(&[
        "-f",
        &cfg,
        "--upstream",
        "server:6000=127.0.0.1:9",
        "--port",
        &port.to_string(),
        "--envoy",
        &envoy,
        "-v",
    ]);
    assert!(run.wait_for("ready: listening on"), "{}", run.output());
    assert!(
        run.output().contains("][info]["),
        "-v shows Envoy's info log: {}",
        run.output()
    );
    let envoys = run.children();
    assert_eq!(envoys.len(), 1, "one Envoy child: {envoys:?}");
    run.signal(Signal::INT);
    assert_eq!(run.exit_code(), Some(0), "{}", run.output());
    assert!(all_gone(&envoys), "Envoy {envoys:?} outlived the plugin");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_exits_with_envoys_status_when_envoy_dies() {
    let Some(envoy) = envoy() else { return };
    let (dir, cfg) = shop_config("died");
    let port = free_port();
    let mut run = Running::start(&[
        "-f",
        &cfg,
        "--upstream",
        "server:6000=127.0.0.1:9",
        "--port",
        &port.to_string(),
        "--envoy",
        &envoy,
    ]);
    assert!(run.wait_for("ready: listening on"), "{}", run.output());
    let envoys = run.children();
    assert_eq!(envoys.len(), 1, "one Envoy child: {envoys:?}");
    kill_process(Pid::from_raw(envoys[0] as i32).unwrap(), Signal::KILL).unwrap();
    assert_eq!(
        run.exit_code(),
        Some(128 + 9),
        "killed by SIGKILL, reported as a shell would: {}",
        run.output()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_reports_an_envoy_that_exits_before_listening_and_a_busy_port() {
    assert!(
        !kubectl_mesh::module::EMBEDDED.is_empty(),
        "this build has no embedded filter module: build it with `make wasm` (make test-plugin does)"
    );
    let (dir, cfg) = shop_config("fail");
    let port = free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-mesh"))
        .args(["run", "-f", &cfg, "--upstream", "server:6000=127.0.0.1:9"])
        .args(["--port", &port.to_string(), "--envoy", "false"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "false exited (exit status: 1) before listening on 127.0.0.1:{port}"
        )),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ready:"));

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-mesh"))
        .args(["run", "-f", &cfg, "--upstream", "server:6000=127.0.0.1:9"])
        .args(["--port", &port.to_string(), "--envoy", "false"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}"))
            && err.contains("pick another --port"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn run_refuses_unrouted_clusters_and_print_config_prints_the_bootstrap() {
    let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/digimon/mesh.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-mesh"))
        .args(["run", "-f", cfg, "--upstream", "server:6000=127.0.0.1:9000"])
        .env("MESH_ENVOY", "/nonexistent/envoy")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no --upstream for outbound|8060||web.digimon.svc.cluster.local"),
        "{err}"
    );
    assert!(
        !kubectl_mesh::module::EMBEDDED.is_empty(),
        "this build has no embedded filter module: build it with `make wasm` (make test-plugin does)"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-mesh"))
        .args([
            "run",
            "-f",
            cfg,
            "--upstream",
            "server:6000=127.0.0.1:9000",
            "--upstream",
            "web:8060=127.0.0.1:9001",
            "--port",
            "10123",
            "--print-config",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b: serde_json::Value = serde_yaml_ng::from_slice(&out.stdout).unwrap();
    let l = &b["static_resources"]["listeners"][0]["address"]["socket_address"];
    assert_eq!(l["port_value"], 10123);
    assert_eq!(
        b["static_resources"]["clusters"].as_array().unwrap().len(),
        2
    );
}
