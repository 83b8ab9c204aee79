//! Pure rendering: a mesh config plus options become the Kubernetes objects `enable` applies.
//!
//! Nothing here talks to a cluster, so `kubectl mesh render` is offline and the golden tests
//! compare its output byte for byte. The Istio objects themselves are built in [`crate::istio`],
//! the Envoy pieces inside them in [`crate::envoy`].

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, PodSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use mesh_core::{Delivery, MeshConfig};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Label every object kubectl-mesh creates carries, so `check` and `disable` can find them.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`], and the server-side apply field manager.
pub const MANAGER: &str = "kubectl-mesh";
/// Annotation on the filter object and pod templates: digest of config + module, so a changed
/// config rolls the pods and `check` can tell whether a workload runs the current one.
pub const CONFIG_HASH_ANNOTATION: &str = "kubectl-mesh/config-hash";
/// Pod label `enable` puts on the workloads it set up (value: the instance `--name`); the filter
/// objects select it too, so a pod gets the filter only once it has the module.
pub const FILTER_LABEL: &str = "kubectl-mesh/filter";
/// Annotation on the module ConfigMap: sha256 of the module it holds.
pub const MODULE_SHA_ANNOTATION: &str = "kubectl-mesh/module-sha256";
/// Istio's pod annotation adding volumes to the sidecar (JSON array of Volumes).
pub const USER_VOLUME_ANNOTATION: &str = "sidecar.istio.io/userVolume";
/// Istio's pod annotation adding mounts to the sidecar (JSON array of VolumeMounts).
pub const USER_VOLUME_MOUNT_ANNOTATION: &str = "sidecar.istio.io/userVolumeMount";
/// Directory the module is mounted at inside `istio-proxy`.
pub const MODULE_DIR: &str = "/var/local/kubectl-mesh";
/// File name of the module in the ConfigMap and in [`MODULE_DIR`].
pub const MODULE_FILE: &str = "mesh_filter.wasm";
/// Name of the pod volume holding the module.
pub const VOLUME_NAME: &str = "kubectl-mesh-filter";
/// The container Istio injects; the module is mounted into it.
pub const PROXY_CONTAINER: &str = "istio-proxy";
/// ConfigMap data limit (1 MiB): a bigger module must be delivered with `--module-url`.
pub const CONFIGMAP_LIMIT: usize = 1024 * 1024;
/// The most one object may take in the API server's store: etcd's default request limit
/// (1.5 MiB). Custom resources such as an EnvoyFilter are stored as JSON.
pub const OBJECT_LIMIT: usize = 1536 * 1024;
/// Room left for what the API server adds to an object (managedFields, uid, timestamps).
const SERVER_ADDED: usize = 16 * 1024;

/// Where in Envoy the filter runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Context {
    /// An Istio ingress gateway: routes the config's hosts (the default: the old standalone
    /// Envoy sat behind the Ingress, where the gateway now is).
    Gateway,
    /// Requests the selected workloads send: routes the config's hosts.
    SidecarOutbound,
    /// Requests arriving at the selected workloads: CORS, header rules and local answers, then
    /// Istio delivers them to the workload (no routing elsewhere, which would loop).
    SidecarInbound,
}

impl Context {
    /// The EnvoyFilter `match.context` value.
    pub fn istio(self) -> &'static str {
        match self {
            Context::SidecarInbound => "SIDECAR_INBOUND",
            Context::SidecarOutbound => "SIDECAR_OUTBOUND",
            Context::Gateway => "GATEWAY",
        }
    }
}

/// Which Istio API carries the HTTP filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    /// networking.istio.io/v1alpha3 EnvoyFilter (filter and route in one object).
    Envoyfilter,
    /// extensions.istio.io/v1alpha1 WasmPlugin (plus an EnvoyFilter for the route).
    Wasmplugin,
    /// extensions.istio.io/v1alpha1 TrafficExtension (plus an EnvoyFilter for the route).
    Trafficextension,
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
        /// image manifest digest for oci (see [`crate::delivery`]).
        sha256: String,
        /// Image pull policy and secret.
        pull: crate::delivery::Pull,
    },
}

/// Everything besides the config that shapes the output.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// Base name of the created objects.
    pub name: String,
    /// Namespace the objects go into.
    pub namespace: String,
    /// Labels selecting the workloads (pods) that run the filter.
    pub selector: BTreeMap<String, String>,
    /// Where in Envoy the filter runs.
    pub context: Context,
    /// Which Istio API carries the filter.
    pub api: Api,
    /// Module delivery.
    pub module: Module,
    /// For `--context gateway`: the gateway Deployment whose pod spec mounts the module.
    pub gateway_deployment: String,
    /// For the gateway: which Istio Gateway serves the config's hosts.
    pub gateway: GatewayOptions,
    /// The config file, for messages.
    pub source: String,
    /// The Istio release (`(1, minor)`) of the control plane the objects are for: what its
    /// APIs accept (WasmPlugin `FAIL_RELOAD` from 1.27, TrafficExtension from 1.30). Per-proxy
    /// differences are handled in the objects themselves (`match.proxy.proxyVersion`).
    pub istio_version: (u32, u32),
}

/// The newest Istio release kubectl-mesh knows; `render` targets it unless told otherwise.
pub const NEWEST_ISTIO: (u32, u32) = (1, 31);

/// Parses `--istio-version` (`1.27`, `1.27.3`, `v1.27`).
pub fn parse_istio_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim().trim_start_matches('v').split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// How the config's hosts reach the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayOptions {
    /// An existing Istio Gateway (`NAMESPACE/NAME`) to bind to; `None`: kubectl-mesh creates one.
    pub existing: Option<String>,
    /// Port of the created Gateway's HTTP server.
    pub http_port: u16,
    /// Port of its HTTPS server (with `tls_secret`).
    pub https_port: u16,
    /// Kubernetes TLS secret (`credentialName`) for an HTTPS server; `None`: HTTP only.
    pub tls_secret: Option<String>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            existing: None,
            http_port: 80,
            https_port: 443,
            tls_secret: None,
        }
    }
}

/// Why rendering failed. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
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
    /// Annotations every selected Deployment's pod template gets.
    pub pod_annotations: BTreeMap<String, String>,
    /// Labels every selected Deployment's pod template gets ([`FILTER_LABEL`]).
    pub pod_labels: BTreeMap<String, String>,
    /// For the gateway: the pod-spec part of the Deployment patch (volume + mount).
    pub gateway_pod_spec: Option<PodSpec>,
    /// The gateway context: the objects go with a gateway Deployment, not injected sidecars.
    pub gateway: bool,
    /// Digest of config + module, also in [`CONFIG_HASH_ANNOTATION`].
    pub config_hash: String,
    /// Every object name this instance (`--name`) may own, so `enable` can delete the ones a
    /// changed `--api` or module delivery no longer needs, and nothing of another instance.
    pub owned_names: Vec<String>,
}

/// Reads and validates a config file; errors name the file and the field.
pub fn load_config(path: &Path) -> Result<MeshConfig, RenderError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| RenderError::Read {
        file: file.clone(),
        source,
    })?;
    parse_config(&file, &text)
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

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([(MANAGED_BY_LABEL.to_owned(), MANAGER.to_owned())])
}

/// Object metadata: name, namespace, the managed-by label and the config hash.
pub(crate) fn meta(name: &str, opts: &RenderOptions, hash: &str) -> Value {
    json!({
        "name": name,
        "namespace": opts.namespace,
        "labels": labels(),
        "annotations": { CONFIG_HASH_ANNOTATION: hash },
    })
}

/// Name of the ConfigMap holding the module.
pub fn configmap_name(opts: &RenderOptions) -> String {
    format!("{}-filter", opts.name)
}

/// Name of the EnvoyFilter carrying only the route (for the extensions.istio.io APIs).
pub fn route_filter_name(opts: &RenderOptions) -> String {
    format!("{}-route", opts.name)
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
    crate::delivery::check_api(opts.api, &opts.module)?;
    if let Some(g) = &opts.gateway.existing {
        if g.split('/').filter(|p| !p.is_empty()).count() != 2 {
            return Err(RenderError::BadGateway(g.clone()));
        }
    }
    let hash = config_hash(cfg, &opts.module)?;

    let mut objects = Vec::new();
    let mut pod_annotations = BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_owned(), hash.clone())]);
    let mut gateway_pod_spec = None;
    if let Module::ConfigMap(bytes) = &opts.module {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(configmap_name(opts)),
                namespace: Some(opts.namespace.clone()),
                labels: Some(labels()),
                // The module's own digest, not the config hash: editing the config must not
                // rewrite a 1 MiB ConfigMap.
                annotations: Some(BTreeMap::from([(
                    MODULE_SHA_ANNOTATION.to_owned(),
                    crate::module::sha256_hex(bytes),
                )])),
                ..Default::default()
            },
            binary_data: Some(BTreeMap::from([(
                MODULE_FILE.to_owned(),
                ByteString(bytes.clone()),
            )])),
            ..Default::default()
        };
        objects.push(serde_json::to_value(&cm).unwrap_or_default());
        let volume = Volume {
            name: VOLUME_NAME.to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: configmap_name(opts),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mount = VolumeMount {
            name: VOLUME_NAME.to_owned(),
            mount_path: MODULE_DIR.to_owned(),
            read_only: Some(true),
            ..Default::default()
        };
        if sidecar {
            // Istio's injection template ranges over these as a JSON object and writes
            // `- name: KEY` followed by the value, so the name is the key and not repeated.
            pod_annotations.insert(
                USER_VOLUME_ANNOTATION.to_owned(),
                user_volume_json(serde_json::to_value(&volume).unwrap_or_default()),
            );
            pod_annotations.insert(
                USER_VOLUME_MOUNT_ANNOTATION.to_owned(),
                user_volume_json(serde_json::to_value(&mount).unwrap_or_default()),
            );
        } else {
            // Gateways are not injected, so the user-volume annotations are ignored there:
            // the gateway Deployment itself gets the volume and the mount.
            gateway_pod_spec = Some(PodSpec {
                volumes: Some(vec![volume]),
                containers: vec![Container {
                    name: PROXY_CONTAINER.to_owned(),
                    volume_mounts: Some(vec![mount]),
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
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
    if opts.context == Context::Gateway {
        if opts.gateway.existing.is_none() {
            objects.push(crate::istio::gateway(cfg, opts, &hash));
        }
        match crate::istio::anchor_virtual_service(cfg, opts, &hash) {
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
        pod_labels: BTreeMap::from([(FILTER_LABEL.to_owned(), opts.name.clone())]),
        gateway_pod_spec,
        gateway: !sidecar,
        config_hash: hash,
        owned_names: vec![
            opts.name.clone(),
            route_filter_name(opts),
            configmap_name(opts),
        ],
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
        let size = serde_json::to_vec(o).map(|v| v.len()).unwrap_or_default();
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

/// `{"NAME": {...rest}}`: the userVolume/userVolumeMount annotation form for one item.
fn user_volume_json(mut item: Value) -> String {
    let name = item
        .as_object_mut()
        .and_then(|m| m.remove("name"))
        .and_then(|n| n.as_str().map(str::to_owned))
        .unwrap_or_default();
    json!({ name: item }).to_string()
}

/// Parses a userVolume/userVolumeMount annotation the way Istio's injection template reads it:
/// each key becomes the `name` of the item.
pub fn parse_user_volumes(text: &str) -> Result<Vec<Value>, serde_json::Error> {
    let map: serde_json::Map<String, Value> = serde_json::from_str(text)?;
    Ok(map
        .into_iter()
        .map(|(name, mut v)| {
            v["name"] = Value::String(name);
            v
        })
        .collect())
}

/// The strategic-merge patch of a Deployment's pod template, as a printable object.
pub fn deployment_patch(name: &str, namespace: &str, r: &Rendered) -> Value {
    let mut template = json!({ "metadata": {
        "labels": r.pod_labels,
        "annotations": r.pod_annotations,
    }});
    if let Some(spec) = &r.gateway_pod_spec {
        template["spec"] = serde_json::to_value(spec).unwrap_or_default();
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "namespace": namespace },
        "spec": { "template": template },
    })
}

/// Objects as `kubectl get -o yaml` would print several: `---`-separated documents.
pub fn to_yaml(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|o| serde_yaml_ng::to_string(o).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Objects as one `v1` `List`, as `kubectl get -o json` prints several.
pub fn to_json(objects: &[Value]) -> String {
    let list = json!({ "apiVersion": "v1", "kind": "List", "items": objects });
    serde_json::to_string_pretty(&list).unwrap_or_default()
}

/// What `kubectl mesh render` prints: the objects plus, as comments, the workload changes.
pub fn render_text(r: &Rendered, opts: &RenderOptions, json_output: bool) -> String {
    let mut objects = r.objects.clone();
    if r.gateway {
        objects.push(deployment_patch(
            &opts.gateway_deployment,
            &opts.namespace,
            r,
        ));
    }
    if json_output {
        return to_json(&objects) + "\n";
    }
    let (major, minor) = opts.istio_version;
    let mut out = format!(
        "# Rendered by kubectl-mesh for Istio {major}.{minor} (--istio-version). `kubectl mesh enable` applies these objects.\n"
    );
    if opts.api != Api::Envoyfilter {
        out.push_str(
            "# The extensions.istio.io API carries the filter; it cannot add routes, so the\n# cluster_header route stays in an EnvoyFilter.\n",
        );
    }
    if r.gateway {
        out.push_str("# The last document is a strategic-merge patch of the gateway Deployment: the label the\n# filter objects select");
        if r.gateway_pod_spec.is_some() {
            out.push_str(" and the module mount (gateways ignore the sidecar.istio.io/userVolume\n# annotations)");
        }
        out.push_str(".\n");
    } else {
        let sel: Vec<String> = opts
            .selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push_str(&format!(
            "# Pod template labels and annotations set on every Deployment in {} matching {}:\n",
            opts.namespace,
            sel.join(",")
        ));
        for (k, v) in r.pod_labels.iter().chain(&r.pod_annotations) {
            out.push_str(&format!("#   {k}: {v}\n"));
        }
    }
    out.push_str("---\n");
    out + &to_yaml(&objects)
}

#[cfg(test)]
mod tests;
