//! The differential "import" mode: each real-world Envoy config in `tests/import/configs` goes
//! through `kubectl mesh verify`'s comparison (`kubectl_mesh::verify::compare`): natively, and
//! as `import-envoy` imports it through the filter, every generated request compared
//! (`tests/import/README.md`). This file only finds the configs and their inputs.

use kubectl_mesh::import;
use kubectl_mesh::verify::compare::{self, Input, Report, Tools};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// `tests/import/configs/NAME/case.yaml` (optional): where the inputs are.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// The Envoy config, relative to the workspace root; default `envoy.yaml` in the folder.
    #[serde(default)]
    pub envoy: Option<String>,
    /// Ingress manifests, relative to the workspace root.
    #[serde(default)]
    pub ingress: Option<String>,
    /// The Envoy's Service in the Ingress (default `envoy`).
    #[serde(default)]
    pub envoy_service: Option<String>,
}

/// The config folders: `tests/import/configs/*`, sorted; `$IMPORT_ONLY` keeps the names that
/// contain it.
pub fn config_dirs() -> Vec<PathBuf> {
    let dir = crate::workspace_root().join("tests/import/configs");
    let only = std::env::var("IMPORT_ONLY").unwrap_or_default();
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    v.retain(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().contains(only.as_str()))
    });
    v.sort();
    v
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// One config's inputs, read.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The config's name (its folder).
    pub name: String,
    /// The Envoy file and its text.
    pub envoy: (String, String),
    /// The Ingress file and its text.
    pub ingress: Option<(String, String)>,
    /// The Envoy's Service in the Ingress.
    pub envoy_service: String,
}

impl Inputs {
    /// Reads the inputs of `dir`.
    pub fn read(dir: &Path) -> anyhow::Result<Inputs> {
        let root = crate::workspace_root();
        let case: CaseFile = match std::fs::read_to_string(dir.join("case.yaml")) {
            Ok(t) => serde_yaml_ng::from_str(&t)?,
            Err(_) => CaseFile::default(),
        };
        let envoy = case
            .envoy
            .as_ref()
            .map_or_else(|| dir.join("envoy.yaml"), |p| root.join(p));
        let ingress = case.ingress.as_ref().map(|p| root.join(p));
        Ok(Inputs {
            name: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            envoy: (envoy.display().to_string(), read(&envoy)?),
            ingress: match ingress {
                Some(p) => Some((p.display().to_string(), read(&p)?)),
                None => None,
            },
            envoy_service: case.envoy_service.unwrap_or_else(|| "envoy".into()),
        })
    }

    /// The import source.
    pub fn source(&self) -> import::Source<'_> {
        import::Source {
            envoy_file: &self.envoy.0,
            envoy_text: &self.envoy.1,
            ingress: self.ingress.as_ref().map(|(f, t)| (f.as_str(), t.as_str())),
            envoy_service: &self.envoy_service,
            namespace: None,
            listener: None,
        }
    }

    /// The import.
    pub fn import(&self) -> anyhow::Result<import::Imported> {
        import::import_source(&self.source())
            .map_err(|e| anyhow::anyhow!("{}: import failed: {e}", self.name))
    }
}

/// The Envoy and module the suites run.
pub fn tools() -> Tools {
    Tools {
        envoy: crate::envoy::envoy_binary(),
        wasm: crate::envoy::wasm_module(),
    }
}

/// Imports one config, runs both sides and compares every generated request.
pub fn run_config(dir: &Path) -> anyhow::Result<Report> {
    run_config_with(dir, &|_| {})
}

/// [`run_config`] with `tweak` applied to the imported MeshConfig first, which then runs as a
/// given config (`verify --config`), to prove the comparison sees a wrong one.
pub fn run_config_with(
    dir: &Path,
    tweak: &dyn Fn(&mut mesh_core::MeshConfig),
) -> anyhow::Result<Report> {
    let inputs = Inputs::read(dir)?;
    let mut config = inputs.import()?.config;
    tweak(&mut config);
    let input = Input {
        name: inputs.name.clone(),
        source: inputs.source(),
        config: Some(config),
        extra: Vec::new(),
    };
    compare::run(&input, &tools()).map_err(|e| anyhow::anyhow!("{}: {e}", inputs.name))
}
