//! The Istio suite's second input: real config dumps of older Istio releases (1.20, OSSM 2.6;
//! ../shared/fixtures/istio), with what `kubectl mesh render` emits as an EnvoyFilter applied
//! with Istio's EnvoyFilter semantics, run in real Envoy. Per dump and context: the config's
//! hosts are routed with CORS and gRPC-Web translation where the dump's routes take them,
//! preflights are answered, a client cannot pick the upstream, and every request Istio's own
//! routes served before the patches gets the same upstream and status after them. The current
//! Istio's own generation is in tests/istiod.rs; see tests/istio/README.md.

use kubectl_mesh::envoy as builder;
use kubectl_mesh::render::{self, Api, Context, GatewayOptions, Module, RenderOptions};
use mesh_tests::client::Request;
use mesh_tests::istio::dump::{Proxy, ProxyKind};
use mesh_tests::istio::runnable::{Runnable, Upstreams};
use mesh_tests::istio::traffic::{istio_probes, listener, Outcome, Running};
use mesh_tests::istio::{envoyfilter, fixtures};
use mesh_tests::workspace_root;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

const SERVER: &str = "outbound|6000||server.digimon.svc.cluster.local";
const ORIGIN: &str = "http://web.backend.com";
/// A gRPC-Web text call: one frame, base64 (20 characters, 13 bytes decoded).
const GRPC_WEB_BODY: &str = "AAAAAAYKBEFndW1vbg==";

fn example() -> PathBuf {
    workspace_root().join("examples/digimon/mesh.yaml")
}

/// The server's own part of the example (what its sidecar-inbound filter can do).
fn server_only() -> PathBuf {
    workspace_root().join("kubectl-mesh/tests/fixtures/digimon-server.yaml")
}

fn gateway_1_20() -> Proxy {
    Proxy::load(
        &fixtures().join("gateway-1.20-ossm2.6-config_dump.json"),
        ProxyKind::Gateway,
    )
    .unwrap()
}

fn sidecar_1_20() -> Proxy {
    Proxy::load(
        &fixtures().join("sidecar-1.20-ossm2.6-config_dump.json"),
        ProxyKind::Sidecar,
    )
    .unwrap()
}

/// Istio's own gateway route test data (one virtual host per host, no `*`), served through
/// the 1.20 gateway's listener.
fn gateway_routes(file: &str) -> Proxy {
    Proxy::routes_only(&fixtures().join(file), &gateway_1_20()).unwrap()
}

/// Renders `config` for `context` and `api` as `kubectl mesh render` does.
fn render(
    config: &std::path::Path,
    context: Context,
    api: Api,
) -> (mesh_core::MeshConfig, Vec<Value>) {
    let cfg = render::load_config(config).unwrap();
    let opts = RenderOptions {
        name: "kubectl-mesh".into(),
        namespace: "istio-system".into(),
        selector: BTreeMap::from([("app".into(), "x".into())]),
        context,
        api,
        module: Module::ConfigMap(b"\0asm\x01\0\0\0".to_vec()),
        gateway_deployment: "istio-ingressgateway".into(),
        gateway: GatewayOptions::default(),
        source: config.display().to_string(),
        istio_version: kubectl_mesh::render::NEWEST_ISTIO,
    };
    (cfg.clone(), render::render(&cfg, &opts).unwrap().objects)
}

/// Points every module path in `v` at the module this build made.
fn local_module(v: &mut Value) {
    let path = format!("{}/{}", render::MODULE_DIR, render::MODULE_FILE);
    match v {
        Value::String(s) if *s == path => {
            *s = mesh_tests::envoy::wasm_module().display().to_string();
        }
        Value::Array(a) => a.iter_mut().for_each(local_module),
        Value::Object(m) => m.values_mut().for_each(local_module),
        _ => {}
    }
}

fn kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The proxy with the EnvoyFilter patches kubectl-mesh renders. Asserts that every patch
/// landed somewhere. (What istiod itself builds from the other objects, the anchor
/// VirtualService and the extension APIs, is tested on istiod's own code in tests/istiod.rs.)
fn patched(base: &Proxy, objects: &[Value]) -> Proxy {
    let mut p = base.clone();
    let mut patches: Vec<Value> = kind(objects, "EnvoyFilter")
        .into_iter()
        .flat_map(|f| f["spec"]["configPatches"].as_array().unwrap().clone())
        .collect();
    patches.iter_mut().for_each(local_module);
    let applied = envoyfilter::apply(&mut p, &patches).unwrap();
    for (i, (patch, n)) in patches.iter().zip(&applied.0).enumerate() {
        // A patch for other proxy versions (the 1.20 dumps are 1.20.8) does nothing here by
        // design; a cluster patch finds the digimon server only where the dump has it.
        if applied.gated_out(i) || patch["applyTo"] == "CLUSTER" {
            continue;
        }
        assert!(
            *n > 0,
            "{}: this patch matched nothing, so it would do nothing in Istio:\n{patch:#}",
            base.name
        );
    }
    assert!(
        (0..patches.len()).any(|i| applied.gated_out(i)),
        "{}: the dump's ISTIO_VERSION gates the Lua strip out",
        base.name
    );
    p
}

/// Istio's own routes, before and after: same upstream, same status, also for requests that
/// carry the filter's reserved headers (which the patches strip before anything reads them).
fn istio_routes_are_untouched(base: &Proxy, after: &Proxy, cfg: &mesh_core::MeshConfig) {
    let (n, diffs) = route_diffs(base, after, cfg);
    eprintln!(
        "{}: {n} requests on Istio's own routes, {} differ",
        base.name,
        diffs.len()
    );
    assert!(
        diffs.is_empty(),
        "{}: Istio's own routes changed:\n{}",
        base.name,
        diffs.join("\n")
    );
}

/// The requests on Istio's own routes whose outcome the patches changed (and how many were
/// sent).
fn route_diffs(base: &Proxy, after: &Proxy, cfg: &mesh_core::MeshConfig) -> (usize, Vec<String>) {
    let mut ups = Upstreams::default();
    let before_rt = Runnable::new(base, &mut ups, &[]).unwrap();
    let clusters: Vec<String> = mesh_core::compile(cfg)
        .unwrap()
        .clusters()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let after_rt = Runnable::new(after, &mut ups, &clusters).unwrap();
    let labels = |rt: &Runnable| {
        rt.listeners
            .iter()
            .map(|l| l.label.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(labels(&before_rt), labels(&after_rt));
    let probes = istio_probes(&before_rt);
    assert!(probes.len() >= 3, "{}: too few probes", base.name);
    let spoofed: Vec<_> = probes
        .iter()
        .cloned()
        .map(|mut p| {
            p.req = p
                .req
                .header(mesh_core::UPSTREAM_HEADER, SERVER)
                .header(mesh_core::GRPC_WEB_HEADER, "1");
            p.what += " (with x-mesh-upstream and x-mesh-grpc-web)";
            p
        })
        .collect();
    let all: Vec<_> = probes.into_iter().chain(spoofed).collect();
    let before = Running::start(&before_rt).unwrap().outcomes(&all).unwrap();
    let after = Running::start(&after_rt).unwrap().outcomes(&all).unwrap();
    let diffs: Vec<String> = all
        .iter()
        .zip(before.iter().zip(&after))
        .filter(|(_, (b, a))| b != a)
        .map(|(p, (b, a))| format!("  {}: before {b}, after {a}", p.what))
        .collect();
    (all.len(), diffs)
}

/// The config's hosts through the patched proxy's listener `at` (gateway, sidecar-outbound).
/// What the checks send, read from the config: its first `grpcWeb` route to a service (host,
/// path, origin its CORS allows, cluster) and its first other route to a service elsewhere.
struct Probes {
    grpc_host: String,
    grpc_path: String,
    origin: String,
    grpc_cluster: String,
    plain: Option<(String, String, String)>,
    unrouted: Option<String>,
}

fn probes_of(cfg: &mesh_core::MeshConfig) -> Probes {
    let cluster = |to: &mesh_core::config::Target| {
        let fqdn = mesh_core::upstream::service_fqdn(
            to.service.as_deref().unwrap_or_default(),
            &cfg.namespace,
            &cfg.cluster_domain,
        );
        format!("outbound|{}||{fqdn}", to.port.unwrap_or_default())
    };
    let path = |r: &mesh_core::config::RouteConfig, leaf: &str| {
        let prefix = r
            .matches
            .prefix
            .as_deref()
            .or(r.matches.path.as_deref())
            .unwrap_or("/");
        format!("{prefix}{leaf}")
    };
    let (gh, gr) = cfg
        .hosts
        .iter()
        .flat_map(|h| h.routes.iter().map(move |r| (h, r)))
        .find(|(_, r)| r.grpc_web && r.to.as_ref().is_some_and(|t| t.service.is_some()))
        .expect("the config has a grpcWeb route to a service");
    let origin = gh
        .cors
        .as_ref()
        .and_then(|c| c.allow_origins.iter().find_map(|o| o.exact.clone()))
        .expect("its host allows an exact origin");
    let plain = cfg
        .hosts
        .iter()
        .filter(|h| h.domains != gh.domains)
        .flat_map(|h| h.routes.iter().map(move |r| (h, r)))
        .find(|(_, r)| !r.grpc_web && r.to.as_ref().is_some_and(|t| t.service.is_some()))
        .map(|(h, r)| {
            (
                h.domains[0].clone(),
                path(r, "index.html"),
                cluster(r.to.as_ref().unwrap()),
            )
        });
    // A path none of the gRPC host's routes takes (none when one takes everything).
    let catch_all = gh.routes.iter().any(|r| {
        r.matches.prefix.as_deref().is_none_or(|p| p == "/")
            && r.matches.path.is_none()
            && r.matches.regex.is_none()
    });
    Probes {
        grpc_host: gh.domains[0].clone(),
        grpc_path: path(gr, "Create"),
        origin,
        grpc_cluster: cluster(gr.to.as_ref().unwrap()),
        plain,
        unrouted: (!catch_all).then(|| "/kubectl-mesh-unrouted-probe".to_owned()),
    }
}

/// The config's hosts through the patched proxy's listener `at` (gateway, sidecar-outbound):
/// what is sent comes from `cfg`.
fn config_hosts_are_routed(after: &Proxy, cfg: &mesh_core::MeshConfig, at: &str) {
    let p = probes_of(cfg);
    let mut ups = Upstreams::default();
    let mut clusters = vec![p.grpc_cluster.clone()];
    clusters.extend(p.plain.iter().map(|(_, _, c)| c.clone()));
    let rt = Runnable::new(after, &mut ups, &clusters).unwrap();
    let li = listener(&rt, at).unwrap_or_else(|| panic!("{}: no listener {at}", after.name));
    let run = Running::start(&rt).unwrap();

    let preflight = run
        .send(
            li,
            &Request::new("OPTIONS", &p.grpc_host, &p.grpc_path)
                .header("origin", &p.origin)
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "content-type,x-grpc-web"),
        )
        .unwrap();
    assert_eq!(preflight.status, 200, "{}: {preflight:?}", after.name);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some(p.origin.as_str())
    );
    assert!(
        preflight.header("x-upstream").is_none(),
        "answered by the filter"
    );

    let call = run
        .send(
            li,
            &Request::new("POST", &p.grpc_host, &p.grpc_path)
                .header("origin", &p.origin)
                .header("content-type", "application/grpc-web-text")
                .header("x-grpc-web", "1")
                .body(GRPC_WEB_BODY),
        )
        .unwrap();
    assert_eq!(
        call.header("access-control-allow-origin"),
        Some(p.origin.as_str()),
        "{call:?}"
    );
    let got = ups.0[&p.grpc_cluster].log.lock().unwrap().last().cloned();
    let got =
        got.unwrap_or_else(|| panic!("{}: {} got nothing: {call:?}", after.name, p.grpc_cluster));
    assert_eq!(got.path, p.grpc_path);
    assert_eq!(
        got.header("content-type"),
        Some("application/grpc"),
        "translated"
    );
    assert_eq!(got.body_len, 13);
    assert_eq!(got.header(mesh_core::UPSTREAM_HEADER), None);
    assert_eq!(got.header(mesh_core::GRPC_WEB_HEADER), None);

    // The other host, also with a client trying to pick the gRPC server itself.
    if let Some((host, path, cluster)) = &p.plain {
        for spoof in [None, Some(&p.grpc_cluster)] {
            let mut req = Request::get(host, path);
            if let Some(s) = spoof {
                req = req.header(mesh_core::UPSTREAM_HEADER, s);
            }
            let r = run.send(li, &req).unwrap();
            let got = Outcome::from(&r);
            assert_eq!(
                (got.status, got.upstream.as_deref()),
                (200, Some(cluster.as_str())),
                "{}: {r:?}",
                after.name
            );
        }
    }
    // A path the config does not route on its own host: the filter's 404, Envoy's own empty
    // one (no Istio route would have sent it anywhere else).
    if let Some(path) = &p.unrouted {
        let r = run.send(li, &Request::get(&p.grpc_host, path)).unwrap();
        assert_eq!((r.status, r.header("x-upstream")), (404, None), "{r:?}");
        assert_eq!((r.header("content-type"), r.body.len()), (None, 0), "{r:?}");
    }
}

fn upstream_case(base: Proxy, context: Context, api: Api, at: &str) {
    let (cfg, objects) = render(&example(), context, api);
    let after = patched(&base, &objects);
    istio_routes_are_untouched(&base, &after, &cfg);
    config_hosts_are_routed(&after, &cfg, at);
}

#[test]
fn gateway_1_20_envoyfilter() {
    upstream_case(
        gateway_1_20(),
        Context::Gateway,
        Api::Envoyfilter,
        "0.0.0.0_8080",
    );
}

/// Istio's own gateway route data with one virtual host per host: its routes keep their
/// upstreams (the config's hosts need the anchor VirtualService, which istiod turns into their
/// virtual host: tests/istiod.rs).
fn per_host_vhosts(file: &str) {
    let base = gateway_routes(file);
    let (cfg, objects) = render(&example(), Context::Gateway, Api::Envoyfilter);
    let after = patched(&base, &objects);
    istio_routes_are_untouched(&base, &after, &cfg);
}

#[test]
fn gateway_with_a_virtual_host_per_host_istio_gateway() {
    per_host_vhosts("gateway-1.21dev-routes-istio-gateway.json");
}

#[test]
fn gateway_with_a_virtual_host_per_host_gateway_api() {
    per_host_vhosts("gateway-1.21dev-routes-k8s-gateway-api.json");
}

#[test]
fn sidecar_1_20_outbound() {
    upstream_case(
        sidecar_1_20(),
        Context::SidecarOutbound,
        Api::Envoyfilter,
        "0.0.0.0_80/",
    );
}

fn inbound_case(api: Api) {
    let base = sidecar_1_20();
    let (cfg, objects) = render(&server_only(), Context::SidecarInbound, api);
    let after = patched(&base, &objects);
    istio_routes_are_untouched(&base, &after, &cfg);

    // The workload's own inbound HTTP chain: the filter answers preflights and adds CORS, and
    // the request is delivered to the workload itself (Istio's inbound cluster), not routed
    // out again.
    let mut ups = Upstreams::default();
    let rt = Runnable::new(&after, &mut ups, &[]).unwrap();
    let li = listener(&rt, "virtualInbound/0.0.0.0_8080").expect("inbound chain for port 8080");
    let run = Running::start(&rt).unwrap();
    let r = run
        .send(
            li,
            &Request::new("OPTIONS", "api.backend.com", "/digimon.Digimon/Create")
                .header("origin", ORIGIN)
                .header("access-control-request-method", "POST"),
        )
        .unwrap();
    assert_eq!((r.status, r.header("x-upstream")), (200, None), "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));
    let r = run
        .send(
            li,
            &Request::new("POST", "api.backend.com", "/digimon.Digimon/Create")
                .header("origin", ORIGIN)
                .header("content-type", "application/grpc-web-text")
                .body(GRPC_WEB_BODY),
        )
        .unwrap();
    assert_eq!(r.header("x-upstream"), Some("inbound|8080||"), "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN));
    let got = ups.0["inbound|8080||"]
        .log
        .lock()
        .unwrap()
        .last()
        .cloned()
        .unwrap();
    assert_eq!(
        got.header("content-type"),
        Some("application/grpc"),
        "translated"
    );
    assert_eq!(got.header(mesh_core::UPSTREAM_HEADER), None);
    assert_eq!(got.header(mesh_core::GRPC_WEB_HEADER), None);
    // In-mesh calls to the workload by its service name are not the config's: untouched.
    let r = run
        .send(
            li,
            &Request::get(
                "hello-openshift.vanilla-playground.svc.cluster.local:8080",
                "/",
            )
            .header("origin", ORIGIN),
        )
        .unwrap();
    assert_eq!(r.header("x-upstream"), Some("inbound|8080||"), "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[test]
fn sidecar_1_20_inbound() {
    inbound_case(Api::Envoyfilter);
}

#[test]
fn an_operation_the_harness_does_not_know_fails_the_test() {
    let mut p = gateway_1_20();
    let patch = serde_json::json!({
        "applyTo": "VIRTUAL_HOST",
        "match": { "context": "GATEWAY" },
        "patch": { "operation": "ADD", "value": { "name": "x", "domains": ["x"] } },
    });
    let err = envoyfilter::apply(&mut p, &[patch])
        .unwrap_err()
        .to_string();
    assert!(err.contains("VIRTUAL_HOST ADD"), "{err}");
}

// ---- the checks can fail: what each part of the rendered objects is for -------------------

#[test]
fn a_filter_that_owns_every_host_is_caught_changing_istio_routes() {
    let text =
        std::fs::read_to_string(example()).unwrap() + "notFound: { status: 404, body: owned }\n";
    let file = std::env::temp_dir().join(format!("istio-owns-all-{}.yaml", std::process::id()));
    std::fs::write(&file, text).unwrap();
    let base = gateway_1_20();
    let (cfg, objects) = render(&file, Context::Gateway, Api::Envoyfilter);
    let after = patched(&base, &objects);
    let (_, diffs) = route_diffs(&base, &after, &cfg);
    assert!(
        !diffs.is_empty(),
        "an explicit notFound answers Istio's hosts too"
    );
}

/// The gateway patches without the Wasm filter: what the proxy does while the filter's VM is
/// down (fail open at a shared gateway), optionally without the native header strip too.
fn without_the_filter(strip: bool) -> Vec<String> {
    let base = gateway_1_20();
    let (cfg, mut objects) = render(&example(), Context::Gateway, Api::Envoyfilter);
    for o in objects.iter_mut().filter(|o| o["kind"] == "EnvoyFilter") {
        let patches = o["spec"]["configPatches"].as_array_mut().unwrap();
        patches.retain(|p| p["patch"]["value"]["name"] != builder::FILTER_NAME);
        if !strip {
            patches.retain(|p| p["applyTo"] != "NETWORK_FILTER");
        }
    }
    let after = patched(&base, &objects);
    route_diffs(&base, &after, &cfg).1
}

#[test]
fn with_the_filter_down_the_native_header_strip_still_keeps_clients_from_picking_the_upstream() {
    let diffs = without_the_filter(true);
    assert!(diffs.is_empty(), "{diffs:#?}");
    // The check sees it when the strip is missing too: spoofed requests reach the server.
    let diffs = without_the_filter(false);
    assert!(
        diffs
            .iter()
            .any(|d| d.contains("with x-mesh-upstream") && d.contains(SERVER)),
        "{diffs:#?}"
    );
}
