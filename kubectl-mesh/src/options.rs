//! What shapes the rendered objects besides the config: where the filter runs, which Istio API
//! carries it, how the module travels, which gateway serves the hosts, the Istio release.

use crate::delivery::Module;
use crate::names::GATEWAY_NAME_LABEL;
use mesh_core::Delivery;
use std::collections::BTreeMap;

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

    /// How the filter delivers what it routes in this context.
    pub fn delivery(self) -> Delivery {
        match self {
            Context::SidecarInbound => Delivery::Local,
            Context::SidecarOutbound | Context::Gateway => Delivery::Upstream,
        }
    }

    /// The command-line spelling (`--envoy-context`).
    pub fn flag(self) -> &'static str {
        match self {
            Context::Gateway => "gateway",
            Context::SidecarOutbound => "sidecar-outbound",
            Context::SidecarInbound => "sidecar-inbound",
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

impl RenderOptions {
    /// At a Kubernetes Gateway API gateway (the selector names its pods by
    /// `gateway.networking.k8s.io/gateway-name`): that Gateway's name, in the objects'
    /// namespace. Its hosts are bound with an HTTPRoute, not an Istio VirtualService.
    pub fn gateway_api(&self) -> Option<&str> {
        match self.context {
            Context::Gateway => self.selector.get(GATEWAY_NAME_LABEL).map(String::as_str),
            _ => None,
        }
    }

    /// Whether the extension object names its Gateway API gateway by `targetRefs` instead of a
    /// pod selector: Istio 1.22+ reads it, and only a module istio-agent downloads works on
    /// every pod of the gateway (a ConfigMap module is only on the pods `enable` rolled, which
    /// the selector's `kubectl-mesh/filter` label picks out).
    pub fn target_refs(&self) -> bool {
        self.gateway_api().is_some()
            && self.api != Api::Envoyfilter
            && matches!(self.module, Module::Remote { .. })
            && self.istio_version >= TARGET_REFS
    }
}

/// First Istio release whose WasmPlugin and TrafficExtension take `targetRefs`.
pub const TARGET_REFS: (u32, u32) = (1, 22);

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

/// A malformed flag value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionsError {
    /// `--selector` is not `key=value,...`.
    #[error("--selector: `{0}` is not key=value (example: --selector app=server)")]
    Selector(String),
    /// `--istio-version` is not `MAJOR.MINOR`.
    #[error(
        "--istio-version `{0}` must be MAJOR.MINOR of an Istio release, e.g. --istio-version 1.27"
    )]
    IstioVersion(String),
}

/// Parses `a=b,c=d` (a label selector of equalities).
pub fn parse_selector(text: &str) -> Result<BTreeMap<String, String>, OptionsError> {
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
            _ => Err(OptionsError::Selector(pair.to_owned())),
        })
        .collect()
}

/// `k=v,k2=v2`: a selector as the list calls and messages write it.
pub fn selector_text(selector: &BTreeMap<String, String>) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
