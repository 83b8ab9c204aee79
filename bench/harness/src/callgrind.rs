//! Envoy's instructions per request, counted by callgrind: repeatable to a fraction of a percent
//! whatever else the machine runs, where times under load move by tens of percent. Envoy runs
//! under `valgrind --tool=callgrind` with counting off; it is switched on (`callgrind_control`)
//! for a fixed number of sequential requests on one connection, and the worker thread's count
//! is divided by them (the main thread's timers are left out). About a minute per setup, so
//! `make bench` only.

use crate::setups::{Launch, Proc};
use kubectl_mesh::envoy::LocalEnvoy;
use mesh_tests::client::{Conn, Request, Response};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// True when valgrind and callgrind_control are installed.
pub fn available() -> bool {
    ["valgrind", "callgrind_control"].iter().all(|t| {
        Command::new(t)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Instructions per request of the Envoy in `local`: its worker thread's and all its threads'.
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvoyInstructions {
    /// The worker thread (every request's work).
    pub worker: f64,
    /// Every thread.
    pub all: f64,
}

/// Runs `local` under callgrind (pinned to `cpu`), sends `warmup` then `n` requests `req`, each
/// of which `ok` must accept, and counts the instructions of the `n`.
pub fn per_request(
    envoy: &Path,
    local: LocalEnvoy,
    cpu: Option<&str>,
    req: &Request,
    ok: impl Fn(&Response) -> bool,
    n: usize,
) -> anyhow::Result<EnvoyInstructions> {
    let dir = std::env::temp_dir().join(format!(
        "mesh-bench-callgrind-{}-{}",
        std::process::id(),
        mesh_tests::free_port()
    ));
    std::fs::create_dir_all(&dir)?;
    let out = dir.join("cg.out");
    let how = Launch {
        cpu: cpu.map(str::to_owned),
        workers: 1,
        under: [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            // V8 writes and rewrites its code at run time.
            "--smc-check=all-non-file",
            "--separate-threads=yes",
            "--dump-instr=no",
            "--collect-jumps=no",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([format!("--callgrind-out-file={}", out.display())])
        .collect(),
        ready_within: Some(Duration::from_secs(600)),
    };
    let p = Proc::launch(envoy, local, &how, req)?;
    let send = |count: usize| -> anyhow::Result<()> {
        let mut conn = Conn::open(p.port)?;
        for _ in 0..count {
            let r = conn.send(req)?;
            anyhow::ensure!(ok(&r), "unexpected answer under callgrind: {r:?}");
        }
        Ok(())
    };
    send(n / 5)?;
    let control = |arg: &[&str]| -> anyhow::Result<()> {
        let status = Command::new("callgrind_control")
            .args(arg)
            .arg(p.pid().to_string())
            .output()?
            .status;
        anyhow::ensure!(status.success(), "callgrind_control {arg:?} failed");
        Ok(())
    };
    control(&["-i", "on"])?;
    send(n)?;
    control(&["-i", "off"])?;
    control(&["-d"])?;
    let counts = totals(&dir)?;
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
    let worker = counts.iter().copied().max().unwrap_or(0);
    let all: u64 = counts.iter().sum();
    Ok(EnvoyInstructions {
        worker: worker as f64 / n as f64,
        all: all as f64 / n as f64,
    })
}

/// The `totals:` of every dump file in `dir`, one per thread.
fn totals(dir: &Path) -> anyhow::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let text = std::fs::read_to_string(entry?.path()).unwrap_or_default();
        if let Some(n) = text
            .lines()
            .find_map(|l| l.strip_prefix("totals:"))
            .and_then(|n| n.trim().parse().ok())
        {
            out.push(n);
        }
    }
    anyhow::ensure!(
        !out.is_empty(),
        "callgrind wrote no counts in {}",
        dir.display()
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_every_threads_totals() {
        let dir = std::env::temp_dir().join(format!("mesh-bench-cg-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("cg.out.1-01"),
            "version: 1\nevents: Ir\ntotals: 120\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("cg.out.1-02"),
            "events: Ir\nfl=x\n1 5\ntotals: 99000\n",
        )
        .unwrap();
        let mut t = super::totals(&dir).unwrap();
        t.sort();
        assert_eq!(t, vec![120, 99000]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(super::totals(&dir).is_err());
    }
}
