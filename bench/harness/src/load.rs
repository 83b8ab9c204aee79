//! Load: the request kinds, the sequential latency run over one keep-alive connection, and the
//! concurrent run with wrk (16 connections), with the statistics the report needs.

use crate::setups::ORIGIN;
use mesh_tests::client::{Conn, Request};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A request kind of the digimon mix.
#[derive(Debug, Clone)]
pub struct Kind {
    /// Name for the report.
    pub name: &'static str,
    /// The request.
    pub request: Request,
}

/// The routed gRPC-Web call from the web app: the request the concurrent run sends.
pub fn routed() -> Request {
    Request::new("POST", "api.backend.com", "/digimon.Digimon/Query")
        .header("origin", ORIGIN)
        .header("content-type", "application/grpc-web-text")
        .header("x-grpc-web", "1")
        .body("AAAAAAYKBEFndW1vbg==")
}

/// Every kind of the per-kind breakdown.
pub fn kinds() -> Vec<Kind> {
    vec![
        Kind {
            name: "gRPC-Web POST with Origin, routed",
            request: routed(),
        },
        Kind {
            name: "CORS preflight, answered locally",
            request: Request::new("OPTIONS", "api.backend.com", "/digimon.Digimon/Query")
                .header("origin", ORIGIN)
                .header("access-control-request-method", "POST"),
        },
        Kind {
            name: "web GET, routed",
            request: Request::get("web.backend.com", "/static/js/main.js"),
        },
        Kind {
            name: "listed host, unknown path: local 404",
            request: Request::get("api.backend.com", "/nope"),
        },
        Kind {
            name: "unlisted host: passed through (404 by the route table)",
            request: Request::get("other.example", "/"),
        },
    ]
}

/// Per-request latencies (µs) of `n` sequential requests over one keep-alive connection.
pub fn sequential(port: u16, req: &Request, n: usize) -> anyhow::Result<Vec<f64>> {
    let mut conn = Conn::open(port)?;
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let resp = conn.send(req)?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(
            resp.status < 500,
            "{} {} -> {}",
            req.method,
            req.path,
            resp.status
        );
        if resp.header("connection") == Some("close") {
            conn = Conn::open(port)?;
        }
    }
    Ok(lat)
}

/// The `p` quantile (0..=1) of `v` (sorted in place).
pub fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(0.0)
}

/// The median of `v`.
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    pct(&mut v, 0.5)
}

/// One wrk run.
#[derive(Debug, Clone, Copy, Default)]
pub struct WrkRun {
    /// Requests per second.
    pub rps: f64,
    /// Latency quantiles (µs).
    pub p50: f64,
    /// 99th percentile (µs).
    pub p99: f64,
    /// Answers that were not 2xx/3xx, plus socket errors.
    pub errors: u64,
    /// Requests completed.
    pub requests: u64,
    /// CPU time the Envoy under test spent per request (µs), all its threads: the cost
    /// measure that does not depend on which side of the loopback saturates first.
    pub cpu_us: f64,
}

/// The wrk script sending `req`.
pub fn wrk_script(req: &Request) -> String {
    let mut s = format!(
        "wrk.method = \"{}\"\nwrk.path = \"{}\"\n",
        req.method, req.path
    );
    if let Some(h) = &req.host {
        s.push_str(&format!("wrk.headers[\"Host\"] = \"{h}\"\n"));
    }
    for (k, v) in &req.headers {
        s.push_str(&format!(
            "wrk.headers[\"{k}\"] = \"{}\"\n",
            String::from_utf8_lossy(v)
        ));
    }
    if !req.body.is_empty() {
        s.push_str(&format!(
            "wrk.body = \"{}\"\n",
            String::from_utf8_lossy(&req.body)
        ));
    }
    s
}

/// Runs wrk (one thread, `connections` connections, `duration`) against `port`, pinned to `cpu`.
pub fn wrk(
    script: &Path,
    port: u16,
    connections: u32,
    duration: Duration,
    cpu: Option<&str>,
) -> anyhow::Result<WrkRun> {
    let mut cmd = match cpu {
        Some(c) => {
            let mut t = Command::new("taskset");
            t.args(["-c", c, "wrk"]);
            t
        }
        None => Command::new("wrk"),
    };
    let out = cmd
        .args(["-t1", &format!("-c{connections}")])
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}"))
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run wrk ({e}); `make bench` installs it"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_wrk(&text).ok_or_else(|| anyhow::anyhow!("cannot read wrk's output:\n{text}"))
}

/// Reads throughput, p50, p99 and errors from wrk's `--latency` output.
pub fn parse_wrk(text: &str) -> Option<WrkRun> {
    let mut run = WrkRun::default();
    let mut seen = (false, false, false);
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("50%"), Some(v)) => {
                run.p50 = micros(v)?;
                seen.0 = true;
            }
            (Some("99%"), Some(v)) => {
                run.p99 = micros(v)?;
                seen.1 = true;
            }
            (Some("Requests/sec:"), Some(v)) => {
                run.rps = v.parse().ok()?;
                seen.2 = true;
            }
            _ => {}
        }
        if let Some((n, _)) = line.split_once(" requests in ") {
            run.requests = n.trim().parse().unwrap_or(0);
        }
        if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            run.errors += n.trim().parse::<u64>().unwrap_or(0);
        }
        if let Some(rest) = line.strip_prefix("Socket errors:") {
            run.errors += rest
                .split(',')
                .filter_map(|p| p.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    (seen == (true, true, true)).then_some(run)
}

/// `612.00us`, `1.23ms`, `2.00s` -> µs.
fn micros(v: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e6)
    } else {
        (v, 1.0)
    };
    Some(num.parse::<f64>().ok()? * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let text = "Running 1s test @ http://127.0.0.1:1\n  1 threads and 16 connections\n  Latency Distribution\n     50%  612.00us\n     75%  1.00ms\n     99%    1.23ms\n  85000 requests in 5.00s, 1MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n  Non-2xx or 3xx responses: 3\nRequests/sec:  17000.12\n";
        let r = parse_wrk(text).unwrap();
        assert_eq!(r.p50, 612.0);
        assert_eq!(r.p99, 1230.0);
        assert_eq!(r.rps, 17000.12);
        assert_eq!(r.errors, 6);
        assert_eq!(r.requests, 85000);
        assert!(parse_wrk("Requests/sec: 1\n").is_none());
    }

    #[test]
    fn quantiles() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(pct(&mut v, 0.5), 3.0);
        assert_eq!(pct(&mut v, 1.0), 5.0);
        assert_eq!(median(&[2.0, 9.0, 1.0]), 2.0);
    }
}
