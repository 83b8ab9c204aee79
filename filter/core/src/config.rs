//! The versioned config document (`kubectl-mesh/v1alpha1`, kind `MeshConfig`): its serde schema and loaders.
//!
//! The document is what people write (YAML) and what the filter receives inside Envoy (JSON).
//! Loading only checks the shape; [`crate::compile`] checks meaning and builds the fast form.
//! The JSON loaders (`MeshConfig::from_json`, `FilterConfig::from_json`) are with the reader
//! they call, in `json/load.rs`: the schema depends on no other module.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The only `apiVersion` this build understands.
pub const API_VERSION: &str = "kubectl-mesh/v1alpha1";
/// The only `kind` this build understands.
pub const KIND: &str = "MeshConfig";

/// Why a document could not be loaded. Messages name the field and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The text is not valid JSON/YAML, or a field has the wrong type or name.
    #[error("{path}: {message}")]
    Shape {
        /// Dotted path of the offending field (`hosts[0].routes[1].to.port`), or `.` for the root.
        path: String,
        /// What the parser said.
        message: String,
    },
}

/// The whole document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshConfig {
    /// Must be [`API_VERSION`].
    pub api_version: String,
    /// Must be [`KIND`].
    pub kind: String,
    /// Namespace that short service names (`server`) resolve in. Default `default`.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Kubernetes cluster domain used to build service FQDNs. Default `cluster.local`.
    #[serde(default = "default_cluster_domain")]
    pub cluster_domain: String,
    /// Virtual hosts, matched by the request's Host/`:authority`.
    #[serde(default)]
    pub hosts: Vec<HostConfig>,
    /// How the request's Host/`:authority` is compared with `domains`.
    #[serde(default, skip_serializing_if = "HostMatching::is_default")]
    pub host_matching: HostMatching,
    /// The answer when a listed host has no matching route. Default: Envoy's own "no route"
    /// answer, a 404 with no body and no content type. Setting it also makes the filter answer
    /// requests for hosts the config does not list (which otherwise pass through untouched),
    /// unless `notFoundHosts` is `listed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_found: Option<DirectResponse>,
    /// Which requests get an explicit `notFound`: `all` (the default, as before this field
    /// existed) or only those for the config's own hosts (`listed`). A field of its own rather
    /// than one of `notFound`: a second local-answer type cost the module 3.8 KB.
    #[serde(default, skip_serializing_if = "NotFoundHosts::is_all")]
    pub not_found_hosts: NotFoundHosts,
}

/// Which requests get an explicit `notFound` answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NotFoundHosts {
    /// Every request no listed host takes, and the listed hosts' unrouted ones.
    #[default]
    All,
    /// Only unrouted requests for the listed hosts.
    Listed,
}

impl NotFoundHosts {
    /// True for the default, which is not written out.
    pub fn is_all(&self) -> bool {
        *self == NotFoundHosts::All
    }
}

/// Host comparison options. The defaults ignore a port and a trailing dot, as Istio's gateways
/// do (`ignore_port_in_host_matching`); an imported standalone Envoy may have compared them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostMatching {
    /// `true`: `Host: api.example.com:8080` matches `api.example.com` (Envoy's
    /// `strip_any_host_port`). `false`: the port is part of the host (a domain may list it).
    #[serde(default = "yes")]
    pub ignore_port: bool,
    /// `true`: `api.example.com.` matches `api.example.com` (Envoy's `strip_trailing_host_dot`).
    #[serde(default = "yes")]
    pub ignore_trailing_dot: bool,
}

fn yes() -> bool {
    true
}

impl Default for HostMatching {
    fn default() -> Self {
        HostMatching {
            ignore_port: true,
            ignore_trailing_dot: true,
        }
    }
}

impl HostMatching {
    /// True for the default (both ignored), which is not written out.
    pub fn is_default(&self) -> bool {
        *self == HostMatching::default()
    }
}

/// How the filter delivers a request it routes; set by `kubectl mesh render` from the context.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Delivery {
    /// Gateway and sidecar-outbound: name the upstream cluster in the routing header.
    #[default]
    Upstream,
    /// Sidecar-inbound: the request is already at its workload. Apply CORS, header rules,
    /// rewrites and local answers, and let Istio's inbound route deliver it (setting the
    /// routing header there would send it out again, in a loop).
    Local,
}

/// What the filter receives from Envoy: the user's document and how to deliver. A bare
/// [`MeshConfig`] is read as `delivery: upstream`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterConfig {
    /// How routed requests are delivered.
    #[serde(default)]
    pub delivery: Delivery,
    /// The config document.
    pub mesh: MeshConfig,
    /// The digest kubectl-mesh gave this config and module (its objects'
    /// `kubectl-mesh/config-hash`, hex): the filter reports it as a stat, so `kubectl mesh
    /// check` can tell which config each proxy runs. Nothing else reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

fn default_namespace() -> String {
    "default".to_owned()
}
fn default_cluster_domain() -> String {
    "cluster.local".to_owned()
}

/// One virtual host: a set of domains and the routes tried in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostConfig {
    /// Optional name used in logs and metrics. Defaults to the first domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `api.example.com` (exact), `*.example.com` (any subdomain) or `*` (catch-all).
    pub domains: Vec<String>,
    /// CORS policy for every route of this host (a route may override it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsConfig>,
    /// Request header changes for every route of this host (applied before the route's).
    #[serde(default, skip_serializing_if = "HeaderRules::is_empty")]
    pub request_headers: HeaderRules,
    /// Response header changes for every route of this host (applied before the route's).
    #[serde(default, skip_serializing_if = "HeaderRules::is_empty")]
    pub response_headers: HeaderRules,
    /// Routes, first match wins.
    pub routes: Vec<RouteConfig>,
}

/// One route: conditions and exactly one action (`to`, `directResponse` or `redirect`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteConfig {
    /// Optional name used in logs and the `${route}` variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Conditions; an absent `match` matches every request.
    #[serde(default, rename = "match")]
    pub matches: RouteMatch,
    /// Marks a gRPC-Web route: CORS gains the headers a gRPC-Web client sends and reads.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grpc_web: bool,
    /// CORS policy overriding the host's, field by field (as Envoy merges route and host policies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsConfig>,
    /// Request header changes for this route (after the host's).
    #[serde(default, skip_serializing_if = "HeaderRules::is_empty")]
    pub request_headers: HeaderRules,
    /// Response header changes for this route (after the host's).
    #[serde(default, skip_serializing_if = "HeaderRules::is_empty")]
    pub response_headers: HeaderRules,
    /// Send the request to an upstream service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Target>,
    /// Answer directly, without an upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<DirectResponse>,
    /// Answer with a redirect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Redirect>,
}

/// Route conditions; all that are given must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteMatch {
    /// Path prefix (`/api/`); compared on the path without its query string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Exact path, without the query string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Regular expression (RE2-like syntax) that must match the whole path, without the query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Allowed methods (`GET`, `POST`, ...); empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Header conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
}

/// A condition on one request header. Give exactly one of `exact`, `prefix`, `regex`, `present`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name (case-insensitive).
    pub name: String,
    /// The value equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// The value starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The whole value matches this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// `true`: the header is present; `false`: it is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
    /// Invert the result.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invert: bool,
}

/// Where a routed request goes. Give `service` and `port`, or a raw Envoy `cluster`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    /// Kubernetes service: `server`, `server.other-ns` or a full FQDN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Service port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// A raw Envoy cluster name, for clusters outside Istio's naming (`outbound|PORT||FQDN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Replace the matched path prefix (or the whole path for `path`/`regex` matches) with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_rewrite: Option<String>,
    /// Send this Host/`:authority` upstream instead of the client's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_rewrite: Option<String>,
    /// `true`: the proxy speaks HTTP/2 to this target (a gRPC server whose Service port Istio
    /// does not know as gRPC/HTTP2; `render` patches the cluster). `false`: what Istio decides
    /// for the port. Default: `true` on `grpcWeb` routes, else `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2: Option<bool>,
}

impl Target {
    /// Whether the proxy must speak HTTP/2 to this target on a route with `grpc_web`.
    pub fn wants_http2(&self, grpc_web: bool) -> bool {
        self.http2.unwrap_or(grpc_web)
    }
}

/// A local answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DirectResponse {
    /// HTTP status, 200-599.
    pub status: u16,
    /// Body text. Default empty.
    #[serde(default)]
    pub body: String,
    /// `content-type` of the body. Default `text/plain` when there is a body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// A redirect answer; unset parts keep the request's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Redirect {
    /// `http` or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// New host (without port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// New port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// New path (the query string is kept unless `stripQuery`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Replace the matched prefix with this (only for `prefix` matches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_rewrite: Option<String>,
    /// Status: 301 (default), 302, 303, 307 or 308.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Drop the query string.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strip_query: bool,
}

/// A CORS policy. On a route, unset fields fall back to the host's policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsConfig {
    /// `false` turns CORS handling off (for a route: even if the host has a policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Allowed origins; the request's `Origin` must match one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<OriginMatch>,
    /// `Access-Control-Allow-Methods` on preflights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    /// `Access-Control-Allow-Headers` on preflights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    /// `Access-Control-Expose-Headers` on actual responses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// `Access-Control-Max-Age` in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u32>,
    /// `Access-Control-Allow-Credentials: true`. Forbidden with a `*` origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
}

/// One allowed-origin rule. Give exactly one field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OriginMatch {
    /// Equal to this origin (case-sensitive, as Envoy compares).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// Starts with this. `prefix: "*"` is treated as any origin, as Envoy does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Ends with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// The whole origin matches this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// `true` matches any origin.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub any: bool,
}

/// Header changes: `remove` first, then `set` (overwrite), then `add` (append).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderRules {
    /// Header name -> value; replaces any existing value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Header name -> value; appended as another value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Header names to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl HeaderRules {
    /// True when the rules change nothing.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

impl MeshConfig {
    /// Parses an already-decoded JSON value (the plugin converts YAML to this).
    pub fn from_value(value: serde_json::Value) -> Result<Self, LoadError> {
        serde_path_to_error::deserialize(value).map_err(shape_error)
    }

    /// Parses the YAML form people write.
    #[cfg(feature = "yaml")]
    pub fn from_yaml(text: &str) -> Result<Self, LoadError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            LoadError::Shape {
                path,
                message: e.into_inner().to_string(),
            }
        })
    }

    /// The compact JSON of the document itself.
    pub fn to_json(&self) -> String {
        // Serializing plain structs with string keys cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The JSON handed to the filter inside Envoy for `delivery`.
    pub fn to_filter_json(&self, delivery: Delivery) -> String {
        FilterConfig {
            delivery,
            mesh: self.clone(),
            revision: None,
        }
        .to_json()
    }

    /// [`MeshConfig::to_filter_json`] carrying `revision` (see [`FilterConfig::revision`]).
    pub fn to_filter_json_with_revision(&self, delivery: Delivery, revision: &str) -> String {
        FilterConfig {
            delivery,
            mesh: self.clone(),
            revision: Some(revision.to_owned()),
        }
        .to_json()
    }
}

impl FilterConfig {
    /// The compact JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn shape_error(e: serde_path_to_error::Error<serde_json::Error>) -> LoadError {
    let path = e.path().to_string();
    LoadError::Shape {
        path,
        message: e.into_inner().to_string(),
    }
}
