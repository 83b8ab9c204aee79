//! Support for cross-crate tests: a real Envoy process, echo upstreams, a raw HTTP client, a
//! gRPC-Web codec and the digimon app behind `kubectl mesh run`.

pub mod app;
pub mod client;
pub mod conformance;
pub mod digimon;
pub mod envoy;
pub mod grpc_web;
pub mod import_diff;
pub mod istio;
pub mod temp;
pub mod upstream;

use std::path::PathBuf;

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// Loads a mesh config (YAML or JSON) and returns its filter JSON, after validating it.
pub fn load_mesh_config(path: &std::path::Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let cfg = mesh_core::MeshConfig::from_yaml(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    mesh_core::compile(&cfg).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(cfg.to_json())
}

pub use envoy_process::free_port;

/// A mesh config running in real Envoy, with one echo upstream per cluster it routes to.
pub struct MeshFixture {
    /// The Envoy process.
    pub envoy: envoy::Envoy,
    /// Upstreams by cluster name.
    pub upstreams: std::collections::BTreeMap<String, upstream::EchoUpstream>,
}

impl MeshFixture {
    /// Loads `config` (YAML or JSON file), starts one echo upstream per cluster and Envoy.
    pub fn start(config: &std::path::Path) -> anyhow::Result<MeshFixture> {
        let json = load_mesh_config(config)?;
        let engine = mesh_core::compile_json(&json)?;
        let upstreams: std::collections::BTreeMap<_, _> = engine
            .clusters()
            .into_iter()
            .map(|c| (c.to_owned(), upstream::EchoUpstream::start(&short_name(c))))
            .collect();
        let clusters = upstreams.iter().map(|(c, u)| (c.clone(), u.port)).collect();
        let envoy = envoy::EnvoySpec::mesh(&json, clusters).start()?;
        Ok(MeshFixture { envoy, upstreams })
    }

    /// Total requests the upstreams received.
    pub fn upstream_hits(&self) -> usize {
        self.upstreams
            .values()
            .map(upstream::EchoUpstream::count)
            .sum()
    }
}

/// `outbound|6000||server.digimon.svc.cluster.local` -> `server:6000`; other names unchanged.
pub fn short_name(cluster: &str) -> String {
    let mut parts = cluster.split('|');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("outbound"), Some(port), Some(_), Some(fqdn)) => {
            format!("{}:{port}", fqdn.split('.').next().unwrap_or(fqdn))
        }
        _ => cluster.to_owned(),
    }
}
