//! The Istio suite on istiod's own code: for each context and API, the digimon app's manifests
//! as they are (its server's port named "6000" included), an ingress gateway installed as
//! istioctl does, and what `kubectl mesh render` makes, through istiod's config generation
//! (`make istiod-gen`) into real Envoy, in front of the app's real backends: the HTTP/2-only
//! gRPC server and the web service. See tests/istio/README.md.

use kubectl_mesh::render::{Api, Context};
use mesh_tests::istio::checks::{istio_route_diffs, page_flow};
use mesh_tests::istio::scenario::{Scenario, Setup};

/// The config's hosts work (the page's flow), and every request Istio's own routes served
/// before kubectl-mesh gets the same answer after, also with the reserved headers spoofed.
fn run(s: &Scenario) {
    let setup = Setup::start().unwrap();
    let rendered = s.render().unwrap();
    let after = setup.proxy(s, Some(&rendered), "after").unwrap();
    if let Err(e) = page_flow(&after, s.context) {
        panic!(
            "{:?} {:?}: {e:#}\nEnvoy log:\n{}",
            s.context,
            s.api,
            after.envoy.log()
        );
    }
    let before = setup.proxy(s, None, "before").unwrap();
    let cfg = kubectl_mesh::render::load_config(&s.config).unwrap();
    let hosts = kubectl_mesh::istio::domains(&cfg);
    let (n, mut diffs) = istio_route_diffs(&before, &after, &hosts).unwrap();
    // The one intended change: the server's port now speaks HTTP/2 to the server, which
    // speaks nothing else, so an HTTP/1.1 request to it that got 502 (reset) from Istio alone
    // reaches it now, from the client's sidecar and at the server's. Any other difference fails.
    if s.context != Context::Gateway {
        diffs.retain(|d| {
            let to_server = d.contains("server.digimon.svc.cluster.local")
                || d.contains("virtualInbound/0.0.0.0_6000");
            !(to_server
                && d.contains("before 502 answered by the proxy")
                && d.contains(", after 200"))
        });
    }
    eprintln!(
        "{:?} {:?}: {n} requests on Istio's own routes, {} differ",
        s.context,
        s.api,
        diffs.len()
    );
    assert!(n >= 10, "too few requests: {n}");
    assert!(
        diffs.is_empty(),
        "Istio's own routes changed:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn gateway_envoyfilter() {
    run(&Scenario::gateway(Api::Envoyfilter));
}

#[test]
fn gateway_wasmplugin() {
    run(&Scenario::gateway(Api::Wasmplugin));
}

#[test]
fn gateway_trafficextension() {
    run(&Scenario::gateway(Api::Trafficextension));
}

#[test]
fn sidecar_outbound_envoyfilter() {
    run(&Scenario::sidecar_outbound(Api::Envoyfilter));
}

#[test]
fn sidecar_outbound_wasmplugin() {
    run(&Scenario::sidecar_outbound(Api::Wasmplugin));
}

#[test]
fn sidecar_inbound_envoyfilter() {
    run(&Scenario::sidecar_inbound(Api::Envoyfilter));
}

#[test]
fn sidecar_inbound_wasmplugin() {
    run(&Scenario::sidecar_inbound(Api::Wasmplugin));
}
