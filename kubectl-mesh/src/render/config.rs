//! The config and the flags as render takes them: reading and validating the MeshConfig (a file
//! or `-` for standard input), its digest, and the combinations a context or API refuses.

use super::RenderError;
use crate::delivery::{DeliveryError, Module};
use crate::options::{Api, RenderOptions};
use mesh_core::{Delivery, MeshConfig};
use std::io::Read;
use std::path::Path;

/// ConfigMap data limit (1 MiB): a bigger module must be delivered with `--module-url`.
pub const CONFIGMAP_LIMIT: usize = 1024 * 1024;

/// How messages name standard input (`-f -`).
pub const STDIN_NAME: &str = "<stdin>";

/// Reads and validates a config file, or standard input for `-`; errors name the file and the
/// field.
pub fn load_config(path: &Path) -> Result<MeshConfig, RenderError> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|source| RenderError::Read {
                file: STDIN_NAME.to_owned(),
                source,
            })?;
        return parse_config(STDIN_NAME, &text);
    }
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| RenderError::Read {
        file: file.clone(),
        source,
    })?;
    parse_config(&file, &text)
}

/// How messages name the config file (`-` is standard input).
pub fn source_name(path: &Path) -> String {
    match path == Path::new("-") {
        true => STDIN_NAME.to_owned(),
        false => path.display().to_string(),
    }
}

/// Parses and validates config text; `file` is only used in messages.
pub fn parse_config(file: &str, text: &str) -> Result<MeshConfig, RenderError> {
    let to_err = |e: mesh_core::ConfigError| {
        let field = e.path().to_owned();
        let full = e.to_string();
        // The error text starts with the path; keep only the reason after it.
        let message = full
            .strip_prefix(&format!("{field}: "))
            .unwrap_or(&full)
            .to_owned();
        RenderError::Config {
            file: file.to_owned(),
            field,
            message,
        }
    };
    let cfg = MeshConfig::from_yaml(text).map_err(|e| to_err(e.into()))?;
    mesh_core::compile(&cfg).map_err(to_err)?;
    Ok(cfg)
}

/// Digest of the config and the module (16 hex digits), checking the module on the way.
pub fn config_hash(cfg: &MeshConfig, module: &Module) -> Result<String, RenderError> {
    let module_id = match module {
        Module::ConfigMap(bytes) if bytes.is_empty() => return Err(RenderError::NoModule),
        Module::ConfigMap(bytes) if bytes.len() > CONFIGMAP_LIMIT => {
            return Err(RenderError::ModuleTooLarge { size: bytes.len() })
        }
        Module::ConfigMap(bytes) => crate::module::sha256_hex(bytes),
        Module::Remote { sha256, .. }
            if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            return Err(RenderError::BadSha256(sha256.clone()))
        }
        Module::Remote { url, sha256, .. } => format!("{url}@{}", sha256.to_ascii_lowercase()),
    };
    let filter_json = cfg.to_json();
    Ok(
        crate::module::sha256_hex(format!("{module_id}\n{filter_json}").as_bytes())[..16]
            .to_owned(),
    )
}

/// Refuses pull options the chosen API cannot carry: istiod resolves a pull secret for the
/// extensions.istio.io APIs only.
pub fn check_api(api: Api, module: &Module) -> Result<(), DeliveryError> {
    match module {
        Module::Remote { pull, .. } if pull.secret.is_some() && api == Api::Envoyfilter => {
            Err(DeliveryError::SecretNeedsExtensionApi)
        }
        _ => Ok(()),
    }
}

/// Checks that the config fits the context: inbound, the filter delivers to the workload it
/// runs in, so every `to` must name that one workload's service (a second service, or a raw
/// cluster, would have to be reached by routing out of the inbound listener, which loops).
pub fn check_context(cfg: &MeshConfig, opts: &RenderOptions) -> Result<(), RenderError> {
    if opts.context.delivery() != Delivery::Local {
        return Ok(());
    }
    let mut first: Option<(String, String)> = None;
    for (hi, host) in cfg.hosts.iter().enumerate() {
        for (ri, route) in host.routes.iter().enumerate() {
            let Some(to) = &route.to else { continue };
            let field = format!("hosts[{hi}].routes[{ri}].to");
            let fix = "route it at the gateway (--envoy-context gateway) or from the callers (--envoy-context sidecar-outbound), or give this workload a config that names only its own service".to_owned();
            let Some(service) = &to.service else {
                return Err(RenderError::Context {
                    file: opts.source.clone(),
                    field,
                    reason: "sidecar-inbound delivers requests to the workload the filter runs in; a raw cluster target would route them out again".into(),
                    fix,
                });
            };
            let fqdn =
                mesh_core::upstream::service_fqdn(service, &cfg.namespace, &cfg.cluster_domain);
            match &first {
                None => first = Some((fqdn, field)),
                Some((f, _)) if *f == fqdn => {}
                Some((f, other)) => {
                    return Err(RenderError::Context {
                        file: opts.source.clone(),
                        field,
                        reason: format!("sidecar-inbound delivers requests to the workload the filter runs in, but this route names {fqdn} while `{other}` names {f}; one of them is another workload, and routing to it from its inbound listener would loop"),
                        fix,
                    })
                }
            }
        }
    }
    Ok(())
}
