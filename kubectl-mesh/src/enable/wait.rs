//! Step 8 (`--wait`): until every selected Deployment has rolled out and its pods run
//! `istio-proxy`.

use super::EnableError;
use crate::cluster::Cluster;
use crate::plan;
use std::io::Write;
use std::time::{Duration, Instant};

/// Waits until every selected Deployment has rolled out and all its pods run `istio-proxy`.
pub async fn wait(
    cluster: &Cluster,
    namespace: &str,
    selector: &str,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<(), EnableError> {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let mut pending = Vec::new();
        let mut summary = Vec::new();
        for d in cluster.deployments(namespace, selector).await? {
            let name = d.metadata.name.clone().unwrap_or_default();
            let want = d.spec.replicas.unwrap_or(1);
            let status = d.status.clone().unwrap_or_default();
            let generation_seen = status.observed_generation >= d.metadata.generation;
            let updated = status.updated_replicas.unwrap_or(0);
            let pods = cluster.pods(namespace, &plan::pod_selector(&d)).await?;
            let ready = pods
                .iter()
                .filter(|p| {
                    let running =
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                    let proxy = p
                        .spec
                        .as_ref()
                        .is_some_and(|s| plan::proxy_container(s).is_some());
                    running && proxy
                })
                .count();
            let done = generation_seen
                && updated >= want
                && ready as i32 == want
                && pods.len() as i32 == want;
            summary.push(format!(
                "{name} {ready}/{want} pods running with istio-proxy"
            ));
            if !done {
                pending.push(name);
            }
        }
        let line = summary.join(", ");
        if line != last {
            let _ = writeln!(out, "  waiting: {line}");
            last = line;
        }
        if pending.is_empty() {
            let _ = writeln!(out, "  rolled out: every selected pod runs istio-proxy");
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(EnableError::Timeout(timeout.as_secs(), last));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
