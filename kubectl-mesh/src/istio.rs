//! The Istio objects that carry the filter: the EnvoyFilter and its patches per context, and
//! the WasmPlugin/TrafficExtension variants. (At the gateway, what binds the hosts is in
//! [`crate::anchor`], re-exported here.)

use crate::delivery::Module;
use crate::envoy::{self, FailPolicy};
use crate::names::{meta, module_path, route_filter_name, FILTER_LABEL};
use crate::options::{Api, Context, RenderOptions};
use crate::proxy_version;
use mesh_core::config::Target;
use mesh_core::upstream::service_fqdn;
use mesh_core::{Delivery, MeshConfig};
use serde_json::{json, Value};
use std::collections::BTreeMap;

pub use crate::anchor::{
    anchor_virtual_service, domains, gateway, gateway_ref, targets, ANCHOR_PATH,
};

/// Why the config's routes cannot become one set of Istio patches.
#[derive(Debug, thiserror::Error)]
pub enum IstioError {
    /// Two routes ask for different things of one proxy cluster.
    #[error("{file}: `{field}`: {reason}\n  fix: {fix}")]
    Conflict {
        /// The config file.
        file: String,
        /// Field path in the config.
        field: String,
        /// What does not fit.
        reason: String,
        /// What to do instead.
        fix: String,
    },
}

/// Istio's type for the RBAC filter istio-agent puts in place of a Wasm filter whose module it
/// could not fetch (allow-all when the filter fails open, deny-all otherwise).
pub const RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
/// First Istio release whose WasmPlugin `failStrategy` takes `FAIL_RELOAD`.
pub const WASMPLUGIN_FAIL_RELOAD: (u32, u32) = (1, 27);
/// First Istio release serving `extensions.istio.io` `TrafficExtension`.
pub const TRAFFIC_EXTENSION: (u32, u32) = (1, 30);
/// EnvoyFilter annotation (Istio 1.26+) naming services a gateway must keep clusters for when
/// it filters them (`PILOT_FILTER_GATEWAY_CLUSTER_CONFIG`).
pub const REFERENCED_SERVICES_ANNOTATION: &str = "envoyfilter.istio.io/referenced-services";

/// `match` of the context, plus the listener part.
fn context_match(context: Context, listener: Value) -> Value {
    json!({ "context": context.istio(), "listener": listener })
}

/// `match` selecting every HTTP connection manager of the context.
fn hcm_match(context: Context) -> Value {
    context_match(
        context,
        json!({ "filterChain": { "filter": { "name": envoy::HCM_NAME } } }),
    )
}

/// `match` selecting the HTTP filter `name` in every HTTP connection manager of the context.
fn http_filter_match(context: Context, name: &str) -> Value {
    context_match(
        context,
        json!({ "filterChain": { "filter": {
            "name": envoy::HCM_NAME,
            "subFilter": { "name": name },
        }}}),
    )
}

fn insert_before_router(context: Context, value: Value) -> Value {
    json!({
        "applyTo": "HTTP_FILTER",
        "match": http_filter_match(context, envoy::ROUTER_NAME),
        "patch": { "operation": "INSERT_BEFORE", "value": value },
    })
}

/// `patch` applied only to proxies whose `ISTIO_VERSION` matches `regex`.
fn gated(mut patch: Value, regex: String) -> Value {
    patch["match"]["proxy"] = json!({ "proxyVersion": regex });
    patch
}

/// The reserved-header strip in every HTTP connection manager: natively through early header
/// mutation where the proxy has it, else through a Lua filter first in the chain. Both hold
/// while the filter's VM is down; a proxy that cannot load a patch rejects the whole listener,
/// so each proxy gets only the one it can load.
fn strip_patches(context: Context) -> Vec<Value> {
    let mut typed = json!({ "@type": envoy::HCM_TYPE });
    if let (Some(t), Value::Object(extra)) =
        (typed.as_object_mut(), envoy::strip_reserved_headers())
    {
        t.extend(extra);
    }
    let feature = proxy_version::EARLY_HEADER_MUTATION;
    vec![
        gated(
            json!({
                "applyTo": "NETWORK_FILTER",
                "match": hcm_match(context),
                "patch": { "operation": "MERGE", "value": { "name": envoy::HCM_NAME, "typed_config": typed } },
            }),
            feature.present(),
        ),
        gated(
            json!({
                "applyTo": "HTTP_FILTER",
                "match": hcm_match(context),
                "patch": { "operation": "INSERT_FIRST", "value": envoy::strip_reserved_headers_lua() },
            }),
            feature.absent(),
        ),
    ]
}

/// A MERGE giving the inserted Wasm filter fail `policy`.
fn fail_policy_merge(context: Context, policy: FailPolicy) -> Value {
    json!({
        "applyTo": "HTTP_FILTER",
        "match": http_filter_match(context, envoy::FILTER_NAME),
        "patch": { "operation": "MERGE", "value": {
            "name": envoy::FILTER_NAME,
            "typed_config": { "@type": envoy::WASM_TYPE, "config": Value::Object(policy.fields()) },
        }},
    })
}

/// The fail policy of a module istio-agent downloads (`--module-url`): when the download
/// fails the agent puts an RBAC filter in its place, allow-all only if the filter fails open.
/// At the gateway and outbound a reload policy would make that a deny-all for every app, so
/// there the filter fails open; inbound it reloads (a proxy without `failure_policy` ignores
/// the field and fails closed, as it should there).
fn remote_fail_policy(delivery: Delivery) -> FailPolicy {
    match delivery {
        Delivery::Upstream => FailPolicy::LegacyOpen,
        Delivery::Local => FailPolicy::Reload,
    }
}

/// The Wasm filter patches: inline (ConfigMap module), or through ECDS for a remote module, so
/// that istio-agent downloads and verifies it and hands Envoy a local file (the pull policy
/// rides in the VM environment, which the agent reads and strips).
fn wasm_patches(cfg: &MeshConfig, opts: &RenderOptions, hash: &str) -> Vec<Value> {
    let delivery = opts.context.delivery();
    match &opts.module {
        Module::ConfigMap(_) => {
            // The config travels once; the fail policy is merged in per proxy version (Envoy
            // refuses `fail_open` together with `failure_policy`, and older Envoys lack the
            // latter).
            let code = envoy::local_code(&module_path());
            let filter = envoy::http_filter(envoy::plugin_config_json(
                &cfg.to_filter_json_with_revision(delivery, hash),
                FailPolicy::LegacyClosed,
                code,
            ));
            let feature = proxy_version::WASM_FAILURE_POLICY;
            let mut v = vec![
                insert_before_router(opts.context, filter),
                gated(
                    fail_policy_merge(opts.context, FailPolicy::Reload),
                    feature.present(),
                ),
            ];
            let legacy = envoy::legacy_fail_policy(delivery);
            if legacy != FailPolicy::LegacyClosed {
                v.push(gated(
                    fail_policy_merge(opts.context, legacy),
                    feature.absent(),
                ));
            }
            v
        }
        Module::Remote { url, sha256, pull } => {
            let mut config = envoy::plugin_config_json(
                &cfg.to_filter_json_with_revision(delivery, hash),
                remote_fail_policy(delivery),
                envoy::remote_code(url, sha256),
            );
            if let Some(env) = crate::delivery::agent_env(pull, hash) {
                config["vm_config"]["environment_variables"] = env;
            }
            vec![
                json!({
                    "applyTo": "EXTENSION_CONFIG",
                    "patch": { "operation": "ADD", "value": {
                        "name": envoy::FILTER_NAME,
                        "typed_config": { "@type": envoy::WASM_TYPE, "config": config },
                    }},
                }),
                insert_before_router(
                    opts.context,
                    json!({
                        "name": envoy::FILTER_NAME,
                        "config_discovery": {
                            "config_source": { "ads": {}, "initial_fetch_timeout": "0s" },
                            // The RBAC type too: istio-agent substitutes one when the
                            // download fails, and Envoy refuses a type not listed here (then
                            // every request on the listener gets 500).
                            "type_urls": [envoy::WASM_TYPE, RBAC_TYPE],
                        },
                    }),
                ),
            ]
        }
    }
}

/// The Istio cluster a target names (`outbound|PORT||FQDN`), or its raw cluster name.
fn target_cluster(cfg: &MeshConfig, to: &Target) -> Option<ClusterRef> {
    match (&to.service, to.port, &to.cluster) {
        (Some(s), Some(p), _) => Some(ClusterRef::Service {
            fqdn: service_fqdn(s, &cfg.namespace, &cfg.cluster_domain),
            port: p,
        }),
        (_, _, Some(c)) => Some(ClusterRef::Raw(c.clone())),
        _ => None,
    }
}

/// A cluster the config routes to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClusterRef {
    /// An Istio service cluster.
    Service {
        /// The service's FQDN.
        fqdn: String,
        /// Its port.
        port: u16,
    },
    /// A raw Envoy cluster name.
    Raw(String),
}

impl std::fmt::Display for ClusterRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClusterRef::Service { fqdn, port } => write!(f, "{fqdn}:{port}"),
            ClusterRef::Raw(c) => write!(f, "cluster {c}"),
        }
    }
}

/// Every cluster the config routes to whose upstream must speak HTTP/2 (`to.http2`, implied
/// by `grpcWeb`: gRPC servers speak only HTTP/2). Fails when two routes disagree on one
/// cluster (it is one cluster in the proxy).
pub fn http2_clusters(cfg: &MeshConfig, file: &str) -> Result<Vec<ClusterRef>, IstioError> {
    let mut seen: BTreeMap<ClusterRef, (bool, String)> = BTreeMap::new();
    for (hi, host) in cfg.hosts.iter().enumerate() {
        for (ri, route) in host.routes.iter().enumerate() {
            let Some(to) = &route.to else { continue };
            let Some(cluster) = target_cluster(cfg, to) else {
                continue;
            };
            let http2 = to.wants_http2(route.grpc_web);
            let field = format!("hosts[{hi}].routes[{ri}].to.http2");
            match seen.get(&cluster) {
                Some((h, other)) if *h != http2 => {
                    return Err(IstioError::Conflict {
                        file: file.to_owned(),
                        field,
                        reason: format!("{cluster} is one upstream cluster in the proxy, but `{other}` is {h} and this route's is {http2} (a `grpcWeb` route implies true)"),
                        fix: "give both routes the same `to.http2`".into(),
                    });
                }
                Some(_) => {}
                None => {
                    seen.insert(cluster, (http2, field));
                }
            }
        }
    }
    Ok(seen
        .into_iter()
        .filter(|(_, (h, _))| *h)
        .map(|(c, _)| c)
        .collect())
}

/// CLUSTER MERGE patches making the HTTP/2 targets' clusters speak HTTP/2. istiod replaces
/// the cluster's whole `HttpProtocolOptions` with this one, so a DestinationRule's HTTP
/// connection-pool settings for that port (idle timeout, requests per connection) no longer
/// apply; `check` says so when it finds one.
fn http2_patches(clusters: &[ClusterRef], context: Context) -> Vec<Value> {
    clusters
        .iter()
        .map(|c| {
            let cluster_match = match (c, context.delivery()) {
                // Inbound, the workload's own `inbound|PORT||` cluster: the request may have
                // come in over HTTP/1.1 (a gateway without this patch), and the cluster speaks
                // the client's protocol.
                (ClusterRef::Service { port, .. }, Delivery::Local) => {
                    json!({ "portNumber": port })
                }
                (ClusterRef::Service { fqdn, port }, Delivery::Upstream) => {
                    json!({ "service": fqdn, "portNumber": port })
                }
                (ClusterRef::Raw(name), _) => json!({ "name": name }),
            };
            json!({
                "applyTo": "CLUSTER",
                "match": { "context": context.istio(), "cluster": cluster_match },
                "patch": { "operation": "MERGE", "value": {
                    "typed_extension_protocol_options": envoy::http2_protocol_options(),
                }},
            })
        })
        .collect()
}

/// The patches that carry routing and translation (everything but the Wasm filter itself,
/// which the extensions.istio.io APIs can carry instead).
pub fn route_patches(cfg: &MeshConfig, context: Context, http2: &[ClusterRef]) -> Vec<Value> {
    let mut patches = strip_patches(context);
    let grpc_web = envoy::uses_grpc_web(cfg);
    if grpc_web {
        patches.push(insert_before_router(context, envoy::grpc_web_filter()));
    }
    match context.delivery() {
        // An empty routeConfiguration match selects every route configuration and virtual
        // host of the context, whatever istiod names them: the route only takes requests the
        // filter marked, so every other request meets Istio's routes as before.
        Delivery::Upstream => {
            patches.push(json!({
                "applyTo": "HTTP_ROUTE",
                "match": { "context": context.istio(), "routeConfiguration": {} },
                "patch": { "operation": "INSERT_FIRST", "value": envoy::routing_route() },
            }));
            patches.extend(http2_patches(http2, context));
        }
        // Inbound, Istio's own route delivers to the workload; only the translation marker
        // must not reach it.
        Delivery::Local => {
            if grpc_web {
                patches.push(json!({
                    "applyTo": "HTTP_ROUTE",
                    "match": { "context": context.istio(), "routeConfiguration": {} },
                    "patch": { "operation": "MERGE", "value": {
                        "request_headers_to_remove": [mesh_core::GRPC_WEB_HEADER],
                    }},
                }));
            }
            patches.extend(http2_patches(http2, context));
        }
    }
    patches
}

/// Labels a filter object selects: the workloads' own, plus the label `enable` puts on the pods
/// it set up, so no pod gets a filter whose module it does not have (a pod not yet rolled,
/// another gateway the selector also matches, one in another namespace when the object is in
/// Istio's root namespace).
pub fn filter_selector(opts: &RenderOptions) -> BTreeMap<String, String> {
    let mut labels = opts.selector.clone();
    // With `targetRefs` no pod is labelled (a downloaded module needs no rollout): the
    // route's EnvoyFilter selects the gateway's pods as they are.
    if !opts.target_refs() {
        labels.insert(FILTER_LABEL.to_owned(), opts.name.clone());
    }
    labels
}

/// The EnvoyFilter named `name` with `patches`.
pub fn envoy_filter(
    name: &str,
    opts: &RenderOptions,
    hash: &str,
    patches: Vec<Value>,
    referenced: &[String],
    config_namespace: &str,
) -> Value {
    let mut metadata = meta(name, &opts.namespace, hash, config_namespace);
    if !referenced.is_empty() {
        metadata["annotations"][REFERENCED_SERVICES_ANNOTATION] = json!(referenced.join(","));
    }
    json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": metadata,
        "spec": {
            "workloadSelector": { "labels": filter_selector(opts) },
            "configPatches": patches,
        },
    })
}

/// The services the routing route may send to, as the referenced-services annotation lists
/// them (gateway only: a filtering gateway keeps clusters only for what it routes to).
fn referenced_services(cfg: &MeshConfig, opts: &RenderOptions) -> Vec<String> {
    if opts.context != Context::Gateway {
        return Vec::new();
    }
    let mut v: Vec<String> = targets(cfg).into_iter().map(|(fqdn, _)| fqdn).collect();
    v.dedup();
    v
}

/// The filter objects for `opts.api`: one EnvoyFilter, or the extension object plus an
/// EnvoyFilter for what it cannot express (routes, translation, the header strip).
pub fn filter_objects(
    cfg: &MeshConfig,
    opts: &RenderOptions,
    hash: &str,
) -> Result<Vec<Value>, IstioError> {
    let http2 = http2_clusters(cfg, &opts.source)?;
    let referenced = referenced_services(cfg, opts);
    Ok(match opts.api {
        Api::Envoyfilter => {
            let mut patches = wasm_patches(cfg, opts, hash);
            // The Wasm filter first, then grpc_web: both go just before the router, in order.
            patches.extend(route_patches(cfg, opts.context, &http2));
            vec![envoy_filter(
                &opts.name,
                opts,
                hash,
                patches,
                &referenced,
                &cfg.namespace,
            )]
        }
        Api::Wasmplugin | Api::Trafficextension => vec![
            extension(cfg, opts, hash),
            envoy_filter(
                &route_filter_name(&opts.name),
                opts,
                hash,
                route_patches(cfg, opts.context, &http2),
                &referenced,
                &cfg.namespace,
            ),
        ],
    })
}

/// The extension object's `failStrategy`.
fn fail_strategy(opts: &RenderOptions) -> &'static str {
    let delivery = opts.context.delivery();
    let reload = opts.istio_version >= WASMPLUGIN_FAIL_RELOAD
        && (matches!(opts.module, Module::ConfigMap(_)) || delivery == Delivery::Local);
    if reload {
        return "FAIL_RELOAD";
    }
    match envoy::legacy_fail_policy(delivery) {
        FailPolicy::LegacyOpen => "FAIL_OPEN",
        _ => "FAIL_CLOSE",
    }
}

fn extension(cfg: &MeshConfig, opts: &RenderOptions, hash: &str) -> Value {
    let (url, sha, pull) = match &opts.module {
        Module::ConfigMap(_) => (format!("file://{}", module_path()), None, None),
        Module::Remote { url, sha256, pull } => {
            (url.clone(), Some(sha256.to_ascii_lowercase()), Some(pull))
        }
    };
    let delivery = opts.context.delivery();
    // pluginConfig is a Struct; Istio serializes it back to the same JSON for the filter.
    let plugin_config: Value =
        serde_json::from_str(&cfg.to_filter_json_with_revision(delivery, hash)).unwrap_or_default();
    let mut wasm = json!({
        "url": url,
        "pluginName": envoy::ROOT_ID,
        "pluginConfig": plugin_config,
        "failStrategy": fail_strategy(opts),
        "type": "HTTP",
    });
    if let (Some(sha), Some(w)) = (sha, wasm.as_object_mut()) {
        w.insert("sha256".into(), Value::String(sha));
    }
    if let (Some(pull), Some(w)) = (pull, wasm.as_object_mut()) {
        if let Some(policy) = pull.policy {
            w.insert("imagePullPolicy".into(), json!(policy.istio()));
        }
        if let Some(secret) = &pull.secret {
            w.insert("imagePullSecret".into(), json!(secret));
        }
    }
    let mode = match opts.context {
        Context::SidecarInbound => Some("SERVER"),
        Context::SidecarOutbound => Some("CLIENT"),
        Context::Gateway => None,
    };
    let mut spec = match (opts.target_refs(), opts.gateway_api()) {
        // Istio attaches it to every pod of that Gateway (Istio 1.22+).
        (true, Some(gateway)) => json!({ "targetRefs": [{
            "group": crate::names::GATEWAY_API_GROUP, "kind": "Gateway", "name": gateway,
        }]}),
        _ => json!({ "selector": { "matchLabels": filter_selector(opts) } }),
    };
    if let Some(s) = spec.as_object_mut() {
        if let Some(mode) = mode {
            s.insert("match".into(), json!([{ "mode": mode }]));
        }
        match opts.api {
            Api::Trafficextension => {
                s.insert("wasm".into(), wasm);
            }
            _ => {
                if let Some(w) = wasm.as_object() {
                    s.extend(w.clone());
                }
            }
        }
    }
    let kind = match opts.api {
        Api::Trafficextension => "TrafficExtension",
        _ => "WasmPlugin",
    };
    json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": kind,
        "metadata": meta(&opts.name, &opts.namespace, hash, &cfg.namespace),
        "spec": spec,
    })
}
