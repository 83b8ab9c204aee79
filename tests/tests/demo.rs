//! `make demo`'s driver (digimon-demo) end to end: the real gRPC-Web calls through
//! `kubectl mesh run`, and nothing it started outliving it: after a normal run, a failure, or
//! a signal mid-way. Needs the binaries and the page built (`make test-demo` does).

// A failed unwrap in a test helper is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use envoy_process::Captured;
use mesh_tests::app::{group_members, processes};
use rustix::process::{kill_process, Pid, Signal};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn example_config() -> PathBuf {
    mesh_tests::workspace_root().join("examples/digimon/mesh.yaml")
}

/// The example config with the allowed origin changed, in a fresh file.
fn config_allowing(origin: &str, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(example_config()).unwrap();
    let changed = text.replace("exact: http://web.backend.com", &format!("exact: {origin}"));
    assert_ne!(
        changed, text,
        "the example config names http://web.backend.com"
    );
    let dir = std::env::temp_dir().join(format!("digimon-demo-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mesh.yaml");
    std::fs::write(&path, changed).unwrap();
    path
}

/// A running digimon-demo with its output collected.
struct Demo(Captured);

impl Demo {
    fn start(config: &std::path::Path, serve: bool) -> Demo {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_digimon-demo"));
        cmd.arg(config)
            .args(["--port", &mesh_tests::free_port().to_string()]);
        if serve {
            cmd.arg("--serve");
        }
        Demo(Captured::spawn(&mut cmd).unwrap())
    }

    fn output(&self) -> String {
        self.0.output()
    }

    fn wait_for(&mut self, needle: &str) {
        assert!(
            self.0.wait_for(needle, Duration::from_secs(120)),
            "no `{needle}` from the demo:\n{}",
            self.output()
        );
    }

    /// The process group of what the demo started (its children's group), once it has any.
    fn group(&self) -> u32 {
        let me = self.0.child.id();
        processes()
            .into_iter()
            .find(|(_, s)| s.ppid == me)
            .map(|(_, s)| s.pgrp)
            .unwrap_or_else(|| panic!("the demo has no children:\n{}", self.output()))
    }

    /// Exit code after at most 60 s.
    fn exit_code(&mut self) -> Option<i32> {
        self.0.exit_code(Duration::from_secs(60))
    }

    fn signal(&self, sig: Signal) {
        kill_process(Pid::from_raw(self.0.child.id() as i32).unwrap(), sig).unwrap();
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.0.child.try_wait().ok().flatten().is_none() {
            self.signal(Signal::TERM);
            let _ = self.exit_code();
        }
    }
}

/// Nothing of `pgid` runs any more (given a moment for the last exits).
fn assert_group_gone(pgid: u32, output: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !group_members(pgid).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<String> = group_members(pgid)
        .iter()
        .map(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .unwrap_or_default()
                .replace('\0', " ")
        })
        .collect();
    assert!(
        left.is_empty(),
        "left running in group {pgid}: {left:?}\ndemo output:\n{output}"
    );
}

#[test]
fn demo_makes_real_grpc_web_calls_and_stops_everything() {
    let mut demo = Demo::start(&example_config(), false);
    demo.wait_for("[server] digimon-server: listening on");
    let pgid = demo.group();
    let code = demo.exit_code();
    let out = demo.output();
    assert_eq!(code, Some(0), "{out}");
    // The table's columns are padded: compare with runs of spaces collapsed.
    let squeeze = |s: &str| {
        s.split(' ')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let table = squeeze(&out);
    for expected in [
        "ready: listening on 127.0.0.1:",
        // The preflight and the call carry the grant for the page's origin, with credentials.
        "CORS preflight from the page       OPTIONS api.backend.com/digimon.Digimon/Create     200  (answered by the filter) allow-origin=http://web.backend.com credentials=true",
        "gRPC-Web Create from the page      POST api.backend.com/digimon.Digimon/Create        200  server:6000 created id=d0001 name=Agumon status=egg; allow-origin=http://web.backend.com credentials=true expose=custom-header-1,grpc-status,grpc-message",
        "[server] Create name=Agumon -> id=d0001",
        "[server] Foster id=d0001 food=meat",
        "3 messages: hatching at Primary Village (sunny), rookie at File Island beach (cloudy), champion at Infinity Mountain (stormy)",
        "[web] GET / (host web.backend.com) -> 200",
        "unknown host                       GET other.example/                                 404",
        "--host-resolver-rules=\"MAP *.backend.com 127.0.0.1:",
        "stopped:",
        "mesh exited (exit status: 0)",
    ] {
        assert!(
            table.contains(&squeeze(expected)),
            "missing `{expected}` in:\n{out}"
        );
    }
    assert!(!out.contains("FAILED"), "{out}");
    assert_group_gone(pgid, &out);
}

#[test]
fn a_failing_demo_stops_everything() {
    // The API grants another origin: the page's calls get no CORS grant, the demo says so.
    let config = config_allowing("http://other.backend.com", "fail");
    let mut demo = Demo::start(&config, true);
    demo.wait_for("[server] digimon-server: listening on");
    let pgid = demo.group();
    let code = demo.exit_code();
    let out = demo.output();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAILED: Create: no CORS grant for http://web.backend.com"),
        "{out}"
    );
    assert!(out.contains("digimon-demo failed:"), "{out}");
    assert!(!out.contains("Serving until Ctrl-C"), "{out}");
    assert_group_gone(pgid, &out);
    let _ = std::fs::remove_dir_all(config.parent().unwrap());
}

#[test]
fn sigterm_while_envoy_starts_stops_everything() {
    let mut demo = Demo::start(&example_config(), true);
    // Mid-way: the plugin has started Envoy, which may not listen yet.
    demo.wait_for("[mesh] starting ");
    let pgid = demo.group();
    demo.signal(Signal::TERM);
    let code = demo.exit_code();
    let out = demo.output();
    assert_eq!(code, Some(128 + 15), "{out}");
    assert!(out.contains("signal 15: stopping"), "{out}");
    assert_group_gone(pgid, &out);
}

#[test]
fn ctrl_c_while_serving_stops_everything() {
    let mut demo = Demo::start(&example_config(), true);
    demo.wait_for("Serving until Ctrl-C");
    let pgid = demo.group();
    assert!(
        group_members(pgid).len() >= 4,
        "server, web, plugin and Envoy run: {:?}",
        group_members(pgid)
    );
    demo.signal(Signal::INT);
    let code = demo.exit_code();
    let out = demo.output();
    assert_eq!(code, Some(128 + 2), "{out}");
    assert!(out.contains("mesh exited (exit status: 0)"), "{out}");
    assert_group_gone(pgid, &out);
}
