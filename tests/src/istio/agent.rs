//! What istio-agent does between istiod and Envoy for extension configs (ECDS), and
//! file-based ECDS in place of the agent's xDS proxy: each config istiod sent becomes a file
//! the listener's `config_discovery` reads, so Envoy applies its real ECDS rules (accepted
//! types, a missing config answering 500) to exactly what a pod would get.
//!
//! The agent's rules, after istio/istio `pkg/wasm/convert.go`: a Wasm config with a `remote`
//! module is downloaded, its sha256 checked, and rewritten to the local file; when that fails
//! the agent sends an RBAC filter instead, allow-all if the Wasm filter fails open
//! (`failure_policy: FAIL_OPEN`, or the legacy `fail_open`), deny-all otherwise. A `local`
//! module is passed on as it is: the file must be in the pod.

use anyhow::{bail, Context};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const WASM: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const RBAC: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
const EXTENSION_CONFIG: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";

/// What the pod and the network hold, for the agent.
#[derive(Debug, Clone)]
pub struct Pod {
    /// Files mounted into the pod: `(path in the pod, path here)` (the ConfigMap module).
    pub mounts: Vec<(String, PathBuf)>,
    /// What a download of a remote module gets: the module here, or `None` (the registry is
    /// unreachable, or the download fails).
    pub download: Option<PathBuf>,
}

/// Whether a Wasm `PluginConfig` fails open, as istio-agent reads it.
fn fails_open(config: &Value) -> bool {
    match config["failure_policy"].as_str() {
        Some(p) if p != "UNSPECIFIED" => p == "FAIL_OPEN",
        _ => config["fail_open"] == true,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Rewrites a `local` module path as the pod sees it to the file here, when mounted (an
/// unmounted path stays as it is, and Envoy will not find it, as in the pod).
fn local_path(code: &mut Value, pod: &Pod) {
    let Some(filename) = code["local"]["filename"].as_str() else {
        return;
    };
    if let Some((_, here)) = pod.mounts.iter().find(|(p, _)| p == filename) {
        code["local"]["filename"] = json!(here.display().to_string());
    }
}

/// The extension config `ec` (a `TypedExtensionConfig` istiod sent) as istio-agent hands it
/// to Envoy in `pod`.
pub fn convert(ec: &Value, pod: &Pod) -> anyhow::Result<Value> {
    let mut ec = ec.clone();
    if let Some(m) = ec.as_object_mut() {
        m.remove("@type");
    }
    if ec["typed_config"]["@type"] != WASM {
        return Ok(ec);
    }
    let config = &mut ec["typed_config"]["config"];
    let code = &mut config["vm_config"]["code"];
    if code["remote"].is_null() {
        local_path(code, pod);
        return Ok(ec);
    }
    let want = code["remote"]["sha256"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let fetched = pod.download.as_ref().and_then(|p| {
        let bytes = std::fs::read(p).ok()?;
        (want.is_empty() || sha256_hex(&bytes) == want).then(|| p.clone())
    });
    match fetched {
        Some(path) => {
            *code = json!({ "local": { "filename": path.display().to_string() } });
            Ok(ec)
        }
        None => {
            let rbac = if fails_open(config) {
                json!({ "@type": RBAC, "rules_stat_prefix": "wasm-default-allow" })
            } else {
                json!({ "@type": RBAC, "rules": {}, "rules_stat_prefix": "wasm-default-deny" })
            };
            Ok(json!({ "name": ec["name"], "typed_config": rbac }))
        }
    }
}

/// Writes `ec` as the file a `path_config_source` reads (a discovery response with one
/// resource) into `dir`; returns its path.
pub fn write_ecds_file(dir: &Path, index: usize, ec: &Value) -> anyhow::Result<PathBuf> {
    let mut resource = ec.clone();
    resource["@type"] = json!(EXTENSION_CONFIG);
    let response = json!({ "version_info": "1", "resources": [resource] });
    let path = dir.join(format!("ecds-{index}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&response)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Points an HTTP filter's `config_discovery` at the file `path` instead of ADS, keeping
/// everything else istiod set (accepted types, default config, timeouts).
pub fn discover_from_file(filter: &mut Value, path: &Path) -> anyhow::Result<()> {
    let cd = &mut filter["config_discovery"];
    if !cd.is_object() {
        bail!("{} has no config_discovery", filter["name"]);
    }
    let mut source = cd["config_source"].clone();
    if let Some(m) = source.as_object_mut() {
        m.remove("ads");
        m.insert(
            "path_config_source".into(),
            json!({ "path": path.display().to_string() }),
        );
        m.insert("resource_api_version".into(), json!("V3"));
    }
    cd["config_source"] = source;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wasm(code: Value, policy: Value) -> Value {
        let mut config = json!({ "vm_config": { "code": code } });
        if let (Some(c), Some(p)) = (config.as_object_mut(), policy.as_object()) {
            c.extend(p.clone());
        }
        json!({ "name": "f", "typed_config": { "@type": WASM, "config": config } })
    }

    #[test]
    fn a_mounted_module_is_found_and_a_missing_one_is_not() {
        let ec = wasm(json!({ "local": { "filename": "/var/m.wasm" } }), json!({}));
        let pod = Pod {
            mounts: vec![("/var/m.wasm".into(), "/here/m.wasm".into())],
            download: None,
        };
        let got = convert(&ec, &pod).unwrap();
        assert_eq!(
            got["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"],
            "/here/m.wasm"
        );
        let bare = Pod {
            mounts: vec![],
            download: None,
        };
        let got = convert(&ec, &bare).unwrap();
        assert_eq!(
            got["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"],
            "/var/m.wasm"
        );
    }

    #[test]
    fn a_failed_download_becomes_rbac_by_the_fail_policy() {
        let remote = json!({ "remote": { "http_uri": { "uri": "oci://x" }, "sha256": "00" } });
        let pod = Pod {
            mounts: vec![],
            download: None,
        };
        for (policy, allow) in [
            (json!({ "fail_open": true }), true),
            (json!({ "failure_policy": "FAIL_OPEN" }), true),
            (json!({ "failure_policy": "FAIL_RELOAD" }), false),
            (json!({}), false),
        ] {
            let got = convert(&wasm(remote.clone(), policy.clone()), &pod).unwrap();
            assert_eq!(got["typed_config"]["@type"], RBAC);
            assert_eq!(got["typed_config"]["rules"].is_null(), allow, "{policy}");
        }
    }

    #[test]
    fn a_download_must_match_its_digest() {
        let dir = std::env::temp_dir().join(format!("agent-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let module = dir.join("m.wasm");
        std::fs::write(&module, b"\0asm").unwrap();
        let good = sha256_hex(b"\0asm");
        let pod = Pod {
            mounts: vec![],
            download: Some(module.clone()),
        };
        for (sha, ok) in [(good.as_str(), true), ("ab", false)] {
            let ec = wasm(
                json!({ "remote": { "http_uri": { "uri": "https://x" }, "sha256": sha } }),
                json!({}),
            );
            let got = convert(&ec, &pod).unwrap();
            assert_eq!(got["typed_config"]["@type"] == WASM, ok, "{sha}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
