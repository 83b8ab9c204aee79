//! Step 8 (`--wait`): until the proof. Each selected Deployment rolls out with `istio-proxy` in
//! every pod, then every pod's proxy reports the filter loaded with the applied config (its
//! stats, as `check` reads them: `mesh_filter_config_ok` 1 and `mesh_filter_config_revision` the
//! applied hash). A line per workload whenever its state changes. `--wait=rollout` stops after
//! the rollout (for a user who may not read pods/proxy).

use super::EnableError;
use crate::check::proxy::{ProxyStats, CONFIG_OK, CONFIG_REVISION};
use crate::cluster::Cluster;
use crate::plan;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

/// What `--wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum WaitFor {
    /// The rollout, then every pod's proxy running the applied config (its stats).
    #[default]
    Filter,
    /// The rollout only: every selected pod runs `istio-proxy`.
    Rollout,
}

/// Where one workload stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The Deployment.
    pub name: String,
    /// Pods wanted.
    pub want: i32,
    /// Pods of the current template running with `istio-proxy`.
    pub rolled: usize,
    /// Of those, pods whose proxy runs the applied config (`None`: not looked at).
    pub proven: Option<usize>,
    /// Why a pod is not proven yet (the first one).
    pub why: Option<String>,
    /// Rolled out (and proven, when asked).
    pub done: bool,
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}/{} pods running with istio-proxy",
            self.name, self.rolled, self.want
        )?;
        if let Some(p) = self.proven {
            write!(f, ", {p}/{} run the applied config", self.want)?;
        }
        if let (Some(why), false) = (&self.why, self.done) {
            write!(f, " ({why})")?;
        }
        Ok(())
    }
}

/// Whether a Deployment's rollout is complete and which of its pods run `istio-proxy`.
pub fn rollout(d: &Deployment, pods: &[Pod]) -> (bool, Vec<String>) {
    let want = d.spec.replicas.unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    let generation_seen = status.observed_generation >= d.metadata.generation;
    let updated = status.updated_replicas.unwrap_or(0);
    let ready: Vec<String> = pods
        .iter()
        .filter(|p| {
            let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            let proxy = p
                .spec
                .as_ref()
                .is_some_and(|s| plan::proxy_container(s).is_some());
            running && proxy
        })
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let done = generation_seen
        && updated >= want
        && ready.len() as i32 == want
        && pods.len() as i32 == want;
    (done, ready)
}

/// Whether a pod's stats prove it runs the applied config (`applied`: the config hash), and
/// why not.
pub fn proves(stats: &Result<ProxyStats, String>, applied: &str) -> Result<(), String> {
    let stats = stats.as_ref().map_err(|e| {
        format!(
            "stats not readable: {}",
            e.lines().next().unwrap_or_default()
        )
    })?;
    match stats.get(CONFIG_OK) {
        None => return Err("the filter is not loaded".into()),
        Some(0) => return Err("the proxy refused the filter's configuration".into()),
        Some(_) => {}
    }
    let want = mesh_core::revision_number(applied);
    match (stats.get(CONFIG_REVISION), want) {
        (Some(have), Some(want)) if have == want => Ok(()),
        (have, _) => Err(format!(
            "it runs config revision {:012x}, not {}",
            have.unwrap_or(0),
            applied.get(..12).unwrap_or(applied)
        )),
    }
}

/// Waits until every selected Deployment has rolled out and (with [`WaitFor::Filter`]) every
/// pod's proxy runs the config with hash `applied`.
pub async fn wait(
    cluster: &Cluster,
    namespace: &str,
    selector: &str,
    applied: &str,
    what: WaitFor,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<(), EnableError> {
    let start = Instant::now();
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let mut all = Vec::new();
        for d in cluster.deployments(namespace, selector).await? {
            let pods = cluster.pods(namespace, &plan::pod_selector(&d)).await?;
            let (rolled_out, ready) = rollout(&d, &pods);
            let mut p = Progress {
                name: d.metadata.name.clone().unwrap_or_default(),
                want: d.spec.replicas.unwrap_or(1),
                rolled: ready.len(),
                proven: None,
                why: None,
                done: rolled_out,
            };
            if what == WaitFor::Filter && rolled_out {
                let mut proven = 0;
                for pod in &ready {
                    match proves(
                        &crate::check::pod_stats(cluster, namespace, pod).await,
                        applied,
                    ) {
                        Ok(()) => proven += 1,
                        Err(why) => {
                            p.why.get_or_insert(format!("pod {pod}: {why}"));
                        }
                    }
                }
                p.proven = Some(proven);
                p.done = proven as i32 == p.want;
            }
            all.push(p);
        }
        for p in &all {
            let line = p.to_string();
            if last.get(&p.name) != Some(&line) {
                let _ = writeln!(out, "  waiting: {line}");
                last.insert(p.name.clone(), line);
            }
        }
        if !all.is_empty() && all.iter().all(|p| p.done) {
            let _ = writeln!(
                out,
                "  {}",
                match what {
                    WaitFor::Filter => "done: every selected pod runs the applied config",
                    WaitFor::Rollout => "rolled out: every selected pod runs istio-proxy",
                }
            );
            return Ok(());
        }
        if start.elapsed() >= timeout {
            let state: Vec<String> = all.iter().map(ToString::to_string).collect();
            return Err(EnableError::Timeout(timeout.as_secs(), state.join("; ")));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proof_is_the_applied_revision_in_a_loaded_filter() {
        let stats = |text: &str| Ok(ProxyStats::parse(text));
        let applied = "6bc48c309c42bc41";
        assert_eq!(
            proves(
                &stats("mesh_filter_config_ok 1\nmesh_filter_config_revision 118491909758018\n"),
                applied
            ),
            Ok(())
        );
        let old = proves(
            &stats("mesh_filter_config_ok 1\nmesh_filter_config_revision 1\n"),
            applied,
        );
        assert_eq!(
            old,
            Err("it runs config revision 000000000001, not 6bc48c309c42".into())
        );
        assert!(proves(&stats("mesh_filter_config_ok 0\n"), applied)
            .unwrap_err()
            .contains("refused"));
        assert!(proves(&stats(""), applied)
            .unwrap_err()
            .contains("not loaded"));
        assert!(proves(&Err("503\nmore".into()), applied)
            .unwrap_err()
            .ends_with("stats not readable: 503"));
        let p = Progress {
            name: "server".into(),
            want: 2,
            rolled: 2,
            proven: Some(1),
            why: Some("pod server-1: the filter is not loaded".into()),
            done: false,
        };
        assert_eq!(
            p.to_string(),
            "server: 2/2 pods running with istio-proxy, 1/2 run the applied config (pod server-1: the filter is not loaded)"
        );
    }
}
