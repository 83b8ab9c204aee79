//! The Istio objects kubectl-mesh renders: the EnvoyFilter and its patches per context, the
//! WasmPlugin/TrafficExtension variants, and at the gateway the Gateway and anchor
//! VirtualService that make istiod build a virtual host for the config's hosts.

use crate::envoy;
use crate::render::{meta, Api, Context, Module, RenderOptions, MODULE_DIR, MODULE_FILE};
use mesh_core::upstream::service_fqdn;
use mesh_core::{Delivery, MeshConfig};
use serde_json::{json, Value};

/// Path the anchor VirtualService routes; nothing requests it, so while the filter is not in
/// the gateway the config's hosts answer 404 instead of reaching a backend without its rules.
pub const ANCHOR_PATH: &str = "/.well-known/kubectl-mesh/anchor";

impl Context {
    /// How the filter delivers what it routes in this context.
    pub fn delivery(self) -> Delivery {
        match self {
            Context::SidecarInbound => Delivery::Local,
            Context::SidecarOutbound | Context::Gateway => Delivery::Upstream,
        }
    }
}

fn module_path() -> String {
    format!("{MODULE_DIR}/{MODULE_FILE}")
}

/// `match` selecting every HTTP connection manager of the context.
fn hcm_match(context: Context) -> Value {
    json!({
        "context": context.istio(),
        "listener": { "filterChain": { "filter": { "name": envoy::HCM_NAME } } },
    })
}

/// `match` selecting the router in every HTTP connection manager of the context.
fn router_match(context: Context) -> Value {
    json!({
        "context": context.istio(),
        "listener": { "filterChain": { "filter": {
            "name": envoy::HCM_NAME,
            "subFilter": { "name": envoy::ROUTER_NAME },
        }}},
    })
}

fn insert_before_router(context: Context, value: Value) -> Value {
    json!({
        "applyTo": "HTTP_FILTER",
        "match": router_match(context),
        "patch": { "operation": "INSERT_BEFORE", "value": value },
    })
}

/// The patch stripping client-sent reserved headers in every HTTP connection manager.
fn strip_patch(context: Context) -> Value {
    let mut typed = json!({ "@type": envoy::HCM_TYPE });
    if let (Some(t), Value::Object(extra)) =
        (typed.as_object_mut(), envoy::strip_reserved_headers())
    {
        t.extend(extra);
    }
    json!({
        "applyTo": "NETWORK_FILTER",
        "match": hcm_match(context),
        "patch": { "operation": "MERGE", "value": { "name": envoy::HCM_NAME, "typed_config": typed } },
    })
}

/// The Wasm filter patches: inline (ConfigMap module), or through ECDS for a remote module, so
/// that istio-agent downloads and verifies it and hands Envoy a local file (the pull policy
/// rides in the VM environment, which the agent reads and strips).
fn wasm_patches(cfg: &MeshConfig, opts: &RenderOptions, hash: &str) -> Vec<Value> {
    let delivery = opts.context.delivery();
    match &opts.module {
        Module::ConfigMap(_) => vec![insert_before_router(
            opts.context,
            envoy::wasm_filter(cfg, delivery, envoy::local_code(&module_path())),
        )],
        Module::Remote { url, sha256, pull } => {
            let mut config = envoy::plugin_config(cfg, delivery, envoy::remote_code(url, sha256));
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
                            "type_urls": [envoy::WASM_TYPE],
                        },
                    }),
                ),
            ]
        }
    }
}

/// The patches that carry routing and translation (everything but the Wasm filter itself,
/// which the extensions.istio.io APIs can carry instead).
pub fn route_patches(cfg: &MeshConfig, context: Context) -> Vec<Value> {
    let mut patches = vec![strip_patch(context)];
    let grpc_web = envoy::uses_grpc_web(cfg);
    if grpc_web {
        patches.push(insert_before_router(context, envoy::grpc_web_filter()));
    }
    match context.delivery() {
        // An empty routeConfiguration match selects every route configuration and virtual
        // host of the context, whatever istiod names them: the route only takes requests the
        // filter marked, so every other request meets Istio's routes as before.
        Delivery::Upstream => patches.push(json!({
            "applyTo": "HTTP_ROUTE",
            "match": { "context": context.istio(), "routeConfiguration": {} },
            "patch": { "operation": "INSERT_FIRST", "value": envoy::routing_route() },
        })),
        // Inbound, Istio's own route delivers to the workload; only the translation marker
        // must not reach it.
        Delivery::Local if grpc_web => patches.push(json!({
            "applyTo": "HTTP_ROUTE",
            "match": { "context": context.istio(), "routeConfiguration": {} },
            "patch": { "operation": "MERGE", "value": {
                "request_headers_to_remove": [mesh_core::GRPC_WEB_HEADER],
            }},
        })),
        Delivery::Local => {}
    }
    patches
}

/// The EnvoyFilter named `name` with `patches`.
pub fn envoy_filter(name: &str, opts: &RenderOptions, hash: &str, patches: Vec<Value>) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": meta(name, opts, hash),
        "spec": {
            "workloadSelector": { "labels": opts.selector },
            "configPatches": patches,
        },
    })
}

/// The filter objects for `opts.api`: one EnvoyFilter, or the extension object plus an
/// EnvoyFilter for what it cannot express (routes, translation, the header strip).
pub fn filter_objects(cfg: &MeshConfig, opts: &RenderOptions, hash: &str) -> Vec<Value> {
    match opts.api {
        Api::Envoyfilter => {
            let mut patches = wasm_patches(cfg, opts, hash);
            // The Wasm filter first, then grpc_web: both go just before the router, in order.
            patches.extend(route_patches(cfg, opts.context));
            vec![envoy_filter(&opts.name, opts, hash, patches)]
        }
        Api::Wasmplugin | Api::Trafficextension => vec![
            extension(cfg, opts, hash),
            envoy_filter(
                &crate::render::route_filter_name(opts),
                opts,
                hash,
                route_patches(cfg, opts.context),
            ),
        ],
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
        serde_json::from_str(&cfg.to_filter_json(delivery)).unwrap_or_default();
    let mut wasm = json!({
        "url": url,
        "pluginName": envoy::ROOT_ID,
        "pluginConfig": plugin_config,
        "failStrategy": if envoy::fail_open(delivery) { "FAIL_OPEN" } else { "FAIL_CLOSE" },
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
    let mut spec = json!({ "selector": { "matchLabels": opts.selector } });
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
        "metadata": meta(&opts.name, opts, hash),
        "spec": spec,
    })
}

/// Every domain of the config, in order (the hosts the gateway must serve).
pub fn domains(cfg: &MeshConfig) -> Vec<String> {
    let mut v: Vec<String> = cfg
        .hosts
        .iter()
        .flat_map(|h| h.domains.iter().map(|d| d.to_ascii_lowercase()))
        .collect();
    v.dedup();
    v
}

/// The Istio Gateway serving the config's hosts on the gateway workloads (`--http-port`, and
/// `--https-port` with `--tls-secret`).
pub fn gateway(cfg: &MeshConfig, opts: &RenderOptions, hash: &str) -> Value {
    let hosts = domains(cfg);
    let g = &opts.gateway;
    let mut servers = vec![json!({
        "port": { "number": g.http_port, "name": format!("http-{}", opts.name), "protocol": "HTTP" },
        "hosts": hosts,
    })];
    if let Some(secret) = &g.tls_secret {
        servers.push(json!({
            "port": { "number": g.https_port, "name": format!("https-{}", opts.name), "protocol": "HTTPS" },
            "tls": { "mode": "SIMPLE", "credentialName": secret },
            "hosts": hosts,
        }));
    }
    json!({
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "Gateway",
        "metadata": meta(&opts.name, opts, hash),
        "spec": { "selector": opts.selector, "servers": servers },
    })
}

/// The Gateway the anchor VirtualService binds to: `--gateway`, else the one kubectl-mesh
/// creates.
pub fn gateway_ref(opts: &RenderOptions) -> String {
    match &opts.gateway.existing {
        Some(g) => g.clone(),
        None => format!("{}/{}", opts.namespace, opts.name),
    }
}

/// A service the anchor route can name: the config's first service target (never reached).
fn anchor_destination(cfg: &MeshConfig) -> Option<(String, u16)> {
    cfg.hosts
        .iter()
        .flat_map(|h| &h.routes)
        .filter_map(|r| r.to.as_ref())
        .find_map(|t| match (&t.service, t.port) {
            (Some(s), Some(p)) => Some((service_fqdn(s, &cfg.namespace, &cfg.cluster_domain), p)),
            _ => None,
        })
}

/// The anchor VirtualService: it binds the config's hosts to the gateway, so istiod builds a
/// virtual host for them (the routing route lands there first) whatever other VirtualServices
/// exist; istiod merges it with any other VirtualService for the same host on that gateway.
/// Its one route matches [`ANCHOR_PATH`] only.
pub fn anchor_virtual_service(cfg: &MeshConfig, opts: &RenderOptions, hash: &str) -> Option<Value> {
    let (host, port) = anchor_destination(cfg)?;
    Some(json!({
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": meta(&opts.name, opts, hash),
        "spec": {
            "hosts": domains(cfg),
            "gateways": [gateway_ref(opts)],
            "http": [{
                "name": format!("{}-anchor", opts.name),
                "match": [{ "uri": { "exact": ANCHOR_PATH } }],
                "route": [{ "destination": { "host": host, "port": { "number": port } } }],
            }],
        },
    }))
}
