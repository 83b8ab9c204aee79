//! The differential conformance suite: case files, request matrices, and native-vs-mesh diffing.
//!
//! A case (`tests/conformance/cases/NAME.yaml`) holds a native Envoy route configuration, the
//! equivalent mesh config and a matrix of requests. [`run_case`] starts one native Envoy (the
//! oracle) and one Envoy running the filter, both forwarding to the same echo upstreams, sends
//! every request through both and compares what a client and an upstream can observe, with
//! the plugin's comparison (`kubectl_mesh::verify::observe`, which `kubectl mesh verify` uses).
//! Everything that is *not* compared, or compared after normalization, is listed in
//! [`NORMALIZATIONS`] with its reason (`tests/conformance/FINDINGS.md` repeats the table).

use crate::client::Request;
use crate::envoy::{Envoy, EnvoySpec};
use crate::upstream::EchoUpstream;
pub use kubectl_mesh::verify::observe::{
    describe, diff_text, observe, Observation, UpstreamView, NORMALIZATIONS,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One case file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What the case is about (printed with its results).
    #[serde(default)]
    pub description: String,
    /// The native Envoy side.
    pub native: NativeSide,
    /// The equivalent mesh config (`kubectl-mesh/v1alpha1` `MeshConfig`).
    pub mesh: mesh_core::MeshConfig,
    /// Extra clusters (beyond those the mesh config routes to) the native side references.
    #[serde(default)]
    pub clusters: Vec<String>,
    /// The request matrices; every one expands to the cross product of its lists.
    pub requests: Vec<Matrix>,
}

/// The native side of a case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NativeSide {
    /// The HTTP connection manager's `route_config` (Envoy v3 JSON/YAML).
    pub route_config: Value,
    /// HTTP filters before the router; default: the CORS filter alone.
    #[serde(default)]
    pub http_filters: Option<Vec<Value>>,
    /// HTTP connection manager fields; default `strip_any_host_port: true`. `{}` compares
    /// hosts as Envoy does by default (port and trailing dot are part of the host).
    #[serde(default)]
    pub hcm: Option<serde_json::Map<String, Value>>,
}

/// A request matrix of a case: the format `verify --requests` reads
/// ([`kubectl_mesh::verify::requests::Matrix`], the cross product of its lists), plus
/// `envoy_since`: a version finding (`tests/conformance/FINDINGS.md`): native Envoy older than
/// this version (`1.40`) answers these requests differently, and the filter follows the newer
/// behaviour. On older Envoy every request of the matrix must still *differ*, so the finding is
/// checked on each version instead of skipped.
#[derive(Debug, Clone)]
pub struct Matrix {
    /// The requests.
    pub matrix: kubectl_mesh::verify::requests::Matrix,
    /// The version a finding depends on.
    pub envoy_since: Option<String>,
}

impl<'de> Deserialize<'de> for Matrix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut v = serde_yaml_ng::Value::deserialize(d)?;
        let envoy_since = match v.as_mapping_mut().and_then(|m| m.remove("envoy_since")) {
            Some(s) => Some(String::deserialize(s).map_err(D::Error::custom)?),
            None => None,
        };
        let matrix =
            kubectl_mesh::verify::requests::Matrix::deserialize(v).map_err(D::Error::custom)?;
        Ok(Matrix {
            matrix,
            envoy_since,
        })
    }
}

impl Matrix {
    /// Every request of the matrix, in a stable order.
    pub fn expand(&self) -> Vec<Request> {
        self.matrix.expand()
    }
}

impl Case {
    /// Reads a case file.
    pub fn load(path: &Path) -> anyhow::Result<Case> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        // serde_yaml_ng's errors name the field and the line/column.
        serde_yaml_ng::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// Every request of every matrix, with the matrix's `envoy_since`.
    pub fn requests(&self) -> Vec<(Request, Option<&str>)> {
        self.requests
            .iter()
            .flat_map(|m| {
                m.expand()
                    .into_iter()
                    .map(move |r| (r, m.envoy_since.as_deref()))
            })
            .collect()
    }
}

/// The case files: `$CONFORMANCE_CASES` (a directory) or `tests/conformance/cases`, sorted.
/// `$CONFORMANCE_ONLY` keeps only the cases whose name contains it.
pub fn case_files() -> Vec<PathBuf> {
    let dir = std::env::var_os("CONFORMANCE_CASES")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("tests/conformance/cases"));
    let only = std::env::var("CONFORMANCE_ONLY").unwrap_or_default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| {
        p.extension().is_some_and(|e| e == "yaml") && case_name(p).contains(only.as_str())
    });
    files.sort();
    files
}

/// A dotted version as numbers (`1.36.2` -> `[1, 36, 2]`); non-numeric parts end it.
pub fn parse_version(v: &str) -> Vec<u32> {
    v.split('.').map_while(|p| p.parse().ok()).collect()
}

/// The native Envoy's version, from `envoy --version` (`.../1.36.2/Clean/RELEASE/...`).
pub fn envoy_version() -> anyhow::Result<Vec<u32>> {
    let out = std::process::Command::new(crate::envoy::envoy_binary())
        .arg("--version")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split('/')
        .map(parse_version)
        .find(|v| v.len() == 3)
        .ok_or_else(|| anyhow::anyhow!("no version in `envoy --version`: {text}"))
}

/// A case's name: its file name without `.yaml`.
pub fn case_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The outcome of one case.
#[derive(Debug, Default)]
pub struct CaseReport {
    /// Case name.
    pub name: String,
    /// Requests compared.
    pub comparisons: usize,
    /// Requests that reached an upstream on the native side.
    pub forwarded: usize,
    /// Requests of `envoy_since` matrices that this (older) Envoy answers differently, as
    /// the finding records.
    pub version_findings: usize,
    /// One readable block per differing request.
    pub diffs: Vec<String>,
}

/// The native side's CORS filter entry.
pub fn cors_filter() -> Value {
    json!({
        "name": "envoy.filters.http.cors",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}
    })
}

/// Starts both Envoys for `case` and runs every request through them.
pub fn run_case(path: &Path) -> anyhow::Result<CaseReport> {
    let name = case_name(path);
    let case = Case::load(path)?;
    let engine = mesh_core::compile(&case.mesh)
        .map_err(|e| anyhow::anyhow!("{name}: mesh config invalid: {e}"))?;
    let mut cluster_names: Vec<String> = engine.clusters().into_iter().map(str::to_owned).collect();
    cluster_names.extend(case.clusters.iter().cloned());
    cluster_names.sort();
    cluster_names.dedup();
    let upstreams: BTreeMap<String, EchoUpstream> = cluster_names
        .iter()
        .map(|c| Ok((c.clone(), EchoUpstream::start(&crate::short_name(c))?)))
        .collect::<std::io::Result<_>>()?;
    let clusters: Vec<(String, u16)> = upstreams.iter().map(|(c, u)| (c.clone(), u.port)).collect();
    let native_spec = EnvoySpec {
        route_config: case.native.route_config.clone(),
        http_filters: case
            .native
            .http_filters
            .clone()
            .unwrap_or_else(|| vec![cors_filter()]),
        clusters: clusters.clone(),
        hcm_extra: case
            .native
            .hcm
            .clone()
            .unwrap_or_else(crate::envoy::strip_any_host_port),
    };
    let mesh_spec = EnvoySpec::mesh(&case.mesh.to_json(), clusters);
    // Start both at once: Envoy start-up (and the wasm compile) dominates a case's run time.
    let (native, mesh) = std::thread::scope(|s| {
        let n = s.spawn(|| native_spec.start());
        let m = mesh_spec.start();
        (n.join(), m)
    });
    let native: Envoy = native
        .map_err(|_| anyhow::anyhow!("{name}: native start panicked"))?
        .map_err(|e| anyhow::anyhow!("{name}: native Envoy: {e}"))?;
    let mesh: Envoy = mesh.map_err(|e| anyhow::anyhow!("{name}: mesh Envoy: {e}"))?;
    let mut report = CaseReport {
        name: name.clone(),
        ..Default::default()
    };
    let version = envoy_version()?;
    for (req, since) in case.requests() {
        let n = observe(&native.send(&req));
        let m = observe(&mesh.send(&req));
        report.comparisons += 1;
        if n.upstream.is_some() {
            report.forwarded += 1;
        }
        let older = since.is_some_and(|v| version < parse_version(v));
        match (older, n == m) {
            (false, true) => {}
            (false, false) => report.diffs.push(diff_text(&name, &req, &n, &m)),
            (true, false) => report.version_findings += 1,
            (true, true) => report.diffs.push(format!(
                "[{name}] {}\n    recorded as a version finding (Envoy < {}), but Envoy {} answers \
                 like the filter: update the case and FINDINGS.md\n",
                describe(&req),
                since.unwrap_or_default(),
                version.iter().map(u32::to_string).collect::<Vec<_>>().join(".")
            )),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_expands_to_the_cross_product() {
        let m: Matrix = serde_yaml_ng::from_str(
            "hosts: [a, b]\nmethods: [GET, OPTIONS]\norigins: [~, 'http://x']\nheaders: [[], ['x-a: 1', 'x-b: 2']]",
        )
        .unwrap();
        let reqs = m.expand();
        assert_eq!(reqs.len(), 16);
        let last = reqs.last().unwrap();
        assert_eq!(
            describe(last),
            r#"OPTIONS / host=b origin="http://x" x-a="1" x-b="2""#
        );
    }

    #[test]
    fn findings_md_lists_every_normalization() {
        let path = crate::workspace_root().join("tests/conformance/FINDINGS.md");
        let text = std::fs::read_to_string(path).unwrap();
        for (what, _, _) in NORMALIZATIONS {
            assert!(text.contains(what), "FINDINGS.md does not list `{what}`");
        }
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(parse_version("1.36.2") < parse_version("1.40"));
        assert!(parse_version("1.40.0") >= parse_version("1.40"));
    }
}
