//! Gateway context: the anchor VirtualService and the Gateway it binds to exist, and which
//! other VirtualServices also claim the config's hosts on that Gateway (and who wins).

use super::{check, pass, Check, Status};
use crate::gateway;
use serde_json::Value;
use std::collections::BTreeMap;

/// What the gateway checks look at, read by `gather`.
#[derive(Debug, Clone, Default)]
pub struct GatewayRouting {
    /// `NAMESPACE/NAME` of the anchor VirtualService (named like the filter object).
    pub anchor_ref: String,
    /// The anchor, if it exists.
    pub anchor: Option<Value>,
    /// Each Gateway the anchor binds to (`NAMESPACE/NAME`) with the live object, if any.
    pub gateways: Vec<(String, Option<Value>)>,
    /// Every VirtualService in the cluster (networking.istio.io/v1beta1).
    pub virtual_services: Vec<Value>,
    /// The filter is a WasmPlugin/TrafficExtension: istiod places it before its CORS and
    /// fault filters, not just before the router as the EnvoyFilter does.
    pub extension_api: bool,
}

const GROUP: &str = "Gateway routing";

/// A JSON array's strings (anything else skipped).
fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

fn list(items: &[String]) -> String {
    items.join(", ")
}

/// The checks of the gateway context; `workload_labels` are the pod template labels of the
/// selected gateway Deployments.
pub fn evaluate(r: &GatewayRouting, workload_labels: &[BTreeMap<String, String>]) -> Vec<Check> {
    let mut out = Vec::new();
    let anchor = &r.anchor_ref;
    let Some(vs) = &r.anchor else {
        out.push(check(
            "gateway-routing.anchor", GROUP,
            format!("anchor VirtualService {anchor} present"),
            Status::Fail,
            Some("run kubectl mesh enable --envoy-context gateway again: without the anchor, istiod builds no virtual host for the config's hosts and the gateway answers them 404".into()),
        ));
        return out;
    };
    let namespace = vs["metadata"]["namespace"].as_str().unwrap_or_default();
    let hosts = strings(&vs["spec"]["hosts"]);
    out.push(pass(
        "gateway-routing.anchor",
        GROUP,
        format!(
            "anchor VirtualService {anchor} binds {} to {}",
            list(&hosts),
            list(&gateway::bound_gateways(vs))
        ),
    ));
    for (gref, live) in &r.gateways {
        let Some(g) = live else {
            out.push(check(
                "gateway-routing.gateway-exists", GROUP,
                format!("Gateway {gref} exists"),
                Status::Fail,
                Some(format!("the anchor binds the config's hosts to {gref}, which does not exist: run kubectl mesh enable again (without --gateway it finds a Gateway serving the hosts or creates one)")),
            ));
            continue;
        };
        out.push(pass(
            "gateway-routing.gateway-exists",
            GROUP,
            format!("Gateway {gref} exists"),
        ));
        if !workload_labels.iter().all(|l| gateway::selects(g, l)) {
            out.push(check(
                "gateway-routing.gateway-selects-pods", GROUP,
                format!("Gateway {gref} selects the gateway pods"),
                Status::Fail,
                Some(format!("its spec.selector {} does not match the labels of the pods running the filter, so those pods never listen for the hosts: fix the selector, or enable with --gateway naming a Gateway of these pods", g["spec"]["selector"])),
            ));
        }
        let unserved: Vec<String> = hosts
            .iter()
            .filter(|h| !gateway::serves_anywhere(g, h, namespace))
            .cloned()
            .collect();
        out.push(if unserved.is_empty() {
            pass("gateway-routing.gateway-serves-hosts", GROUP, format!("Gateway {gref} serves {}", list(&hosts)))
        } else {
            check(
                "gateway-routing.gateway-serves-hosts", GROUP,
                format!("Gateway {gref} serves {}", list(&hosts)),
                Status::Fail,
                Some(format!("no server of {gref} admits {} for a VirtualService in {namespace}, so the gateway answers them 404: add them to its servers' hosts (or {namespace}/HOST), or run enable without --gateway", list(&unserved))),
            )
        });
        let overlaps = gateway::overlaps_on(&r.virtual_services, gref, &hosts, anchor);
        if overlaps.is_empty() {
            out.push(pass(
                "gateway-routing.other-virtual-services",
                GROUP,
                format!("no other VirtualService routes these hosts on {gref}"),
            ));
        }
        for o in overlaps {
            let mut also = Vec::new();
            if o.cors {
                also.push("its corsPolicy");
            }
            if o.fault {
                also.push("its fault injection");
            }
            let still = match (r.extension_api, also.is_empty()) {
                (false, true) => "A corsPolicy or fault on it would still apply to them: Istio's CORS and fault filters run before the Wasm filter.".to_owned(),
                (false, false) => format!("{} still apply to them: Istio's CORS and fault filters run before the Wasm filter, so these requests get both.", also.join(" and ")),
                (true, true) => "A corsPolicy or fault on it would not apply to them: istiod places a WasmPlugin/TrafficExtension before its CORS and fault filters, which then see the filter's route, not this VirtualService's.".to_owned(),
                (true, false) => format!("{} no longer apply to them: istiod places a WasmPlugin/TrafficExtension before its CORS and fault filters, which then see the filter's route, not this VirtualService's (put CORS in the mesh config; --api envoyfilter keeps Istio's in force).", also.join(" and ")),
            };
            out.push(check(
                "gateway-routing.other-virtual-services", GROUP,
                format!("VirtualService {} also routes {} on {gref}", o.virtual_service, list(&o.hosts)),
                Status::Warn,
                Some(format!(
                    "the filter decides every request for the config's hosts: its routing route is inserted first in every virtual host, so the routes of {vs} for these hosts are not used while the filter runs (they serve them again if its VM is gone). {still} Fix: remove {hosts} from {vs}'s hosts (or the hosts from the mesh config)",
                    vs = o.virtual_service,
                    hosts = list(&o.hosts),
                )),
            ));
        }
    }
    out
}

/// A Gateway API gateway: the anchor HTTPRoute and the Gateway it attaches to.
#[derive(Debug, Clone, Default)]
pub struct RouteRouting {
    /// `NAMESPACE/NAME` of the anchor HTTPRoute (named like the filter object).
    pub route_ref: String,
    /// The HTTPRoute, if it exists.
    pub route: Option<Value>,
    /// `NAMESPACE/NAME` of the Gateway the filter is for.
    pub gateway_ref: String,
    /// The Gateway, if it exists.
    pub gateway: Option<Value>,
}

/// The checks of a Gateway API gateway: the anchor HTTPRoute, the Gateway, its listeners for
/// the hosts, and istiod's verdict on the route when it has given one (its status).
pub fn evaluate_route(r: &RouteRouting) -> Vec<Check> {
    let mut out = Vec::new();
    let (anchor, gref) = (&r.route_ref, &r.gateway_ref);
    let Some(route) = &r.route else {
        out.push(check(
            "gateway-routing.anchor", GROUP,
            format!("anchor HTTPRoute {anchor} present"),
            Status::Fail,
            Some("run kubectl mesh enable again: without the anchor, istiod builds no virtual host for the config's hosts on the Gateway API gateway and they get no route (404)".into()),
        ));
        return out;
    };
    let hosts = strings(&route["spec"]["hostnames"]);
    out.push(pass(
        "gateway-routing.anchor",
        GROUP,
        format!(
            "anchor HTTPRoute {anchor} binds {} to Gateway {gref}",
            list(&hosts)
        ),
    ));
    let Some(g) = &r.gateway else {
        out.push(check(
            "gateway-routing.gateway-exists", GROUP,
            format!("Gateway {gref} exists"),
            Status::Fail,
            Some(format!("the filter is for the Gateway API Gateway {gref}, which does not exist: run kubectl mesh enable again (it finds the gateway that serves the hosts)")),
        ));
        return out;
    };
    out.push(pass(
        "gateway-routing.gateway-exists",
        GROUP,
        format!("Gateway {gref} exists"),
    ));
    let namespace = route["metadata"]["namespace"].as_str().unwrap_or_default();
    let served = crate::gateway_api::served_hosts(g, &hosts, namespace);
    let unserved: Vec<String> = hosts
        .iter()
        .filter(|h| !served.contains(h))
        .cloned()
        .collect();
    out.push(if unserved.is_empty() {
        pass("gateway-routing.gateway-serves-hosts", GROUP, format!("Gateway {gref} serves {}", list(&hosts)))
    } else {
        check(
            "gateway-routing.gateway-serves-hosts", GROUP,
            format!("Gateway {gref} serves {}", list(&hosts)),
            Status::Fail,
            Some(format!("no HTTP listener of {gref} admits {} for a route in {namespace} (its hostname, or allowedRoutes): add a listener for them", list(&unserved))),
        )
    });
    // istiod writes whether it accepted the route for each parent; absent until it has.
    let refused: Vec<String> = route["status"]["parents"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["conditions"].as_array().into_iter().flatten())
        .filter(|c| c["type"] == "Accepted" && c["status"] == "False")
        .map(|c| {
            format!(
                "{}: {}",
                c["reason"].as_str().unwrap_or_default(),
                c["message"].as_str().unwrap_or_default()
            )
        })
        .collect();
    if !refused.is_empty() {
        out.push(check(
            "gateway-routing.route-accepted",
            GROUP,
            format!("istiod accepted HTTPRoute {anchor}"),
            Status::Fail,
            Some(format!(
                "istiod did not attach it to the Gateway: {}",
                refused.join("; ")
            )),
        ));
    } else if route["status"]["parents"]
        .as_array()
        .is_some_and(|p| !p.is_empty())
    {
        out.push(pass(
            "gateway-routing.route-accepted",
            GROUP,
            format!("istiod accepted HTTPRoute {anchor}"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn routing(anchor: bool, gateway_hosts: Option<Value>, others: Vec<Value>) -> GatewayRouting {
        let anchor_vs = json!({
            "metadata": { "namespace": "istio-system", "name": "kubectl-mesh" },
            "spec": { "gateways": ["istio-system/kubectl-mesh"], "hosts": ["api.backend.com", "web.backend.com"] },
        });
        let gw = gateway_hosts.map(|h| {
            json!({
                "metadata": { "namespace": "istio-system", "name": "kubectl-mesh" },
                "spec": { "selector": { "istio": "ingressgateway" }, "servers": [
                    { "port": { "number": 80, "protocol": "HTTP" }, "hosts": h }
                ]},
            })
        });
        let mut vss = others;
        vss.push(anchor_vs.clone());
        GatewayRouting {
            anchor_ref: "istio-system/kubectl-mesh".into(),
            anchor: anchor.then_some(anchor_vs),
            gateways: vec![("istio-system/kubectl-mesh".into(), gw)],
            virtual_services: vss,
            extension_api: false,
        }
    }

    fn check(r: &GatewayRouting) -> Vec<Check> {
        evaluate(
            r,
            &[BTreeMap::from([("istio".into(), "ingressgateway".into())])],
        )
    }

    #[test]
    fn all_in_place() {
        let c = check(&routing(true, Some(json!(["*"])), vec![]));
        assert!(c.iter().all(|c| c.status == Status::Pass), "{c:#?}");
        assert_eq!(c.len(), 4, "{c:#?}");
    }

    #[test]
    fn missing_anchor_gateway_or_host_fail() {
        let c = check(&routing(false, Some(json!(["*"])), vec![]));
        assert_eq!((c.len(), c[0].status), (1, Status::Fail));
        let c = check(&routing(true, None, vec![]));
        assert!(c.iter().any(
            |c| c.description == "Gateway istio-system/kubectl-mesh exists"
                && c.status == Status::Fail
        ));
        let c = check(&routing(true, Some(json!(["api.backend.com"])), vec![]));
        let f = c.iter().find(|c| c.status == Status::Fail).unwrap();
        assert!(
            f.hint.as_deref().unwrap().contains("web.backend.com"),
            "{f:?}"
        );
        assert!(
            !f.hint.as_deref().unwrap().contains("api.backend.com"),
            "{f:?}"
        );
    }

    #[test]
    fn overlap_warns_and_says_who_wins() {
        let legacy = json!({
            "metadata": { "namespace": "digimon", "name": "legacy" },
            "spec": { "gateways": ["istio-system/kubectl-mesh"], "hosts": ["api.backend.com"],
                      "http": [{ "corsPolicy": { "allowOrigins": [{ "exact": "x" }] } }] },
        });
        let c = check(&routing(true, Some(json!(["*"])), vec![legacy]));
        let w: Vec<&Check> = c.iter().filter(|c| c.status == Status::Warn).collect();
        assert_eq!(w.len(), 1, "{c:#?}");
        assert_eq!(w[0].description, "VirtualService digimon/legacy also routes api.backend.com on istio-system/kubectl-mesh");
        let hint = w[0].hint.as_deref().unwrap();
        assert!(
            hint.contains("inserted first") && hint.contains("its corsPolicy still apply"),
            "{hint}"
        );
        assert!(
            hint.contains("remove api.backend.com from digimon/legacy"),
            "{hint}"
        );
        // As a WasmPlugin/TrafficExtension the filter runs before Istio's CORS and fault.
        let mut r = routing(true, Some(json!(["*"])), vec![legacy_vs()]);
        r.extension_api = true;
        let c = check(&r);
        let hint = c
            .iter()
            .find(|c| c.status == Status::Warn)
            .unwrap()
            .hint
            .clone()
            .unwrap();
        assert!(hint.contains("its corsPolicy no longer apply"), "{hint}");
    }

    fn legacy_vs() -> Value {
        json!({
            "metadata": { "namespace": "digimon", "name": "legacy" },
            "spec": { "gateways": ["istio-system/kubectl-mesh"], "hosts": ["api.backend.com"],
                      "http": [{ "corsPolicy": { "allowOrigins": [{ "exact": "x" }] } }] },
        })
    }
}
