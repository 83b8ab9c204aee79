//! Step 1 (and all `render` does before rendering): the config file and the flags become render
//! options. What the flags leave open (the gateway's namespace and pods, the Istio release) is
//! marked, for the later steps to decide from the cluster; `render` takes the defaults.

use crate::delivery::{self, Module, Pull};
use crate::options::{
    parse_istio_version, parse_selector, Api, Context, GatewayOptions, OptionsError, RenderOptions,
    NEWEST_ISTIO,
};
use crate::render::{self, RenderError};
use mesh_core::MeshConfig;
use std::path::PathBuf;

/// Istio's default gateway namespace: where `render` puts the gateway's objects without `-n`.
pub const GATEWAY_NAMESPACE: &str = "istio-system";

/// istioctl's ingress gateway pods: `render`'s gateway selector without `-l`.
pub const ISTIOCTL_GATEWAY_LABEL: (&str, &str) = ("istio", "ingressgateway");

/// What the command line asks for (render and enable share it).
#[derive(Debug, Clone)]
pub struct Flags {
    /// The config file (`-` for standard input).
    pub file: PathBuf,
    /// `-n`.
    pub namespace: Option<String>,
    /// `-l`.
    pub selector: Option<String>,
    /// `--envoy-context`.
    pub context: Context,
    /// `--api`.
    pub api: Api,
    /// `--module-url`.
    pub module_url: Option<String>,
    /// `--module-sha256`.
    pub module_sha256: Option<String>,
    /// `--image-pull-policy`, `--image-pull-secret`.
    pub pull: Pull,
    /// `--name`.
    pub name: String,
    /// `--gateway-deployment`.
    pub gateway_deployment: Option<String>,
    /// `--gateway`, `--http-port`, `--https-port`, `--tls-secret`.
    pub gateway: GatewayOptions,
    /// `--istio-version`.
    pub istio_version: Option<String>,
}

/// The config and the options made of the flags, with what the flags left open.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated config.
    pub cfg: MeshConfig,
    /// Options; the namespace, selector and Istio release hold `render`'s defaults where the
    /// flags left them open.
    pub opts: RenderOptions,
    /// `-n` was given.
    pub namespace_given: bool,
    /// `-l` was given.
    pub selector_given: bool,
    /// `--istio-version` was given.
    pub istio_version_given: bool,
}

/// Reads the config (a file, or standard input for `-`) and turns the flags into options. The
/// namespace defaults to the gateway's (`istio-system`) for the gateway and to the config's for
/// sidecars; the gateway's pods to istioctl's (`istio=ingressgateway`).
pub fn load(flags: &Flags) -> Result<Loaded, RenderError> {
    let cfg = render::load_config(&flags.file)?;
    let mut selector = match &flags.selector {
        Some(s) => parse_selector(s)?,
        None => Default::default(),
    };
    let selector_given = !selector.is_empty();
    if !selector_given && flags.context == Context::Gateway {
        let (k, v) = ISTIOCTL_GATEWAY_LABEL;
        selector.insert(k.into(), v.into());
    }
    let module = match &flags.module_url {
        Some(url) => delivery::remote(
            url,
            flags.module_sha256.as_deref(),
            flags.pull.clone(),
            crate::module::EMBEDDED,
        )?,
        None => {
            delivery::check_configmap(&flags.pull)?;
            Module::ConfigMap(crate::module::EMBEDDED.to_vec())
        }
    };
    // The gateway's objects live where the gateway runs; a sidecar's where its workload runs.
    let default_ns = match flags.context {
        Context::Gateway => GATEWAY_NAMESPACE.to_owned(),
        _ => cfg.namespace.clone(),
    };
    let istio_version = match &flags.istio_version {
        Some(v) => parse_istio_version(v).ok_or_else(|| OptionsError::IstioVersion(v.clone()))?,
        None => NEWEST_ISTIO,
    };
    let selector_for_opts = selector.clone();
    let opts = RenderOptions {
        name: flags.name.clone(),
        namespace: flags.namespace.clone().unwrap_or(default_ns),
        selector: selector_for_opts,
        context: flags.context,
        api: flags.api,
        module,
        gateway_deployment: flags
            .gateway_deployment
            .clone()
            .unwrap_or_else(|| gateway_deployment(&selector)),
        gateway: flags.gateway.clone(),
        source: render::source_name(&flags.file),
        istio_version,
    };
    Ok(Loaded {
        cfg,
        opts,
        namespace_given: flags.namespace.is_some(),
        selector_given,
        istio_version_given: flags.istio_version.is_some(),
    })
}

/// The Deployment a gateway selector names, as installs name it: `istio=V` is `istio-V`
/// (istioctl's `istio-ingressgateway`; the Helm chart's release `istio-ingress`, whose label
/// drops the `istio-`), `gateway.networking.k8s.io/gateway-name=N` is istiod's `N-istio`.
pub fn gateway_deployment(selector: &std::collections::BTreeMap<String, String>) -> String {
    if let Some(name) = selector.get(crate::names::GATEWAY_NAME_LABEL) {
        return format!("{name}-istio");
    }
    match selector.get("istio") {
        Some(v) => format!("istio-{v}"),
        None => "istio-ingressgateway".to_owned(),
    }
}
