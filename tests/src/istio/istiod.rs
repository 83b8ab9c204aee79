//! istiod's own config generation for one proxy (`make istiod-gen`: tools/istiod-gen runs
//! Istio's pilot code in-process, as Istio's tests do): the app's manifests plus what
//! kubectl-mesh renders become the config dump a real gateway or sidecar would get.

use anyhow::{bail, Context as _};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The istiod-gen binary: `$MESH_ISTIOD_GEN` (the Makefile sets it), else the one `make
/// istiod-gen` builds under target/; an error says how to build it.
pub fn binary() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("MESH_ISTIOD_GEN")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target/istiod-gen/istiod-gen"));
    if !path.is_file() {
        bail!(
            "{} does not exist: build it with `make istiod-gen` (make test-istio does)",
            path.display()
        );
    }
    Ok(path)
}

/// Which proxy istiod generates for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyType {
    /// A gateway (`router`).
    Router,
    /// A sidecar.
    Sidecar,
}

/// One run of istiod's generation.
#[derive(Debug, Clone)]
pub struct Generate {
    /// Gateway or sidecar.
    pub proxy_type: ProxyType,
    /// The proxy's namespace.
    pub namespace: String,
    /// The proxy's pod labels (they select Gateways, EnvoyFilters, WasmPlugins).
    pub labels: BTreeMap<String, String>,
    /// The proxy's `ISTIO_VERSION` (default: the istiod library's own).
    pub istio_version: Option<String>,
    /// istiod's environment (feature flags such as `PILOT_FILTER_GATEWAY_CLUSTER_CONFIG`).
    pub env: Vec<(String, String)>,
    /// Manifests (files or directories), as they are.
    pub files: Vec<PathBuf>,
    /// More objects (what `render` produced, test variants), written to a file for the tool.
    pub objects: Vec<Value>,
    /// The namespace of objects that name none (the digimon manifests).
    pub default_namespace: String,
}

impl Generate {
    /// A gateway pod with `labels` in `namespace`.
    pub fn router(namespace: &str, labels: &[(&str, &str)]) -> Generate {
        Generate::new(ProxyType::Router, namespace, labels)
    }

    /// A sidecar of the pod with `labels` in `namespace`.
    pub fn sidecar(namespace: &str, labels: &[(&str, &str)]) -> Generate {
        Generate::new(ProxyType::Sidecar, namespace, labels)
    }

    fn new(proxy_type: ProxyType, namespace: &str, labels: &[(&str, &str)]) -> Generate {
        Generate {
            proxy_type,
            namespace: namespace.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            istio_version: None,
            env: Vec::new(),
            files: Vec::new(),
            objects: Vec::new(),
            default_namespace: "default".into(),
        }
    }

    /// The proxy's config dump (`{"configs": [...]}`), as istiod would send it; `dir` holds
    /// the objects file.
    pub fn run(&self, dir: &Path) -> anyhow::Result<Value> {
        let mut cmd = Command::new(binary()?);
        cmd.arg("--proxy-type")
            .arg(match self.proxy_type {
                ProxyType::Router => "router",
                ProxyType::Sidecar => "sidecar",
            })
            .args(["--namespace", &self.namespace])
            .args(["--default-namespace", &self.default_namespace])
            // What a default install writes: Prometheus telemetry, so istio.stats is there.
            .arg("--mesh")
            .arg(crate::workspace_root().join("tools/istiod-gen/mesh-install.yaml"));
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        cmd.args(["--labels", &labels.join(",")]);
        if let Some(v) = &self.istio_version {
            cmd.args(["--istio-version", v]);
        }
        for (k, v) in &self.env {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        for f in &self.files {
            cmd.arg("-f").arg(f);
        }
        if !self.objects.is_empty() {
            let path = dir.join("objects.yaml");
            let text: Vec<String> = self
                .objects
                .iter()
                .map(serde_yaml_ng::to_string)
                .collect::<Result<_, _>>()?;
            std::fs::write(&path, text.join("---\n"))
                .with_context(|| format!("writing {}", path.display()))?;
            cmd.arg("-f").arg(&path);
        }
        let out = cmd.output().context("running istiod-gen")?;
        if !out.status.success() {
            bail!(
                "istiod-gen failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout).context("istiod-gen's output is not JSON")
    }
}
