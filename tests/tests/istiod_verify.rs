//! `kubectl mesh verify --proxy-dump` stands in for istiod (it has a user's dump, not their
//! cluster): it builds the anchor's virtual host and places a WasmPlugin as istiod would. Here
//! that stand-in is held against istiod's own output for the same objects.

use kubectl_mesh::render::{Api, Context};
use kubectl_mesh::verify::istio::dump::{Proxy, ProxyKind};
use kubectl_mesh::verify::istio::rendered;
use mesh_tests::istio::scenario::{Scenario, Setup};
use serde_json::Value;
use std::path::Path;

/// The HTTP filter names of the gateway's HTTP connection manager, kubectl-mesh's Wasm filter
/// under one name whatever istiod calls its ECDS resource.
fn filter_names(listeners: &[Value]) -> Vec<String> {
    let hcm = &listeners[0]["filter_chains"][0]["filters"][0]["typed_config"];
    hcm["http_filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let n = f["name"].as_str().unwrap_or_default();
            if n.contains("kubectl-mesh") && !n.ends_with("-grpc-web") && !n.ends_with("-strip") {
                "kubectl-mesh (the Wasm filter)".to_owned()
            } else {
                n.to_owned()
            }
        })
        .collect()
}

/// The virtual host serving `host`: its domains and route names.
fn vhost_of(routes: &Value, host: &str) -> (Vec<String>, Vec<String>) {
    let vh = routes["virtual_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["domains"].as_array().unwrap().iter().any(|d| d == host))
        .unwrap_or_else(|| panic!("no virtual host for {host}"));
    let strings = |v: &Value, key: &str| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| {
                x[key]
                    .as_str()
                    .or(x.as_str())
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    };
    let mut domains = strings(&vh["domains"], "");
    domains.sort();
    (domains, strings(&vh["routes"], "name"))
}

#[test]
fn verifys_stand_in_for_istiod_agrees_with_istiod() {
    let setup = Setup::start().unwrap();
    for api in [Api::Envoyfilter, Api::Wasmplugin] {
        let s = Scenario::gateway(api);
        let r = s.render().unwrap();
        let dir = setup.subdir(&format!("verify-{api:?}")).unwrap();
        let real = s.config_dump(Some(&r), &dir).unwrap();
        let base = s.config_dump(None, &dir).unwrap();
        let name = Path::new("istiod-gen");
        let real = Proxy::from_dump(name, &real, ProxyKind::Gateway).unwrap();
        let base = Proxy::from_dump(name, &base, ProxyKind::Gateway).unwrap();
        let (stand_in, _) =
            rendered::apply(&base, &r.objects, Context::Gateway, "/m.wasm").unwrap();
        assert_eq!(
            filter_names(&stand_in.listeners),
            filter_names(&real.listeners),
            "{api:?}: the HTTP filters, in order"
        );
        let route = |p: &Proxy| p.routes.get("http.8080").cloned().unwrap();
        for host in ["api.backend.com", "web.backend.com", "forecast.example"] {
            assert_eq!(
                vhost_of(&route(&stand_in), host),
                vhost_of(&route(&real), host),
                "{api:?}: the virtual host of {host}"
            );
        }
    }
}
