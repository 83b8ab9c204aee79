//! The Istio suite on istiod's own code: for each context and API, the digimon app's manifests
//! as they are (its server's port named "6000" included), an ingress gateway installed as
//! istioctl does, and what `kubectl mesh render` makes, through istiod's config generation
//! (`make istiod-gen`) into real Envoy, in front of the app's real backends: the HTTP/2-only
//! gRPC server and the web service. See tests/istio/README.md.

use kubectl_mesh::render::Api;
use mesh_tests::istio::scenario::{page_flow, Scenario, Setup};

fn run(s: &Scenario) {
    let setup = Setup::start().unwrap();
    let rendered = s.render().unwrap();
    let p = setup.proxy(s, Some(&rendered), "after").unwrap();
    if let Err(e) = page_flow(&p, s.context) {
        panic!(
            "{:?} {:?}: {e:#}\nEnvoy log:\n{}",
            s.context,
            s.api,
            p.envoy.log()
        );
    }
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
