//! A module delivered by URL (`--module-url`): which digest istio-agent checks, and the image
//! pull options.
//!
//! istio-agent downloads the module and compares the `sha256` it is given with the sha256 of
//! the downloaded file for http(s), but with the image *manifest* digest for `oci://`
//! (istio's pkg/wasm: the cache compares the checksum with the fetcher's manifest digest). A
//! pull secret reaches the agent only when istiod resolves it, which it does for WasmPlugin and
//! TrafficExtension, never for an EnvoyFilter; the pull policy travels in the Wasm VM's
//! environment (`ISTIO_META_WASM_IMAGE_PULL_POLICY`), which the agent reads and strips.

use crate::oci::{Artifact, OciError, Reference};
use serde_json::{json, Value};

/// The agent's environment keys (istio's pkg/model/wasm.go).
pub const PULL_POLICY_ENV: &str = "ISTIO_META_WASM_IMAGE_PULL_POLICY";
/// With `Always`, the agent pulls again when this changes (istiod sets a WasmPlugin's
/// resourceVersion); kubectl-mesh sets the config hash, so each new config pulls again.
pub const RESOURCE_VERSION_ENV: &str = "ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION";

/// When istio-agent pulls the module again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// Use a cached module of the same URL (and digest) if there is one.
    #[value(name = "IfNotPresent")]
    IfNotPresent,
    /// Pull again whenever the object changes.
    #[value(name = "Always")]
    Always,
}

impl PullPolicy {
    /// The value Istio's API and the agent use.
    pub fn istio(self) -> &'static str {
        match self {
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Always => "Always",
        }
    }
}

/// How the proxy gets the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Module {
    /// A ConfigMap holding these bytes, mounted into the proxy.
    ConfigMap(Vec<u8>),
    /// Fetched by istio-agent from a URL and checked against a sha256.
    Remote {
        /// http(s) or oci URL.
        url: String,
        /// Lower-case hex digest istio-agent checks: the module's sha256 for http(s), the
        /// image manifest digest for oci (see the module docs).
        sha256: String,
        /// Image pull policy and secret.
        pull: Pull,
    },
}

/// Image pull options of a remote module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pull {
    /// `--image-pull-policy`.
    pub policy: Option<PullPolicy>,
    /// `--image-pull-secret`: a docker-registry Secret in the objects' namespace.
    pub secret: Option<String>,
}

/// Why a remote module cannot be delivered as asked.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// http(s) without a digest.
    #[error("--module-url {0} needs --module-sha256 (the sha256 of the .wasm file istio-agent downloads: `sha256sum FILE`)")]
    NeedsSha256(String),
    /// Not a 64-digit hex digest.
    #[error("--module-sha256 must be 64 hex digits (optionally after sha256:), got `{0}`")]
    BadSha256(String),
    /// A scheme istio-agent does not fetch.
    #[error("--module-url {0}: istio-agent fetches http://, https:// and oci:// modules only")]
    Scheme(String),
    /// The oci reference is invalid.
    #[error(transparent)]
    Oci(#[from] OciError),
    /// The URL's digest and --module-sha256 differ.
    #[error("--module-url {url} names digest {in_url}, but --module-sha256 is {given}; give one of them")]
    Conflict {
        /// The URL.
        url: String,
        /// The digest in the URL.
        in_url: String,
        /// The flag.
        given: String,
    },
    /// No embedded module to compute the image digest from.
    #[error("--module-url {0} without --module-sha256 needs the embedded module (its image digest is computed from it); build with `make wasm`, or pass the digest `kubectl mesh module push` printed")]
    NoModule(String),
    /// Pull options without a remote module.
    #[error(
        "{0} applies to a module fetched from --module-url; the ConfigMap delivery pulls nothing"
    )]
    NotRemote(&'static str),
    /// A pull secret for something else than an image.
    #[error("--image-pull-secret applies to oci:// modules only; istio-agent fetches {0} without credentials")]
    SecretNeedsOci(String),
    /// A pull secret with the EnvoyFilter API.
    #[error("--image-pull-secret needs --api wasmplugin (or trafficextension): istiod turns the Secret into registry credentials for those, never for an EnvoyFilter\n  fix: add --api wasmplugin, or make the image pullable without credentials")]
    SecretNeedsExtensionApi,
}

/// The remote module for `--module-url URL [--module-sha256 HEX]`. For `oci://` the digest is
/// the image manifest digest: from `@sha256:` in the URL, from `--module-sha256`, or else
/// computed from `embedded`, the image `kubectl mesh module push` makes of it.
pub fn remote(
    url: &str,
    sha256: Option<&str>,
    pull: Pull,
    embedded: &[u8],
) -> Result<Module, DeliveryError> {
    let given = sha256.map(normalize).transpose()?;
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    let sha256 = match scheme.as_deref() {
        Some("http" | "https") => {
            if pull.secret.is_some() {
                return Err(DeliveryError::SecretNeedsOci(url.to_owned()));
            }
            given.ok_or_else(|| DeliveryError::NeedsSha256(url.to_owned()))?
        }
        Some("oci") => {
            let reference = Reference::parse(url)?;
            let in_url = reference
                .digest
                .as_deref()
                .map(|d| d.trim_start_matches("sha256:").to_owned());
            match (in_url, given) {
                (Some(u), Some(g)) if u != g => {
                    return Err(DeliveryError::Conflict {
                        url: url.to_owned(),
                        in_url: u,
                        given: g,
                    })
                }
                (Some(d), _) | (None, Some(d)) => d,
                (None, None) if embedded.is_empty() => {
                    return Err(DeliveryError::NoModule(url.to_owned()))
                }
                (None, None) => Artifact::new(embedded)
                    .digest()
                    .trim_start_matches("sha256:")
                    .to_owned(),
            }
        }
        _ => return Err(DeliveryError::Scheme(url.to_owned())),
    };
    Ok(Module::Remote {
        url: url.to_owned(),
        sha256,
        pull,
    })
}

/// Refuses pull options without `--module-url`.
pub fn check_configmap(pull: &Pull) -> Result<(), DeliveryError> {
    match (pull.policy, &pull.secret) {
        (Some(_), _) => Err(DeliveryError::NotRemote("--image-pull-policy")),
        (_, Some(_)) => Err(DeliveryError::NotRemote("--image-pull-secret")),
        _ => Ok(()),
    }
}

/// The Wasm VM environment carrying the pull policy to istio-agent for an EnvoyFilter (the
/// WasmPlugin has fields for it); `None` without a policy.
pub fn agent_env(pull: &Pull, config_hash: &str) -> Option<Value> {
    let policy = pull.policy?;
    let mut values = json!({ PULL_POLICY_ENV: policy.istio() });
    if policy == PullPolicy::Always {
        values[RESOURCE_VERSION_ENV] = json!(config_hash);
    }
    Some(json!({ "key_values": values }))
}

fn normalize(sha: &str) -> Result<String, DeliveryError> {
    let hex = sha.strip_prefix("sha256:").unwrap_or(sha);
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(hex.to_ascii_lowercase())
    } else {
        Err(DeliveryError::BadSha256(sha.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";
    const SHA: &str = "93a44bbb96c751218e4c00d479e4c14358122a389acca16205b1e4d0dc5f9476";

    fn sha_of(m: &Module) -> &str {
        match m {
            Module::Remote { sha256, .. } => sha256,
            Module::ConfigMap(_) => panic!("remote expected"),
        }
    }

    #[test]
    fn oci_digest_is_the_image_manifest_digest() {
        let image = Artifact::new(MODULE).digest();
        let hex = image.trim_start_matches("sha256:");
        let implied = remote("oci://r.example.com/m:v1", None, Pull::default(), MODULE).unwrap();
        assert_eq!(
            sha_of(&implied),
            hex,
            "computed from the embedded module's image"
        );
        assert_ne!(
            hex,
            crate::module::sha256_hex(MODULE),
            "not the .wasm file's sha256"
        );
        let pinned = format!("oci://r.example.com/m@{image}");
        assert_eq!(
            sha_of(&remote(&pinned, None, Pull::default(), b"").unwrap()),
            hex
        );
        let given = remote(
            "oci://r.example.com/m:v1",
            Some(&format!("sha256:{SHA}")),
            Pull::default(),
            b"",
        )
        .unwrap();
        assert_eq!(sha_of(&given), SHA);
        let e = remote(&pinned, Some(SHA), Pull::default(), MODULE).unwrap_err();
        assert!(matches!(e, DeliveryError::Conflict { .. }), "{e}");
        let e = remote("oci://r.example.com/m:v1", None, Pull::default(), b"").unwrap_err();
        assert!(e.to_string().contains("make wasm"), "{e}");
    }

    #[test]
    fn http_needs_the_file_digest_and_no_secret() {
        let e = remote("https://x/m.wasm", None, Pull::default(), MODULE).unwrap_err();
        assert!(e.to_string().contains("--module-sha256"), "{e}");
        assert!(remote("https://x/m.wasm", Some("abc"), Pull::default(), MODULE).is_err());
        let secret = Pull {
            policy: None,
            secret: Some("regcred".into()),
        };
        let e = remote("https://x/m.wasm", Some(SHA), secret, MODULE).unwrap_err();
        assert!(e.to_string().contains("oci://"), "{e}");
        assert!(remote("ftp://x/m.wasm", Some(SHA), Pull::default(), MODULE).is_err());
        let m = remote(
            "https://x/m.wasm",
            Some(&SHA.to_ascii_uppercase()),
            Pull::default(),
            MODULE,
        )
        .unwrap();
        assert_eq!(sha_of(&m), SHA);
    }

    #[test]
    fn pull_options_fit_the_api_and_delivery() {
        let secret = Pull {
            policy: None,
            secret: Some("regcred".into()),
        };
        let m = remote(
            "oci://r.example.com/m:v1",
            Some(SHA),
            secret.clone(),
            MODULE,
        )
        .unwrap();
        use crate::options::Api;
        use crate::render::check_api;
        assert!(check_api(Api::Envoyfilter, &m)
            .unwrap_err()
            .to_string()
            .contains("--api wasmplugin"));
        assert!(check_api(Api::Wasmplugin, &m).is_ok());
        assert!(check_configmap(&secret).is_err());
        assert!(check_configmap(&Pull::default()).is_ok());
        let always = Pull {
            policy: Some(PullPolicy::Always),
            secret: None,
        };
        let env = agent_env(&always, "abc").unwrap();
        assert_eq!(env["key_values"][PULL_POLICY_ENV], "Always");
        assert_eq!(env["key_values"][RESOURCE_VERSION_ENV], "abc");
        assert!(agent_env(&Pull::default(), "abc").is_none());
    }
}
