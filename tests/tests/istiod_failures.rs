//! What breaks in a real cluster, on istiod's own code: proxies too old for an extension,
//! a VM that crashes, pods that lack the module (during a rollout, or another gateway the
//! selector also matches), a module download that fails. Each test has its negative control:
//! what the objects did before, shown failing in real Envoy.

use kubectl_mesh::render::{self, Api, Context, Module};
use mesh_tests::client::Request;
use mesh_tests::istio::checks::{entry, http_filters, other_app, page_flow};
use mesh_tests::istio::scenario::{crash_module, Scenario, Setup};
use serde_json::Value;

const STRIP_LUA: &str = "kubectl-mesh-strip";
const SERVER: &str = "outbound|6000||server.digimon.svc.cluster.local";

fn early_header_mutation(dump: &mesh_tests::istio::generated::Dump) -> usize {
    dump.listeners
        .iter()
        .filter(|l| {
            l.to_string()
                .contains("envoy.http.early_header_mutation.header_mutation")
        })
        .count()
}

/// istio-proxy 1.20.0-1.20.4 and 1.21.0 lack early header mutation and reject a listener
/// that uses it: those proxies get the Lua strip instead, every other one the native strip,
/// and in both a client cannot pick the upstream while the filter's VM is down.
#[test]
fn each_proxy_gets_the_header_strip_it_can_load() {
    let setup = Setup::start().unwrap();
    for (version, native) in [
        ("1.20.3", false),
        ("1.21.0", false),
        ("1.21.1", true),
        ("1.31.0", true),
    ] {
        let mut s = Scenario::gateway(Api::Envoyfilter);
        s.proxy_version = Some(version.into());
        let r = s.render().unwrap();
        let dump = setup
            .generate(&s, Some(&r), &format!("strip-{version}"))
            .unwrap();
        assert_eq!(early_header_mutation(&dump) > 0, native, "{version}");
        assert_eq!(
            http_filters(&dump, STRIP_LUA).is_empty(),
            native,
            "{version}"
        );
        // The filter's VM down (removed): the strip alone keeps a spoofed header from
        // choosing the upstream on a host the anchor answers 404.
        let mut down = dump.clone();
        for l in &mut down.listeners {
            remove_http_filter(l, kubectl_mesh::envoy::FILTER_NAME);
        }
        let p = setup
            .run(&down, &s, &format!("strip-{version}-down"))
            .unwrap();
        let got = p
            .send(
                entry(Context::Gateway),
                &Request::get("web.backend.com", "/").header(mesh_core::UPSTREAM_HEADER, SERVER),
            )
            .unwrap();
        assert_eq!(got.status, 404, "{version}: {got:?}");
    }
}

fn remove_http_filter(listener: &mut Value, name: &str) {
    for chain in listener["filter_chains"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        for f in chain["filters"].as_array_mut().into_iter().flatten() {
            if let Some(h) = f["typed_config"]["http_filters"].as_array_mut() {
                h.retain(|h| h["name"] != name);
            }
        }
    }
}

/// The Wasm filter's fail policy per proxy: FAIL_RELOAD where Envoy has it (istio-proxy
/// 1.25+), so a crashed VM comes back on the next request; fail_open before that, where the
/// filter stays skipped until the pod restarts. Proven with a module that traps on demand.
#[test]
fn a_crashed_vm_comes_back_where_the_proxy_can_reload_it() {
    let setup = Setup::start().unwrap();
    for (version, reloads) in [("1.31.0", true), ("1.25.0", true), ("1.24.3", false)] {
        let mut s = Scenario::gateway(Api::Envoyfilter);
        s.proxy_version = Some(version.into());
        s.mounted_module = crash_module().unwrap();
        let r = s.render().unwrap();
        let dump = setup
            .generate(&s, Some(&r), &format!("crash-{version}"))
            .unwrap();
        let filter = http_filters(&dump, kubectl_mesh::envoy::FILTER_NAME)[0]["typed_config"]
            ["config"]
            .clone();
        assert_eq!(
            filter.get("failure_policy").is_some(),
            reloads,
            "{version}: {filter}"
        );
        assert_eq!(
            filter.get("fail_open").is_some(),
            !reloads,
            "{version}: {filter}"
        );
        let p = setup.run(&dump, &s, &format!("crash-{version}")).unwrap();
        let at = entry(Context::Gateway);
        let alive = |p: &mesh_tests::istio::scenario::Proxy| {
            p.send(at, &Request::get("web.backend.com", "/nothing"))
                .unwrap()
                .header("x-crash-filter")
                .is_some()
        };
        assert!(alive(&p), "{version}: the filter runs");
        let crash = p
            .send(
                at,
                &Request::get("web.backend.com", "/").header("x-crash", "1"),
            )
            .unwrap();
        assert_eq!(
            crash.status,
            if reloads { 503 } else { 404 },
            "{version}: {crash:?}"
        );
        // A reload waits out a backoff (1 s at first, since the last load); meanwhile the
        // filter answers 503. Without reload it never comes back.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(6);
        let mut back = false;
        while !back && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(250));
            back = alive(&p);
        }
        assert_eq!(back, reloads, "{version}: the filter after the crash");
    }
}

/// A pod the selector matches that does not have the module (not rolled yet, or another
/// gateway): with the objects scoped to enable's pod label it gets no filter and Istio's
/// routes work; scoped by the selector alone (as before), istiod sends it the WasmPlugin and
/// Envoy answers every request 500, whatever the host.
#[test]
fn a_pod_without_the_module_gets_no_filter() {
    let setup = Setup::start().unwrap();
    let mut s = Scenario::gateway(Api::Wasmplugin);
    s.rolled = false;
    s.extra = other_app("other.example", "weather", 6100);
    let r = s.render().unwrap();
    let other = |p: &mesh_tests::istio::scenario::Proxy| {
        p.send(entry(Context::Gateway), &Request::get("other.example", "/"))
            .unwrap()
            .status
    };
    let dump = setup.generate(&s, Some(&r), "unrolled").unwrap();
    assert!(
        dump.ecds.is_empty(),
        "no filter for a pod without the module"
    );
    let p = setup.run(&dump, &s, "unrolled").unwrap();
    assert_eq!(other(&p), 200);
    // Scoped by the selector alone: the pod gets a filter whose file it does not have.
    let mut unscoped = r.clone();
    for o in &mut unscoped.objects {
        for path in [
            "/spec/selector/matchLabels",
            "/spec/workloadSelector/labels",
        ] {
            if let Some(m) = o.pointer_mut(path).and_then(Value::as_object_mut) {
                m.remove(render::FILTER_LABEL);
            }
        }
    }
    let dump = setup.generate(&s, Some(&unscoped), "unscoped").unwrap();
    assert_eq!(dump.ecds.len(), 1);
    let p = setup.run(&dump, &s, "unscoped").unwrap();
    assert_eq!(other(&p), 500, "Envoy's answer without the filter's config");
    // Rolled, the same objects work.
    let mut rolled = s.clone();
    rolled.rolled = true;
    let p = setup.proxy(&rolled, Some(&r), "rolled").unwrap();
    page_flow(&p, Context::Gateway).unwrap();
    assert_eq!(other(&p), 200);
}

/// `--module-url`: when istio-agent cannot fetch the module it sends an RBAC filter in its
/// place (allow-all for a filter that fails open); the filter's `config_discovery` must accept
/// that type, or Envoy answers every request on the listener 500.
#[test]
fn a_failed_module_download_leaves_istio_routes_working() {
    let setup = Setup::start().unwrap();
    let mut s = Scenario::gateway(Api::Envoyfilter);
    let sha = kubectl_mesh::module::sha256_hex(&mesh_tests::istio::scenario::module_bytes());
    s.module = Module::Remote {
        url: "https://modules.example/mesh_filter.wasm".into(),
        sha256: sha,
        pull: Default::default(),
    };
    s.extra = other_app("weather.backend.com", "weather", 6100);
    let r = s.render().unwrap();
    let weather = |p: &mesh_tests::istio::scenario::Proxy| {
        p.send(
            entry(Context::Gateway),
            &Request::get("weather.backend.com", "/"),
        )
        .unwrap()
        .status
    };
    // The download works: the filter runs.
    let p = setup.proxy(&s, Some(&r), "fetched").unwrap();
    page_flow(&p, Context::Gateway).unwrap();
    // It fails: the RBAC stand-in allows everything, the config's hosts go unrouted (404).
    let mut offline = s.clone();
    offline.download_fails = true;
    let p = setup.proxy(&offline, Some(&r), "offline").unwrap();
    assert_eq!(weather(&p), 200);
    let api = p
        .send(
            entry(Context::Gateway),
            &Request::get("api.backend.com", "/"),
        )
        .unwrap();
    assert_eq!(api.status, 404, "{api:?}");
    // Without RBAC among the accepted types (as before), Envoy refuses the stand-in.
    let mut wasm_only = r.clone();
    for o in &mut wasm_only.objects {
        for p in o["spec"]["configPatches"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            if let Some(t) = p.pointer_mut("/patch/value/config_discovery/type_urls") {
                *t = serde_json::json!([kubectl_mesh::envoy::WASM_TYPE]);
            }
        }
    }
    let p = setup
        .proxy(&offline, Some(&wasm_only), "offline-wasm-only")
        .unwrap();
    assert_eq!(weather(&p), 500, "every request on the listener");
}
