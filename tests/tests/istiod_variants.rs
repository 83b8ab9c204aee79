//! The Istio suite's variants on istiod's own code: clusters a gateway filters out, other
//! VirtualServices on the config's hosts or around them, a DestinationRule for the server, a
//! Helm-installed gateway; and the negative controls for what an imitation of Istio hid (an
//! HTTP/1.1 upstream to the HTTP/2-only server, where istiod really places a WasmPlugin).

use kubectl_mesh::render::{Api, Context};
use mesh_tests::client::Request;
use mesh_tests::digimon::{self, API_HOST, WEB_ORIGIN};
use mesh_tests::istio::checks::{entry, page_flow};
use mesh_tests::istio::generated::Dump;
use mesh_tests::istio::scenario::{Scenario, Setup, HELM_GATEWAY};
use serde_json::{json, Value};

fn flow_ok(setup: &Setup, s: &Scenario, rendered: &kubectl_mesh::render::Rendered, name: &str) {
    let p = setup.proxy(s, Some(rendered), name).unwrap();
    if let Err(e) = page_flow(&p, s.context) {
        panic!("{name}: {e:#}\nEnvoy log:\n{}", p.envoy.log());
    }
}

/// Patches of one kind in every rendered EnvoyFilter.
fn drop_patches(objects: &mut [Value], apply_to: &str) {
    for o in objects.iter_mut() {
        if let Some(p) = o["spec"]["configPatches"].as_array_mut() {
            p.retain(|p| p["applyTo"] != apply_to);
        }
    }
}

#[test]
fn without_the_http2_patch_the_grpc_server_resets_the_call() {
    // The digimon Service names its port "6000": istiod gives the gateway's cluster HTTP/1.1,
    // and the tonic server speaks only HTTP/2. An HTTP/1.1 echo upstream would not show it.
    let setup = Setup::start().unwrap();
    let s = Scenario::gateway(Api::Envoyfilter);
    let mut r = s.render().unwrap();
    drop_patches(&mut r.objects, "CLUSTER");
    let p = setup.proxy(&s, Some(&r), "no-h2").unwrap();
    let send = |req: &Request| p.send(entry(Context::Gateway), req);
    let e = digimon::create(&send, "Agumon").unwrap_err().to_string();
    assert!(e.contains("HTTP 502"), "{e}");
    let cluster = setup
        .generate(&s, Some(&r), "no-h2-dump")
        .unwrap()
        .cluster("outbound|6000||server.digimon.svc.cluster.local")
        .cloned()
        .unwrap();
    assert!(
        cluster.get("typed_extension_protocol_options").is_none(),
        "istiod gave the port no HTTP/2: {cluster}"
    );
}

#[test]
fn a_gateway_that_filters_its_clusters_keeps_every_target() {
    let setup = Setup::start().unwrap();
    let mut s = Scenario::gateway(Api::Envoyfilter);
    s.env = vec![("PILOT_FILTER_GATEWAY_CLUSTER_CONFIG".into(), "true".into())];
    let r = s.render().unwrap();
    flow_ok(&setup, &s, &r, "filtered");
    // With one anchor route (one destination, as before), the web cluster is filtered away.
    let mut one = r.clone();
    for o in one
        .objects
        .iter_mut()
        .filter(|o| o["kind"] == "VirtualService")
    {
        o["spec"]["http"].as_array_mut().unwrap().truncate(1);
    }
    for o in one
        .objects
        .iter_mut()
        .filter(|o| o["kind"] == "EnvoyFilter")
    {
        o["metadata"]["annotations"]
            .as_object_mut()
            .unwrap()
            .remove("envoyfilter.istio.io/referenced-services");
    }
    let dump = setup.generate(&s, Some(&one), "one-anchor").unwrap();
    assert!(dump
        .cluster("outbound|8060||web.digimon.svc.cluster.local")
        .is_none());
    let p = setup.run(&dump, &s, "one-anchor").unwrap();
    let page = p
        .send(
            entry(Context::Gateway),
            &Request::get("web.backend.com", "/"),
        )
        .unwrap();
    assert_eq!(page.status, 503, "no cluster for web: {page:?}");
}

/// A Gateway for `*.backend.com` and a VirtualService routing it to the weather service, as a
/// team might already have.
fn wildcard_objects() -> Vec<Value> {
    vec![
        json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "Gateway",
            "metadata": { "name": "wild", "namespace": "digimon" },
            "spec": { "selector": { "istio": "ingressgateway" }, "servers": [{
                "port": { "number": 80, "name": "http-wild", "protocol": "HTTP" },
                "hosts": ["*.backend.com"],
            }]},
        }),
        json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": { "name": "wild", "namespace": "digimon" },
            "spec": { "hosts": ["*.backend.com"], "gateways": ["wild"], "http": [{
                "route": [{ "destination": { "host": "weather", "port": { "number": 6100 } } }],
            }]},
        }),
    ]
}

#[test]
fn a_wildcard_virtual_service_keeps_its_other_hosts() {
    let setup = Setup::start().unwrap();
    let mut s = Scenario::gateway(Api::Envoyfilter);
    s.extra = wildcard_objects();
    let r = s.render().unwrap();
    flow_ok(&setup, &s, &r, "wild");
    let before = setup.proxy(&s, None, "wild-before").unwrap();
    let after = setup.proxy(&s, Some(&r), "wild-after").unwrap();
    for p in [&before, &after] {
        let got = p
            .send(
                entry(Context::Gateway),
                &Request::get("forecast.backend.com", "/today"),
            )
            .unwrap();
        assert_eq!(
            (got.status, got.header("x-upstream")),
            (
                200,
                Some("outbound|6100||weather.digimon.svc.cluster.local")
            ),
            "{got:?}"
        );
    }
}

/// A VirtualService of the app's team, in its own namespace, on the config's API host: every
/// path to the weather service, with a CORS policy for another origin.
fn legacy_virtual_service() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
        "metadata": { "name": "legacy", "namespace": "digimon" },
        "spec": { "hosts": ["api.backend.com"], "gateways": ["istio-system/kubectl-mesh"], "http": [{
            "corsPolicy": { "allowOrigins": [{ "exact": "http://other.example" }], "allowMethods": ["POST"] },
            "route": [{ "destination": { "host": "weather", "port": { "number": 6100 } } }],
        }]},
    })
}

/// The preflight from the origin only the other VirtualService's corsPolicy allows.
fn other_origin_granted(p: &mesh_tests::istio::scenario::Proxy) -> bool {
    let r = p
        .send(
            entry(Context::Gateway),
            &digimon::preflight(API_HOST, "Create", "http://other.example"),
        )
        .unwrap();
    r.header("access-control-allow-origin") == Some("http://other.example")
}

/// Where istiod puts the filter relative to its CORS filter decides whether another
/// VirtualService's corsPolicy still applies to the config's hosts: it does with the
/// EnvoyFilter (inserted before the router, after Istio's CORS filter), it does not with a
/// WasmPlugin (istiod places it before its CORS and fault filters).
#[test]
fn another_virtual_service_on_a_config_host() {
    let setup = Setup::start().unwrap();
    for (api, granted) in [(Api::Envoyfilter, true), (Api::Wasmplugin, false)] {
        let mut s = Scenario::gateway(api);
        s.extra = vec![legacy_virtual_service()];
        let r = s.render().unwrap();
        let name = format!("legacy-{api:?}");
        flow_ok(&setup, &s, &r, &name);
        let p = setup.proxy(&s, Some(&r), &format!("{name}-cors")).unwrap();
        assert_eq!(other_origin_granted(&p), granted, "{api:?}");
        // The config owns the host: a path it does not route is not the weather service's.
        let got = p
            .send(entry(Context::Gateway), &Request::get(API_HOST, "/weather"))
            .unwrap();
        assert_eq!(
            (got.status, got.header("x-upstream")),
            (404, None),
            "{got:?}"
        );
    }
}

/// The negative control for the placement: the old imitation put a WasmPlugin just before the
/// router, where the other VirtualService's corsPolicy would still apply; the check above sees
/// the difference.
#[test]
fn a_wasmplugin_placed_where_the_imitation_put_it_behaves_otherwise() {
    let setup = Setup::start().unwrap();
    let mut s = Scenario::gateway(Api::Wasmplugin);
    s.extra = vec![legacy_virtual_service()];
    let r = s.render().unwrap();
    let mut dump = setup.generate(&s, Some(&r), "imitation").unwrap();
    let moved = move_filter_before_router(&mut dump);
    assert!(moved > 0, "istiod placed the WasmPlugin somewhere");
    let p = setup.run(&dump, &s, "imitation").unwrap();
    assert!(
        other_origin_granted(&p),
        "the imitation's placement hides what istiod does"
    );
}

/// Moves the WasmPlugin's filter (its ECDS name names the WasmPlugin) to just before the
/// router in every HTTP connection manager; how many it moved.
fn move_filter_before_router(dump: &mut Dump) -> usize {
    let mut moved = 0;
    for l in &mut dump.listeners {
        for chain in l["filter_chains"].as_array_mut().into_iter().flatten() {
            for f in chain["filters"].as_array_mut().into_iter().flatten() {
                let Some(filters) = f["typed_config"]["http_filters"].as_array_mut() else {
                    continue;
                };
                let Some(i) = filters.iter().position(|h| {
                    h["name"]
                        .as_str()
                        .is_some_and(|n| n.contains("kubectl-mesh~"))
                        || h["name"]
                            .as_str()
                            .is_some_and(|n| n.contains("/istio-system.kubectl-mesh"))
                }) else {
                    continue;
                };
                let plugin = filters.remove(i);
                let router = filters.len() - 1;
                filters.insert(router, plugin);
                moved += 1;
            }
        }
    }
    moved
}

#[test]
fn the_servers_own_destination_rule_stays_in_force() {
    let setup = Setup::start().unwrap();
    let mut s = Scenario::gateway(Api::Envoyfilter);
    s.extra = vec![json!({
        "apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
        "metadata": { "name": "server", "namespace": "digimon" },
        "spec": { "host": "server", "trafficPolicy": {
            "loadBalancer": { "simple": "ROUND_ROBIN" },
            "outlierDetection": { "consecutive5xxErrors": 7, "interval": "10s" },
            "connectionPool": { "tcp": { "maxConnections": 50 } },
        }},
    })];
    let r = s.render().unwrap();
    flow_ok(&setup, &s, &r, "dr");
    let c = setup
        .generate(&s, Some(&r), "dr-dump")
        .unwrap()
        .cluster("outbound|6000||server.digimon.svc.cluster.local")
        .cloned()
        .unwrap();
    assert_eq!(c["outlier_detection"]["consecutive_5xx"], 7, "{c}");
    assert_eq!(
        c["circuit_breakers"]["thresholds"][0]["max_connections"], 50,
        "{c}"
    );
    assert!(c["typed_extension_protocol_options"].is_object(), "{c}");
}

#[test]
fn a_helm_installed_gateway() {
    let setup = Setup::start().unwrap();
    for api in [Api::Envoyfilter, Api::Wasmplugin] {
        let mut s = Scenario::gateway(api);
        s.gateway = HELM_GATEWAY;
        let r = s.render().unwrap();
        flow_ok(&setup, &s, &r, &format!("helm-{api:?}"));
    }
}

#[test]
fn the_page_origin_is_the_only_one_granted() {
    let setup = Setup::start().unwrap();
    let s = Scenario::gateway(Api::Envoyfilter);
    let r = s.render().unwrap();
    let p = setup.proxy(&s, Some(&r), "origins").unwrap();
    let send = |req: &Request| p.send(entry(Context::Gateway), req);
    let foreign = send(&digimon::grpc_web_call(
        API_HOST,
        "Create",
        &mesh_tests::grpc_web::Message::new().string(1, "Impmon"),
        "http://evil.example",
    ))
    .unwrap();
    assert_eq!(
        foreign.header("access-control-allow-origin"),
        None,
        "{foreign:?}"
    );
    let ok = send(&digimon::preflight(API_HOST, "Create", WEB_ORIGIN)).unwrap();
    assert_eq!(ok.header("access-control-allow-origin"), Some(WEB_ORIGIN));
}

/// A Kubernetes Gateway API gateway (Gateway `public` in digimon, class istio), shared with
/// another team's HTTPRoute: kubectl-mesh anchors the hosts with an HTTPRoute (istiod binds no
/// VirtualService to such a Gateway), the filter reaches the gateway's pods by their
/// gateway-name label, and Istio's own routes answer as before. With a downloaded module the
/// WasmPlugin names the Gateway by `targetRefs` and no pod is touched.
#[test]
fn a_gateway_api_gateway() {
    use kubectl_mesh::render::Module;
    use mesh_tests::istio::checks::{istio_route_diffs, other_route};
    use mesh_tests::istio::scenario::GATEWAY_API;
    let setup = Setup::start().unwrap();
    let sha = kubectl_mesh::module::sha256_hex(&mesh_tests::istio::scenario::module_bytes());
    let remote = Module::Remote {
        url: "https://modules.example/mesh_filter.wasm".into(),
        sha256: sha,
        pull: Default::default(),
    };
    for (api, module) in [
        (Api::Envoyfilter, None),
        (Api::Wasmplugin, None),
        (Api::Wasmplugin, Some(remote)),
    ] {
        let mut s = Scenario::gateway(api);
        s.gateway = GATEWAY_API;
        s.extra = other_route("forecast.example", "weather", 6100);
        let target_refs = module.is_some();
        if let Some(m) = module {
            s.module = m;
        }
        let r = s.render().unwrap();
        let kinds: Vec<&str> = r
            .objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert!(
            kinds.contains(&"HTTPRoute")
                && !kinds.contains(&"VirtualService")
                && !kinds.contains(&"Gateway"),
            "{kinds:?}"
        );
        let plugin = r.objects.iter().find(|o| o["kind"] == "WasmPlugin");
        assert_eq!(
            plugin.is_some_and(|p| p["spec"]["targetRefs"][0]["name"] == "public"),
            target_refs,
            "{plugin:?}"
        );
        assert_eq!(r.pod_labels.is_empty(), target_refs);
        let name = format!("gateway-api-{api:?}-{target_refs}");
        flow_ok(&setup, &s, &r, &name);
        let before = setup.proxy(&s, None, &format!("{name}-before")).unwrap();
        let after = setup.proxy(&s, Some(&r), &format!("{name}-after")).unwrap();
        let cfg = kubectl_mesh::render::load_config(&s.config).unwrap();
        let hosts = kubectl_mesh::istio::domains(&cfg);
        let (n, diffs) = istio_route_diffs(&before, &after, &hosts).unwrap();
        eprintln!(
            "{name}: {n} requests on Istio's own routes, {} differ",
            diffs.len()
        );
        assert!(n >= 10, "too few requests: {n}");
        assert!(
            diffs.is_empty(),
            "Istio's own routes changed:\n{}",
            diffs.join("\n")
        );
        // The other team's host still reaches its service.
        let got = after
            .send(
                entry(Context::Gateway),
                &Request::get("forecast.example", "/api/today"),
            )
            .unwrap();
        assert_eq!(
            got.header("x-upstream"),
            Some("outbound|6100||weather.digimon.svc.cluster.local"),
            "{got:?}"
        );
    }
}

/// The negative control: without the anchor HTTPRoute istiod builds no virtual host for the
/// config's hosts on a Gateway API gateway that routes another team's host (alone, with no
/// route at all, istiod's catch-all virtual host would take them), and the page fails.
#[test]
fn without_the_anchor_route_a_gateway_api_gateway_does_not_serve_the_hosts() {
    use mesh_tests::istio::checks::other_route;
    use mesh_tests::istio::scenario::GATEWAY_API;
    let setup = Setup::start().unwrap();
    let mut s = Scenario::gateway(Api::Envoyfilter);
    s.gateway = GATEWAY_API;
    s.extra = other_route("forecast.example", "weather", 6100);
    let mut r = s.render().unwrap();
    r.objects.retain(|o| o["kind"] != "HTTPRoute");
    let p = setup.proxy(&s, Some(&r), "no-anchor").unwrap();
    let e = page_flow(&p, s.context).unwrap_err().to_string();
    // The filter answers the preflight itself; the call it routes finds no virtual host.
    assert!(
        e.starts_with("Create: HTTP 404"),
        "Envoy's 404, no route: {e}"
    );
}
