//! Proof that the filter runs: istio-proxy's Prometheus stats, read per pod through the API
//! server's pod proxy, turned into checks.
//!
//! Envoy exports the filter's `wasmcustom.mesh_filter_*` stats on `/stats/prometheus` as
//! plain `mesh_filter_*` (a custom stat namespace loses both the namespace and the `envoy_`
//! prefix; verified with Envoy 1.40), and Istio's bootstrap always keeps them: its stats
//! inclusion list has the prefix `wasm`, which `wasmcustom.` starts with (a required prefix in
//! istio-agent's bootstrap, and present in the gateway dump in ../shared/fixtures/istio;
//! `tests/proxy_stats.rs` runs real Envoy with that `stats_config`). The request counters reach
//! the stats on the filter's one-second tick (`filter/wasm/src/metrics.rs`), the configuration
//! gauge and failed host calls at once.

use super::{check, pass, Check, Status};
use std::collections::BTreeMap;

/// Envoy's Prometheus port in every Istio proxy (listener `0.0.0.0:15090`, `/stats/prometheus`).
pub const ENVOY_PROMETHEUS_PORT: u16 = 15090;
/// istio-agent's merged metrics port, tried when 15090 cannot be read.
pub const AGENT_PROMETHEUS_PORT: u16 = 15020;
/// The path both serve.
pub const PROMETHEUS_PATH: &str = "stats/prometheus";

/// 1 after an accepted configuration, 0 after a refused one; absent: the filter never loaded.
pub const CONFIG_OK: &str = "mesh_filter_config_ok";
/// The revision of the configuration the filter runs: the first 12 hex digits of the applied
/// object's `kubectl-mesh/config-hash`, as a number (0: the configuration had none).
pub const CONFIG_REVISION: &str = "mesh_filter_config_revision";
/// Requests the filter forwarded (to an upstream, or inbound to the workload).
pub const ROUTED: &str = "mesh_filter_routed";
/// Requests for hosts the config does not own, left to Istio's routes.
pub const PASSED: &str = "mesh_filter_passed_through";
/// Failed proxy-wasm host calls (each answered 500).
pub const HOST_ERRORS: &str = "mesh_filter_host_errors";
/// Local answers by kind: counter name and how the checklist calls it.
pub const ANSWERS: [(&str, &str); 4] = [
    ("mesh_filter_cors_preflight", "CORS preflight"),
    ("mesh_filter_not_found", "not found"),
    ("mesh_filter_direct_response", "direct response"),
    ("mesh_filter_redirect", "redirect"),
];
/// Live V8 Wasm instances in the proxy (`wasm.envoy.wasm.runtime.v8.active`).
pub const V8_ACTIVE: &str = "envoy_wasm_envoy_wasm_runtime_v8_active";

/// Samples of one Prometheus text exposition, summed per metric name over label sets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyStats {
    values: BTreeMap<String, f64>,
}

impl ProxyStats {
    /// Parses Prometheus text format (`name{labels} value [timestamp]`, `#` comments).
    /// Histogram series and unparsable lines are skipped.
    pub fn parse(text: &str) -> Self {
        let mut values = BTreeMap::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, rest) = match line.find(['{', ' ']) {
                Some(i) if line.as_bytes()[i] == b'{' => match line[i..].find('}') {
                    Some(end) => (&line[..i], &line[i + end + 1..]),
                    None => continue,
                },
                Some(i) => (&line[..i], &line[i..]),
                None => continue,
            };
            if let Some(v) = rest
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
            {
                *values.entry(name.to_owned()).or_insert(0.0) += v;
            }
        }
        ProxyStats { values }
    }

    /// A metric's value (summed over its label sets), if exported.
    pub fn get(&self, name: &str) -> Option<u64> {
        // Counters and gauges Envoy exports are whole numbers.
        self.values.get(name).map(|v| v.max(0.0) as u64)
    }

    /// Sum of the metrics whose name satisfies `pick`.
    fn sum(&self, pick: impl Fn(&str) -> bool) -> u64 {
        self.values
            .iter()
            .filter(|(k, _)| pick(k))
            .map(|(_, v)| v.max(0.0) as u64)
            .sum()
    }
}

/// What was read from one pod's proxy.
#[derive(Debug, Clone)]
pub struct PodStats {
    /// Pod name.
    pub pod: String,
    /// The stats, or why they could not be read.
    pub stats: Result<ProxyStats, String>,
}

/// The checks for one pod's proxy, in group `group`; `workload` names the Deployment for hints;
/// `applied` is the applied filter object's config hash (which the proxy must report).
pub fn evaluate_pod(
    group: &str,
    workload: &str,
    pod: &PodStats,
    applied: Option<&str>,
) -> Vec<Check> {
    let p = &pod.pod;
    let logs = format!("kubectl logs {p} -c istio-proxy | grep mesh-filter");
    let stats = match &pod.stats {
        Ok(s) => s,
        Err(e) => {
            return vec![check(
                "proxy.stats-readable", group,
                format!("pod {p}: proxy stats readable"),
                Status::Warn,
                Some(format!(
                    "{e}\n         kubectl-mesh reads istio-proxy's stats through the API server's pod proxy (port {ENVOY_PROMETHEUS_PORT}, then {AGENT_PROMETHEUS_PORT}, /{PROMETHEUS_PATH}): it needs `get` on pods/proxy, and the pod must be running; without them nothing proves the filter runs"
                )),
            )]
        }
    };
    let name = format!("pod {p}: filter loaded and configured");
    let mut out = Vec::new();
    match stats.get(CONFIG_OK) {
        Some(0) => {
            out.push(check(
                "proxy.filter-loaded", group,
                name,
                Status::Fail,
                Some(format!(
                    "the proxy refused the filter's last configuration (mesh_filter_config_ok 0) and keeps running the one before, if any; `{logs}` names the field; fix the config and run kubectl mesh enable again"
                )),
            ));
            return out;
        }
        Some(_) => {
            out.push(pass("proxy.filter-loaded", group, name));
            out.extend(revision(group, p, stats, applied, &logs));
        }
        None => {
            out.push(check(
                "proxy.filter-loaded", group,
                name.replace("loaded and configured", "loaded"),
                Status::Fail,
                Some(format!(
                    "not loaded: istio-proxy exports no mesh_filter_* stats. Either the pod started before enable (kubectl rollout restart deployment/{workload}); or the module is not mounted (see `module mounted`); or the filter object does not match this proxy (its selector must match the pod's labels and its context the proxy: GATEWAY for gateways, SIDECAR_* for sidecars); or the configuration was refused at start, or a --module-url could not be fetched (`{logs}`)"
                )),
            ));
            return out;
        }
    }
    let reload_failures =
        stats.sum(|n| n.starts_with("envoy_wasm_") && n.ends_with("_vm_reload_failure"));
    out.push(match stats.get(V8_ACTIVE) {
        _ if reload_failures > 0 => check(
            "proxy.vm-running", group,
            format!("pod {p}: Wasm VM running"),
            Status::Fail,
            Some(format!(
                "a Wasm VM failed and could not be reloaded ({reload_failures} failed reloads): `{logs}`"
            )),
        ),
        Some(n) if n > 0 => pass("proxy.vm-running", group, format!("pod {p}: Wasm VM running")),
        Some(_) => check(
            "proxy.vm-running", group,
            format!("pod {p}: Wasm VM running"),
            Status::Fail,
            Some(format!("the proxy has no live V8 Wasm instance: `{logs}`")),
        ),
        None => check(
            "proxy.vm-running", group,
            format!("pod {p}: Wasm VM running"),
            Status::Warn,
            Some(format!("the proxy does not export {V8_ACTIVE}")),
        ),
    });
    let routed = stats.get(ROUTED).unwrap_or(0);
    let passed = stats.get(PASSED).unwrap_or(0);
    let answers: Vec<(u64, &str)> = ANSWERS
        .iter()
        .map(|(metric, what)| (stats.get(metric).unwrap_or(0), *what))
        .collect();
    let answered: u64 = answers.iter().map(|(n, _)| n).sum();
    let summary = if routed + passed + answered == 0 {
        "no requests yet".to_owned()
    } else {
        let kinds: Vec<String> = answers
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        let detail = if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({})", kinds.join(", "))
        };
        format!(
            "{routed} routed, {passed} passed through, {answered} answered by the filter{detail}"
        )
    };
    out.push(pass(
        "proxy.requests",
        group,
        format!("pod {p}: requests: {summary}"),
    ));
    out.push(match stats.get(HOST_ERRORS).unwrap_or(0) {
        0 => pass("proxy.host-calls", group, format!("pod {p}: no failed host calls")),
        n => check(
            "proxy.host-calls", group,
            format!("pod {p}: {n} failed host calls"),
            Status::Warn,
            Some(format!(
                "the proxy refused {n} of the filter's host calls; each of those requests was answered 500 (the filter fails closed): `{logs}` shows which call, worth reporting with the Istio version"
            )),
        ),
    });
    out
}

/// Whether the proxy runs the applied config: the revision it reports against the applied
/// object's hash. A config edit reaches running proxies (istiod pushes the changed object), so
/// this is what says it arrived, not the pod's age.
fn revision(
    group: &str,
    p: &str,
    stats: &ProxyStats,
    applied: Option<&str>,
    logs: &str,
) -> Option<Check> {
    let want = applied.and_then(mesh_core::revision_number)?;
    let applied = applied.unwrap_or_default();
    let name = format!("pod {p}: runs the applied config ({applied})");
    Some(match stats.get(CONFIG_REVISION) {
        Some(have) if have == want => pass("proxy.config-current", group, name),
        None | Some(0) => check(
            "proxy.config-current",
            group,
            name,
            Status::Warn,
            Some("the proxy's filter reports no config revision (a module older than this kubectl-mesh): nothing proves which config it runs; kubectl mesh enable with this version delivers a module that does".into()),
        ),
        Some(have) => check(
            "proxy.config-current",
            group,
            name,
            Status::Fail,
            Some(format!(
                "the proxy runs another config (revision {have:012x}): istiod has not pushed the applied object yet (check --wait waits for it), or this proxy does not match it, or refused it (`{logs}`)"
            )),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/stats/prometheus` of Envoy 1.40 running the filter under Istio's stats inclusion list,
    /// after 1 routed, 1 passed-through and 1 preflight request.
    const REAL: &str = include_str!("../../tests/fixtures/envoy-1.40-istio-stats.prom");

    fn pod(stats: Result<ProxyStats, String>) -> Vec<Check> {
        pod_at(stats, None)
    }

    fn pod_at(stats: Result<ProxyStats, String>, applied: Option<&str>) -> Vec<Check> {
        evaluate_pod(
            "Workload gw",
            "gw",
            &PodStats {
                pod: "gw-1".into(),
                stats,
            },
            applied,
        )
    }

    #[test]
    fn the_proxy_must_report_the_applied_revision() {
        let with = |line: &str| Ok(ProxyStats::parse(&format!("{REAL}\n{line}\n")));
        let current = |c: &Vec<Check>| {
            c.iter()
                .find(|c| c.id == "proxy.config-current")
                .map(|c| (c.status, c.description.clone()))
        };
        // 0x6bc48c309c42 = 118491909758018.
        let c = pod_at(
            with("mesh_filter_config_revision{} 118491909758018"),
            Some("6bc48c309c42bc41"),
        );
        assert_eq!(
            current(&c),
            Some((
                Status::Pass,
                "pod gw-1: runs the applied config (6bc48c309c42bc41)".into()
            ))
        );
        let c = pod_at(
            with("mesh_filter_config_revision{} 1"),
            Some("6bc48c309c42bc41"),
        );
        let f = c.iter().find(|c| c.id == "proxy.config-current").unwrap();
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.hint.as_deref().unwrap().contains("revision 000000000001"),
            "{f:?}"
        );
        // An older module reports none: a warning, not a pass.
        let c = pod_at(Ok(ProxyStats::parse(REAL)), Some("6bc48c309c42bc41"));
        assert_eq!(current(&c).map(|c| c.0), Some(Status::Warn));
        // Nothing applied to compare with: no such check.
        assert_eq!(current(&pod(Ok(ProxyStats::parse(REAL)))), None);
    }

    #[test]
    fn parses_envoy_output() {
        let s = ProxyStats::parse(REAL);
        assert_eq!(s.get(CONFIG_OK), Some(1));
        assert_eq!(s.get(ROUTED), Some(1));
        assert_eq!(s.get(PASSED), Some(1));
        assert_eq!(s.get("mesh_filter_cors_preflight"), Some(1));
        assert_eq!(s.get(V8_ACTIVE), Some(3));
        assert_eq!(s.get("wasmcustom_mesh_filter_routed"), None);
        let labelled = ProxyStats::parse("a{x=\"1\"} 2\na{x=\"2\"} 3 1700000000\nb 7\nbroken{ 1\n");
        assert_eq!((labelled.get("a"), labelled.get("b")), (Some(5), Some(7)));
        assert_eq!(labelled.get("broken"), None);
    }

    #[test]
    fn a_running_filter_passes_with_its_counts() {
        let checks = pod(Ok(ProxyStats::parse(REAL)));
        assert!(
            checks.iter().all(|c| c.status == Status::Pass),
            "{checks:#?}"
        );
        let names: Vec<&str> = checks.iter().map(|c| c.description.as_str()).collect();
        assert_eq!(
            names,
            [
                "pod gw-1: filter loaded and configured",
                "pod gw-1: Wasm VM running",
                "pod gw-1: requests: 1 routed, 1 passed through, 1 answered by the filter (1 CORS preflight)",
                "pod gw-1: no failed host calls",
            ]
        );
    }

    #[test]
    fn absent_refused_failing_and_unreadable() {
        let without = REAL
            .lines()
            .filter(|l| !l.contains("mesh_filter"))
            .collect::<Vec<_>>()
            .join("\n");
        let c = pod(Ok(ProxyStats::parse(&without)));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].status, Status::Fail);
        assert!(
            c[0].hint.as_deref().unwrap().starts_with("not loaded"),
            "{c:?}"
        );
        assert!(c[0]
            .hint
            .as_deref()
            .unwrap()
            .contains("rollout restart deployment/gw"));

        let refused = REAL.replace("mesh_filter_config_ok{} 1", "mesh_filter_config_ok{} 0");
        let c = pod(Ok(ProxyStats::parse(&refused)));
        assert_eq!((c.len(), c[0].status), (1, Status::Fail));
        assert!(c[0].hint.as_deref().unwrap().contains("refused"));

        let errors = REAL.replace("mesh_filter_host_errors{} 0", "mesh_filter_host_errors{} 4");
        let c = pod(Ok(ProxyStats::parse(&errors)));
        assert!(c
            .iter()
            .any(|c| c.description == "pod gw-1: 4 failed host calls" && c.status == Status::Warn));

        let crashed = REAL.replace(
            "envoy_wasm_kubectl_mesh_vm_reload_failure{} 0",
            "envoy_wasm_kubectl_mesh_vm_reload_failure{} 2",
        );
        let c = pod(Ok(ProxyStats::parse(&crashed)));
        assert!(c
            .iter()
            .any(|c| c.description == "pod gw-1: Wasm VM running" && c.status == Status::Fail));

        let c = pod(Err("503 connection refused".into()));
        assert_eq!((c.len(), c[0].status), (1, Status::Warn));
        assert!(c[0].hint.as_deref().unwrap().contains("pods/proxy"));
    }
}
