//! What istiod builds from the other Istio objects kubectl-mesh renders at the gateway: the
//! anchor VirtualService becomes one virtual host per host on the gateway's route
//! configurations, in the shape istiod gives them in its own gateway route test data
//! (`gateway-1.21dev-routes-istio-gateway.json`: name `HOST:PORT`, domains `[HOST]`, routes
//! with `case_sensitive` matches and `outbound|PORT||FQDN` clusters). A host that already has
//! a virtual host gets the routes appended, as istiod merges VirtualServices on a gateway.

use super::dump::{Proxy, ProxyKind};
use anyhow::{bail, Context as _};
use serde_json::{json, Value};

/// Adds the virtual hosts of `vs` (a rendered VirtualService bound to a gateway whose HTTP
/// server listens on `port`) to every route configuration of the gateway `proxy`. Returns how
/// many virtual hosts were added or extended.
pub fn add_virtual_service(proxy: &mut Proxy, vs: &Value, port: u64) -> anyhow::Result<usize> {
    if proxy.kind != ProxyKind::Gateway {
        bail!(
            "{}: VirtualServices bound to a gateway only reach gateways",
            proxy.name
        );
    }
    let routes: Vec<Value> = vs["spec"]["http"]
        .as_array()
        .into_iter()
        .flatten()
        .map(http_route)
        .collect::<anyhow::Result<_>>()
        .context("translating the VirtualService")?;
    let mut n = 0;
    for rc in proxy.routes.values_mut() {
        let Some(vhosts) = rc["virtual_hosts"].as_array_mut() else {
            continue;
        };
        for host in vs["spec"]["hosts"].as_array().into_iter().flatten() {
            let host = host.as_str().unwrap_or_default();
            match vhosts.iter_mut().find(|v| {
                v["domains"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|x| x == host))
            }) {
                Some(existing) => {
                    if let Some(r) = existing["routes"].as_array_mut() {
                        r.extend(routes.iter().cloned());
                    }
                }
                None => vhosts.push(json!({
                    "name": format!("{host}:{port}"),
                    "domains": [host],
                    "routes": routes,
                    "include_request_attempt_count": true,
                })),
            }
            n += 1;
        }
    }
    Ok(n)
}

fn http_route(h: &Value) -> anyhow::Result<Value> {
    let m = &h["match"][0]["uri"];
    let route_match = match (m["exact"].as_str(), m["prefix"].as_str()) {
        (Some(p), _) => json!({ "path": p, "case_sensitive": true }),
        (None, Some(p)) => json!({ "prefix": p, "case_sensitive": true }),
        _ => bail!("only uri exact/prefix matches are translated"),
    };
    let d = &h["route"][0]["destination"];
    let (Some(host), Some(port)) = (d["host"].as_str(), d["port"]["number"].as_u64()) else {
        bail!("a route destination needs host and port.number");
    };
    Ok(json!({
        "name": h["name"],
        "match": route_match,
        "route": { "cluster": format!("outbound|{port}||{host}"), "timeout": "0s" },
    }))
}
