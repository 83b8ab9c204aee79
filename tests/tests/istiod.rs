//! The Istio suite on istiod's own code: for each context and API, the digimon app's manifests
//! as they are (its server's port named "6000" included), an ingress gateway installed as
//! istioctl does, and what `kubectl mesh render` makes, through istiod's config generation
//! (`make istiod-gen`) into real Envoy, in front of the app's real backends: the HTTP/2-only
//! gRPC server and the web service. See tests/istio/README.md.

use kubectl_mesh::render::{Api, Context};
use mesh_tests::client::Request;
use mesh_tests::digimon::{self, API_HOST, WEB_ORIGIN};
use mesh_tests::istio::scenario::{Proxy, Scenario, Setup};

/// The listener a context's checks go through: the gateway's HTTP listener, the outbound
/// listener api.backend.com:80 reaches (the gateway Service's port), the server's inbound one.
fn entry(context: Context) -> &'static str {
    match context {
        Context::Gateway => "0.0.0.0_8080/",
        Context::SidecarOutbound => "0.0.0.0_80/",
        Context::SidecarInbound => "virtualInbound/0.0.0.0_6000",
    }
}

/// The page's flow against the config's hosts: the preflight is answered with the grant, the
/// gRPC-Web calls reach the real HTTP/2 server (Create, then the streamed QueryStream), the
/// page comes from the web service, and a client cannot send the API host elsewhere.
fn page_flow(p: &Proxy, context: Context) -> anyhow::Result<()> {
    let at = entry(context);
    let send = |r: &Request| p.send(at, r);
    let pre = send(&digimon::preflight(API_HOST, "Create", WEB_ORIGIN))?;
    anyhow::ensure!(
        pre.status == 200 && pre.header("access-control-allow-origin") == Some(WEB_ORIGIN),
        "preflight: {} {:?}",
        pre.status,
        pre.headers
    );
    let id = digimon::create(&send, "Agumon")?;
    let updates = digimon::query_stream(&send, &id)?;
    anyhow::ensure!(updates.len() >= 3, "QueryStream: {updates:?}");
    if context != Context::SidecarInbound {
        let page = send(&Request::get("web.backend.com", "/"))?;
        anyhow::ensure!(
            page.status == 200
                && page
                    .header("content-type")
                    .is_some_and(|c| c.contains("html")),
            "the page: {} {:?}",
            page.status,
            page.headers
        );
        // The routing header names the server's cluster; the web host still goes to web.
        let spoof = send(&Request::get("web.backend.com", "/").header(
            "x-mesh-upstream",
            "outbound|6000||server.digimon.svc.cluster.local",
        ))?;
        anyhow::ensure!(
            spoof.status == 200
                && spoof
                    .header("content-type")
                    .is_some_and(|c| c.contains("html")),
            "a spoofed routing header moved the web host: {} {:?}",
            spoof.status,
            spoof.headers
        );
    }
    Ok(())
}

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
