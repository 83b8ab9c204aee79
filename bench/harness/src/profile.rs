//! Where Envoy's CPU goes under load: `perf record` (cpu-clock samples, which work without
//! hardware counters, as on this VM) on the Envoy process during a wrk run, summed by binary:
//! Envoy itself (with V8 linked in), JIT-compiled Wasm and Lua code (anonymous memory), the
//! kernel (loopback TCP), libc.

use std::path::Path;
use std::process::{Command, Stdio};

/// True when `perf record` can sample here.
pub fn available() -> bool {
    Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Samples `pid` for `secs` seconds while `load` runs; shares (percent) by binary, largest first.
pub fn by_dso(
    pid: u32,
    secs: u64,
    dir: &Path,
    load: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<Vec<(String, f64)>> {
    let data = dir.join(format!("perf-{pid}.data"));
    let mut rec = Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-q", "-o"])
        .arg(&data)
        .args(["-p", &pid.to_string(), "--", "sleep", &secs.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    load()?;
    rec.wait()?;
    let out = Command::new("perf")
        .args(["report", "--stdio", "--sort", "dso", "-i"])
        .arg(&data)
        .output()?;
    let _ = std::fs::remove_file(&data);
    Ok(parse(&String::from_utf8_lossy(&out.stdout)))
}

/// The share (0..1) of `exe args`'s samples spent in JIT-compiled code: run on `wasm-cost`,
/// the part of the wasmtime measurement that is the module's own code rather than the host
/// functions that serve its calls.
pub fn jit_share(exe: &Path, args: &[&str], dir: &Path) -> Option<f64> {
    let data = dir.join("perf-jit.data");
    let ok = Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-q", "-o"])
        .arg(&data)
        .arg("--")
        .arg(exe)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?
        .success();
    let out = Command::new("perf")
        .args(["report", "--stdio", "--sort", "dso", "-i"])
        .arg(&data)
        .output()
        .ok()?;
    let _ = std::fs::remove_file(&data);
    let shares = parse(&String::from_utf8_lossy(&out.stdout));
    ok.then(|| {
        shares
            .iter()
            .find(|(d, _)| d == "[JIT]")
            .map_or(0.0, |(_, p)| p / 100.0)
    })
}

/// `    61.20%  envoy` lines of `perf report --sort dso`.
pub fn parse(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let pct = w.next()?.strip_suffix('%')?.parse().ok()?;
            let dso = w.collect::<Vec<_>>().join(" ");
            // One JIT bucket, whichever thread compiled the code.
            let dso = match dso.starts_with("[JIT]") {
                true => "[JIT]".to_owned(),
                false => dso,
            };
            Some((dso, pct))
        })
        .fold(Vec::new(), |mut acc: Vec<(String, f64)>, (d, p)| {
            match acc.iter_mut().find(|(x, _)| *x == d) {
                Some((_, q)) => *q += p,
                None => acc.push((d, p)),
            }
            acc
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_perf_report() {
        let text = "# comment\n#\n    61.20%  envoy\n    20.05%  [kernel.kallsyms]\n     3.00%  [unknown]\n     1.00%  [JIT] tid 7\n     2.00%  [JIT] tid 9\n\n";
        assert_eq!(
            super::parse(text),
            vec![
                ("envoy".to_owned(), 61.2),
                ("[kernel.kallsyms]".to_owned(), 20.05),
                ("[unknown]".to_owned(), 3.0),
                ("[JIT]".to_owned(), 3.0)
            ]
        );
    }
}
