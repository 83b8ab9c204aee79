//! Support for cross-crate tests: a real Envoy process, a gRPC-Web codec and the digimon app
//! behind `kubectl mesh run`; the raw HTTP client, echo upstreams and the comparisons are the
//! plugin's own (`kubectl mesh verify` runs them), re-exported here.

pub mod app;
pub mod conformance;
pub mod digimon;
pub mod envoy;
pub mod grpc_web;
pub mod import_diff;
pub mod istio;
pub mod temp;

/// Echo upstreams (the plugin's, `kubectl_mesh::verify::echo`).
pub use kubectl_mesh::verify::echo as upstream;
/// The raw HTTP/1.1 client (the plugin's, `kubectl_mesh::verify::http`).
pub use kubectl_mesh::verify::http as client;

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

pub use kubectl_mesh::verify::process::free_port;
pub use kubectl_mesh::verify::short_name;

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
        let mut upstreams = std::collections::BTreeMap::new();
        for c in engine.clusters() {
            upstreams.insert(c.to_owned(), upstream::EchoUpstream::start(&short_name(c))?);
        }
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
