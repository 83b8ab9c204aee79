//! What the istiod suites check on a running proxy: the page's flow through the config's
//! hosts, the HTTP filters istiod placed, and Istio's own routes before and after the filter.

use super::generated::Dump;
use super::scenario::Proxy;
use crate::client::{Request, Response};
use kubectl_mesh::render::Context;
use serde_json::Value;

/// The listener a context's checks go through: the gateway's HTTP listener (`0.0.0.0_8080`
/// behind istioctl's Service, `0.0.0.0_80` behind the Helm chart's), the outbound listener
/// api.backend.com:80 reaches (the gateway Service's port), the server's inbound one.
pub fn entry(context: Context) -> &'static str {
    match context {
        Context::Gateway => "0.0.0.0_80",
        Context::SidecarOutbound => "0.0.0.0_80/",
        Context::SidecarInbound => "virtualInbound/0.0.0.0_6000",
    }
}

/// The page's flow against the config's hosts: the preflight is answered with the grant, the
/// gRPC-Web calls reach the real HTTP/2 server (Create, then the streamed QueryStream), the
/// page comes from the web service (not inbound: that is another workload), and a client
/// cannot send the web host to the server.
pub fn page_flow(p: &Proxy, context: Context) -> anyhow::Result<()> {
    use crate::digimon::{self, API_HOST, WEB_ORIGIN};
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
        let html = |r: &Response| {
            r.status == 200 && r.header("content-type").is_some_and(|c| c.contains("html"))
        };
        let page = send(&Request::get("web.backend.com", "/"))?;
        anyhow::ensure!(html(&page), "the page: {} {:?}", page.status, page.headers);
        let spoof = send(&Request::get("web.backend.com", "/").header(
            mesh_core::UPSTREAM_HEADER,
            "outbound|6000||server.digimon.svc.cluster.local",
        ))?;
        anyhow::ensure!(
            html(&spoof),
            "a spoofed routing header moved the web host: {} {:?}",
            spoof.status,
            spoof.headers
        );
    }
    Ok(())
}

/// Every HTTP filter named `name` in the dump's listeners (inline or through ECDS, by name).
pub fn http_filters<'a>(dump: &'a Dump, name: &str) -> Vec<&'a Value> {
    let mut out = Vec::new();
    for l in &dump.listeners {
        let chains = l["filter_chains"].as_array().into_iter().flatten();
        for chain in chains.chain(std::iter::once(&l["default_filter_chain"])) {
            for f in chain["filters"].as_array().into_iter().flatten() {
                for h in f["typed_config"]["http_filters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if h["name"] == name {
                        out.push(h);
                    }
                }
            }
        }
    }
    out
}

/// Every request Istio's own routes serve, sent to `before` (no kubectl-mesh) and `after`:
/// one per domain and route of every listener's routes and generic ones (a GET, a preflight, a
/// gRPC-Web call, an unlisted host), again with the filter's reserved headers spoofed. Hosts
/// the config names are left out (they are the config's). Returns how many were sent and each
/// difference in status, answering upstream, CORS headers or upstream content type.
pub fn istio_route_diffs(
    before: &Proxy,
    after: &Proxy,
    config_hosts: &[String],
) -> anyhow::Result<(usize, Vec<String>)> {
    use kubectl_mesh::verify::istio::traffic::{probes_for, Outcome};
    let labels = |p: &Proxy| -> Vec<String> {
        p.runnable
            .listeners
            .iter()
            .map(|l| l.label.clone())
            .collect()
    };
    anyhow::ensure!(
        labels(before) == labels(after),
        "kubectl-mesh changed the listeners: {:?} -> {:?}",
        labels(before),
        labels(after)
    );
    let listeners: Vec<(&str, &Value)> = before
        .runnable
        .listeners
        .iter()
        .map(|l| (l.label.as_str(), &l.route_config))
        .collect();
    let owned = |h: &str| {
        let h = h.split(':').next().unwrap_or(h).to_ascii_lowercase();
        config_hosts.contains(&h)
    };
    let probes: Vec<_> = probes_for(&listeners)
        .into_iter()
        .filter(|p| !p.req.host.as_deref().is_some_and(owned))
        .collect();
    let spoofed: Vec<_> = probes
        .iter()
        .cloned()
        .map(|mut p| {
            p.req = p
                .req
                .header(
                    mesh_core::UPSTREAM_HEADER,
                    "outbound|6000||server.digimon.svc.cluster.local",
                )
                .header(mesh_core::GRPC_WEB_HEADER, "1");
            p.what += " (with x-mesh-upstream and x-mesh-grpc-web)";
            p
        })
        .collect();
    let all: Vec<_> = probes.into_iter().chain(spoofed).collect();
    let outcome = |p: &Proxy, probe: &kubectl_mesh::verify::istio::traffic::Probe| {
        let port = p.ports[probe.listener];
        probe.req.send(port).map(|r| Outcome::from(&r))
    };
    let mut diffs = Vec::new();
    for probe in &all {
        let b = outcome(before, probe)?;
        let a = outcome(after, probe)?;
        if a != b {
            diffs.push(format!("  {}: before {b}, after {a}", probe.what));
        }
    }
    Ok((all.len(), diffs))
}

/// Another team's app on a Gateway API gateway: an HTTPRoute for `host` on Gateway `public`
/// (digimon), routed to `service:port` there.
pub fn other_route(host: &str, service: &str, port: u16) -> Vec<Value> {
    vec![serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": { "name": "other", "namespace": "digimon" },
        "spec": {
            "parentRefs": [{ "name": "public" }],
            "hostnames": [host],
            "rules": [
                { "matches": [{ "path": { "type": "PathPrefix", "value": "/api/" } }],
                  "backendRefs": [{ "name": service, "port": port }] },
                { "backendRefs": [{ "name": service, "port": port }] },
            ],
        },
    })]
}

/// Another team's app on the same gateway: its own Gateway (selecting the gateway's pods by
/// `istio: ingressgateway`) and VirtualService for `host`, routed to `service:port` in digimon.
pub fn other_app(host: &str, service: &str, port: u16) -> Vec<Value> {
    vec![
        serde_json::json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "Gateway",
            "metadata": { "name": "other", "namespace": "digimon" },
            "spec": { "selector": { "istio": "ingressgateway" }, "servers": [{
                "port": { "number": 80, "name": "http-other", "protocol": "HTTP" }, "hosts": [host],
            }]},
        }),
        serde_json::json!({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": { "name": "other", "namespace": "digimon" },
            "spec": { "hosts": [host], "gateways": ["other"], "http": [
                { "match": [{ "uri": { "prefix": "/api/" } }], "route": [{ "destination": { "host": service, "port": { "number": port } } }],
                  "corsPolicy": { "allowOrigins": [{ "exact": "http://web.backend.com" }], "allowMethods": ["POST"] } },
                { "route": [{ "destination": { "host": service, "port": { "number": port } } }] },
            ]},
        }),
    ]
}
