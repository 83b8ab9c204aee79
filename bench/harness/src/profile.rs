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

/// `    61.20%  envoy` lines of `perf report --sort dso`.
pub fn parse(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let pct = w.next()?.strip_suffix('%')?.parse().ok()?;
            Some((w.collect::<Vec<_>>().join(" "), pct))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_perf_report() {
        let text = "# comment\n#\n    61.20%  envoy\n    20.05%  [kernel.kallsyms]\n     3.00%  [unknown]\n\n";
        assert_eq!(
            super::parse(text),
            vec![
                ("envoy".to_owned(), 61.2),
                ("[kernel.kallsyms]".to_owned(), 20.05),
                ("[unknown]".to_owned(), 3.0)
            ]
        );
    }
}
