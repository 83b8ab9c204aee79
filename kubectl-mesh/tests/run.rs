//! `kubectl mesh run` in real Envoy ($MESH_ENVOY): a routed request reaches a local upstream.

// A failed unwrap in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the plugin process (which exec'd into Envoy) when the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

#[test]
fn run_routes_a_request_to_the_mapped_upstream_in_real_envoy() {
    let Some(envoy) = std::env::var_os("MESH_ENVOY").filter(|e| !e.is_empty()) else {
        println!("skipped: MESH_ENVOY is not set (`make test-plugin` exports it)");
        return;
    };
    if kubectl_mesh::module::EMBEDDED.is_empty() {
        println!("skipped: this build has no embedded filter module (run `make wasm`)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("kubectl-mesh-run-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("mesh.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: kubectl-mesh/v1alpha1\nkind: MeshConfig\nnamespace: shop\nhosts:\n  - domains: [api.test]\n    routes:\n      - match: { prefix: /api/ }\n        to: { service: server, port: 6000, prefixRewrite: / }\n",
    )
    .unwrap();
    let upstream = echo_upstream();
    let port = free_port();
    let log = std::fs::File::create(dir.join("envoy.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_kubectl-mesh"))
        .arg("run")
        .arg("-f")
        .arg(&cfg)
        .arg("--upstream")
        .arg(format!("server:6000=127.0.0.1:{upstream}"))
        .arg("--port")
        .arg(port.to_string())
        .arg("--envoy")
        .arg(&envoy)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let _running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(90);
    let routed = loop {
        if let Some(r) = get(
            port,
            "api.test",
            "/api/items?x=1",
            "x-mesh-upstream: evil\r\n",
        ) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "envoy did not listen on {port}; log:\n{}",
            std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default();
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
    let unknown = get(port, "other.test", "/api/items", "").unwrap();
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");
    assert!(!unknown.contains("upstream got"), "{unknown}");
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
    if kubectl_mesh::module::EMBEDDED.is_empty() {
        println!("skipped --print-config: no embedded module");
        return;
    }
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
