//! Pure rendering: a mesh config plus options become the Kubernetes objects `enable` applies.
//!
//! Nothing here talks to a cluster, so `kubectl mesh render` is offline and the golden tests
//! compare its output byte for byte. The jobs are split: [`config`] reads and checks the
//! config, [`workload`] makes the module's ConfigMap and the pod-template changes,
//! [`crate::istio`] the Istio objects, [`crate::gateway_api`] the Gateway API anchor, [`text`]
//! prints. This module puts them together.

pub mod config;
pub mod text;
pub mod workload;

pub use crate::delivery::Module;
pub use crate::names::*;
pub use crate::options::*;
pub use config::{
    check_api, check_context, config_hash, load_config, parse_config, source_name, CONFIGMAP_LIMIT,
};
pub use text::{render_text, to_json, to_yaml};
pub use workload::{deployment_patch, parse_user_volumes};

use mesh_core::MeshConfig;
use serde_json::Value;
use std::collections::BTreeMap;

/// The most one object may take in the API server's store: etcd's default request limit
/// (1.5 MiB). Custom resources such as an EnvoyFilter are stored as JSON.
pub const OBJECT_LIMIT: usize = 1536 * 1024;
/// Room left for what the API server adds to an object (managedFields, uid, timestamps).
const SERVER_ADDED: usize = 16 * 1024;

/// Why rendering failed. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// Serializing what render built failed (a bug).
    #[error(transparent)]
    Serialize(#[from] crate::output::SerializeError),
    /// The config file could not be read.
    #[error("cannot read {file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config is invalid; `field` is the path inside it.
    #[error("{file}: invalid field `{field}`: {message}\n  fix: correct `{field}` in {file} (see examples/digimon/mesh.yaml for a working config)")]
    Config {
        /// The file.
        file: String,
        /// Field path from [`mesh_core::ConfigError::path`].
        field: String,
        /// The validator's message.
        message: String,
    },
    /// Built without `make wasm`.
    #[error("this build has no embedded filter; build with `make wasm` first (or pass --module-url and --module-sha256)")]
    NoModule,
    /// The module does not fit a ConfigMap.
    #[error("the filter module is {size} bytes, more than a ConfigMap holds ({CONFIGMAP_LIMIT}); publish it and pass --module-url URL --module-sha256 HEX")]
    ModuleTooLarge {
        /// Module size in bytes.
        size: usize,
    },
    /// `--module-sha256` is not 64 hex digits.
    #[error("--module-sha256 must be 64 lower-case hex digits, got `{0}`")]
    BadSha256(String),
    /// A sidecar context without a selector would hit every pod in the namespace.
    #[error(
        "--selector is required for --envoy-context {0}: name the workloads, e.g. --selector app=server"
    )]
    NoSelector(&'static str),
    /// The config asks for something the chosen context cannot do.
    #[error("{file}: `{field}`: {reason}\n  fix: {fix}")]
    Context {
        /// The config file.
        file: String,
        /// Field path in the config.
        field: String,
        /// What does not fit.
        reason: String,
        /// What to do instead.
        fix: String,
    },
    /// A rendered object would not fit in the API server's store.
    #[error("{file}: the rendered {kind} {name} is {size} bytes, more than the API server stores in one object ({OBJECT_LIMIT} bytes, etcd's request limit, less {SERVER_ADDED} for what the server adds); applying it would fail\n  fix: make the config smaller (it is {config} bytes as the filter reads it): hosts that share their routes can be one host with several `domains` or a `*.` wildcard")]
    ObjectTooLarge {
        /// The config file.
        file: String,
        /// Kind of the object.
        kind: String,
        /// Name of the object.
        name: String,
        /// Its size as compact JSON.
        size: usize,
        /// The config's size as the filter reads it (compact JSON).
        config: usize,
    },
    /// The remote module or its pull options do not fit.
    #[error(transparent)]
    Delivery(#[from] crate::delivery::DeliveryError),
    /// A malformed flag value.
    #[error(transparent)]
    Options(#[from] crate::options::OptionsError),
    /// The config's routes conflict in the proxy.
    #[error(transparent)]
    Istio(#[from] crate::istio::IstioError),
    /// `--gateway` is not `NAMESPACE/NAME`.
    #[error("--gateway `{0}` must be NAMESPACE/NAME of an Istio Gateway, e.g. --gateway istio-system/public")]
    BadGateway(String),
}

/// What `render` produces and `enable` applies.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Objects to server-side apply, in order (ConfigMap first, so the filter never points at
    /// a missing module).
    pub objects: Vec<Value>,
    /// Annotations every selected Deployment's pod template gets: the module's mount (sidecars)
    /// and sha (a new module rolls the pods; a config edit does not).
    pub pod_annotations: BTreeMap<String, String>,
    /// Labels every selected Deployment's pod template gets ([`FILTER_LABEL`]).
    pub pod_labels: BTreeMap<String, String>,
    /// For the gateway: the pod-spec part of the Deployment patch (volume + mount).
    pub gateway_pod_spec: Option<Value>,
    /// The gateway context: the objects go with a gateway Deployment, not injected sidecars.
    pub gateway: bool,
    /// Digest of config + module, also in [`CONFIG_HASH_ANNOTATION`].
    pub config_hash: String,
    /// Every object name this instance (`--name`) may own, so `enable` can delete the ones a
    /// changed `--api` or module delivery no longer needs, and nothing of another instance.
    pub owned_names: Vec<String>,
}

/// Renders every object for `cfg`.
pub fn render(cfg: &MeshConfig, opts: &RenderOptions) -> Result<Rendered, RenderError> {
    let sidecar = opts.context != Context::Gateway;
    if sidecar && opts.selector.is_empty() {
        return Err(RenderError::NoSelector(match opts.context {
            Context::SidecarInbound => "sidecar-inbound",
            _ => "sidecar-outbound",
        }));
    }
    check_context(cfg, opts)?;
    check_api(opts.api, &opts.module)?;
    if let Some(g) = &opts.gateway.existing {
        if g.split('/').filter(|p| !p.is_empty()).count() != 2 {
            return Err(RenderError::BadGateway(g.clone()));
        }
    }
    let hash = config_hash(cfg, &opts.module)?;

    let mut objects = Vec::new();
    // Only what the pods load at start: the module (its mount and sha). The config travels in
    // the filter objects and reaches running proxies, so editing it restarts nothing.
    let mut pod_annotations = BTreeMap::new();
    let mut gateway_pod_spec = None;
    if let Some(m) = workload::mount(opts, sidecar)? {
        objects.push(m.configmap);
        pod_annotations.extend(m.annotations);
        gateway_pod_spec = m.gateway_pod_spec;
    }

    if opts.api == Api::Trafficextension && opts.istio_version < crate::istio::TRAFFIC_EXTENSION {
        let (major, minor) = opts.istio_version;
        return Err(RenderError::Context {
            file: opts.source.clone(),
            field: "--api".into(),
            reason: format!("TrafficExtension exists from Istio 1.30; these objects are for Istio {major}.{minor}"),
            fix: "use --api wasmplugin or --api envoyfilter, or pass the cluster's --istio-version".into(),
        });
    }
    objects.extend(crate::istio::filter_objects(cfg, opts, &hash)?);
    if let Some(gateway) = opts.gateway_api() {
        // A Gateway API gateway: its own Gateway serves the hosts; an HTTPRoute anchors them.
        match crate::gateway_api::anchor_http_route(cfg, opts, &hash) {
            Some(route) => objects.push(route),
            None => {
                return Err(RenderError::Context {
                    file: opts.source.clone(),
                    field: "hosts".into(),
                    reason: format!("at the Gateway API gateway {gateway}, kubectl-mesh binds the hosts with an HTTPRoute whose (never used) rules name the config's services, and no route names one"),
                    fix: "give at least one route `to: {service, port}`".into(),
                })
            }
        }
    } else if opts.context == Context::Gateway {
        if opts.gateway.existing.is_none() {
            objects.push(crate::anchor::gateway(cfg, opts, &hash));
        }
        match crate::anchor::anchor_virtual_service(cfg, opts, &hash) {
            Some(vs) => objects.push(vs),
            None => {
                return Err(RenderError::Context {
                    file: opts.source.clone(),
                    field: "hosts".into(),
                    reason: "at the gateway, kubectl-mesh binds the hosts with a VirtualService whose (never used) routes name the config's services, and no route names one".into(),
                    fix: "give at least one route `to: {service, port}`".into(),
                })
            }
        }
    }
    check_sizes(cfg, opts, &objects)?;
    Ok(Rendered {
        objects,
        pod_annotations,
        // With `targetRefs`, Istio finds the pods by their Gateway: none is labelled.
        pod_labels: match opts.target_refs() {
            true => BTreeMap::new(),
            false => BTreeMap::from([(FILTER_LABEL.to_owned(), opts.name.clone())]),
        },
        gateway_pod_spec,
        gateway: !sidecar,
        config_hash: hash,
        owned_names: owned_names(&opts.name),
    })
}

/// Refuses an object the API server could not store, before anything is applied: the filter's
/// config travels inside the EnvoyFilter (or WasmPlugin), so a large config makes it large.
/// The ConfigMap is left to [`CONFIGMAP_LIMIT`]: its module is stored as bytes, not base64.
fn check_sizes(
    cfg: &MeshConfig,
    opts: &RenderOptions,
    objects: &[Value],
) -> Result<(), RenderError> {
    for o in objects.iter().filter(|o| o["kind"] != "ConfigMap") {
        // A Value's Display is its compact JSON and cannot fail.
        let size = o.to_string().len();
        if size + SERVER_ADDED > OBJECT_LIMIT {
            return Err(RenderError::ObjectTooLarge {
                file: opts.source.clone(),
                kind: o["kind"].as_str().unwrap_or("object").to_owned(),
                name: o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                size,
                config: cfg.to_json().len(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
