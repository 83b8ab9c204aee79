//! Reads what `evaluate` looks at from the cluster: thin I/O, no decisions.

use super::proxy::{
    PodStats, ProxyStats, AGENT_PROMETHEUS_PORT, ENVOY_PROMETHEUS_PORT, PROMETHEUS_PATH,
};
use super::routing::GatewayRouting;
use super::upstreams::{applied_config, rule_covers, service_targets, Upstream};
use super::{filter_object, is_gateway, CheckInput, Workload};
use crate::cluster::{Cluster, ClusterError};
use crate::plan::parse_version;
use serde_json::json;

/// Reads everything `evaluate` needs; an unreachable API becomes a failed check, not an error.
pub async fn gather(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    desired_hash: Option<String>,
    gateway: bool,
) -> Result<CheckInput, ClusterError> {
    let mut input = CheckInput {
        url: cluster.url().to_owned(),
        namespace_name: namespace.to_owned(),
        desired_hash,
        gateway,
        ..Default::default()
    };
    match cluster.version().await {
        Ok(info) => input.version = Ok(parse_version(&info)),
        Err(e @ ClusterError::Unreachable { .. }) => {
            input.version = Err(crate::error_chain::error_chain(&e));
            return Ok(input);
        }
        Err(e) => return Err(e),
    }
    input.networking_versions = cluster.served_versions("networking.istio.io").await?;
    input.extensions_versions = cluster.served_versions("extensions.istio.io").await?;
    input.envoyfilter_served = cluster
        .resources("networking.istio.io/v1alpha3")
        .await?
        .iter()
        .any(|r| r == "envoyfilters");
    input.namespace = cluster.namespace(namespace).await?;
    if input.namespace.is_none() {
        return Ok(input);
    }
    if let Some(cp) = crate::ossm::read::control_plane(cluster, namespace).await? {
        let membership = crate::ossm::read::membership(cluster, &cp, namespace).await?;
        input.ossm = Some((cp, membership));
    }
    if input.envoyfilter_served {
        input.managed.extend(
            cluster
                .list_managed("networking.istio.io/v1alpha3", "EnvoyFilter", namespace)
                .await?,
        );
    }
    if !input.extensions_versions.is_empty() {
        for kind in ["WasmPlugin", "TrafficExtension"] {
            input.managed.extend(
                cluster
                    .list_managed("extensions.istio.io/v1alpha1", kind, namespace)
                    .await?,
            );
        }
    }
    input
        .managed
        .extend(cluster.list_managed("v1", "ConfigMap", namespace).await?);
    // This instance's objects only (another `--name` may share the namespace).
    let owned = crate::names::owned_names(name);
    input.managed.retain(|o| {
        o["metadata"]["name"]
            .as_str()
            .is_some_and(|n| owned.iter().any(|m| m == n))
    });
    // Put the extension object (which carries the filter) before the route-only EnvoyFilter.
    input.managed.sort_by_key(|o| {
        o["kind"] == "EnvoyFilter"
            && o["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-route"))
    });
    for d in cluster.deployments(namespace, "").await? {
        let pods = cluster
            .pods(namespace, &crate::plan::pod_selector(&d))
            .await?;
        input.workloads.push(Workload {
            deployment: d,
            pods,
            proxies: Vec::new(),
        });
    }
    if let Some(gateway) = filter_object(&input.managed).and_then(gateway_api_gateway) {
        input.route = Some(route_routing(cluster, &input, &gateway).await?);
    } else if is_gateway(input.gateway, &input.managed) {
        let mut unread = Vec::new();
        input.routing = gateway_routing(cluster, &input, &mut unread).await?;
        input.unread.extend(unread);
    }
    let mut unread = Vec::new();
    input.upstreams = upstreams(cluster, &input, &mut unread).await?;
    input.unread.extend(unread);
    Ok(input)
}

/// Every object of a kind, in every namespace; a user who may not list them gets none, and the
/// kind goes to `unread` (a warning says what was not checked).
async fn list_everywhere(
    cluster: &Cluster,
    (api_version, kind): (&str, &str),
    unread: &mut Vec<String>,
) -> Result<Vec<serde_json::Value>, ClusterError> {
    match cluster.list_all(api_version, kind).await {
        Err(e) if e.code() == Some(403) => {
            unread.push(format!("{kind}s"));
            Ok(Vec::new())
        }
        other => other,
    }
}

/// The applied config's service targets with their Services and the DestinationRules that
/// cover them.
async fn upstreams(
    cluster: &Cluster,
    input: &CheckInput,
    unread: &mut Vec<String>,
) -> Result<Vec<Upstream>, ClusterError> {
    let Some(cfg) = filter_object(&input.managed).and_then(applied_config) else {
        return Ok(Vec::new());
    };
    let rules = list_everywhere(cluster, DESTINATION_RULE, unread).await?;
    let mut out = Vec::new();
    for (fqdn, port, http2) in service_targets(&cfg) {
        let mut parts = fqdn.split('.');
        let (name, ns) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        let stub = json!({ "apiVersion": "v1", "kind": "Service", "metadata": { "namespace": ns, "name": name } });
        let service = match cluster.get_object(&stub).await {
            Err(e) if e.code() == Some(403) => {
                if !unread.iter().any(|k| k == "Services") {
                    unread.push("Services".into());
                }
                continue;
            }
            other => other?.and_then(|v| serde_json::from_value(v).ok()),
        };
        let destination_rules = rules
            .iter()
            .filter(|dr| {
                rule_covers(
                    dr["spec"]["host"].as_str().unwrap_or_default(),
                    dr["metadata"]["namespace"].as_str().unwrap_or_default(),
                    &fqdn,
                    &cfg.cluster_domain,
                )
            })
            .cloned()
            .collect();
        out.push(Upstream {
            fqdn,
            port,
            http2,
            service,
            destination_rules,
        });
    }
    Ok(out)
}

const VIRTUAL_SERVICE: (&str, &str) = ("networking.istio.io/v1beta1", "VirtualService");
const DESTINATION_RULE: (&str, &str) = ("networking.istio.io/v1beta1", "DestinationRule");
const GATEWAY: (&str, &str) = ("networking.istio.io/v1beta1", "Gateway");

async fn get(
    cluster: &Cluster,
    (api_version, kind): (&str, &str),
    reference: &str,
) -> Result<Option<serde_json::Value>, ClusterError> {
    let (namespace, name) = reference.split_once('/').unwrap_or_default();
    let stub = json!({
        "apiVersion": api_version, "kind": kind,
        "metadata": { "namespace": namespace, "name": name },
    });
    match cluster.get_object(&stub).await {
        // A group that is not served (no Istio) has nothing to find.
        Err(e) if e.code() == Some(404) => Ok(None),
        other => other,
    }
}

/// The anchor VirtualService (named like the filter object), the Gateways it binds to and
/// every VirtualService in the cluster; `None` without a filter object (already a failure).
async fn gateway_routing(
    cluster: &Cluster,
    input: &CheckInput,
    unread: &mut Vec<String>,
) -> Result<Option<GatewayRouting>, ClusterError> {
    let Some(name) = filter_object(&input.managed).and_then(|f| f["metadata"]["name"].as_str())
    else {
        return Ok(None);
    };
    let anchor_ref = format!("{}/{name}", input.namespace_name);
    let anchor = get(cluster, VIRTUAL_SERVICE, &anchor_ref).await?;
    let mut gateways = Vec::new();
    for g in anchor.iter().flat_map(crate::gateway::bound_gateways) {
        let live = get(cluster, GATEWAY, &g).await?;
        gateways.push((g, live));
    }
    Ok(Some(GatewayRouting {
        anchor_ref,
        anchor,
        gateways,
        virtual_services: list_everywhere(cluster, VIRTUAL_SERVICE, unread).await?,
        extension_api: filter_object(&input.managed).is_some_and(|f| f["kind"] != "EnvoyFilter"),
    }))
}

/// The Gateway API Gateway a filter object is for: its `targetRefs`, or the gateway-name label
/// it selects.
fn gateway_api_gateway(filter: &serde_json::Value) -> Option<String> {
    if let Some(name) = filter["spec"]["targetRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["kind"] == "Gateway")
        .and_then(|r| r["name"].as_str())
    {
        return Some(name.to_owned());
    }
    super::workload::selector_of(filter)
        .get(crate::names::GATEWAY_NAME_LABEL)
        .cloned()
}

/// The anchor HTTPRoute (named like the filter object) and the Gateway, in the namespace.
async fn route_routing(
    cluster: &Cluster,
    input: &CheckInput,
    gateway: &str,
) -> Result<super::routing::RouteRouting, ClusterError> {
    let name = filter_object(&input.managed)
        .and_then(|f| f["metadata"]["name"].as_str())
        .unwrap_or_default();
    let route_ref = format!("{}/{name}", input.namespace_name);
    let gateway_ref = format!("{}/{gateway}", input.namespace_name);
    Ok(super::routing::RouteRouting {
        route: get(cluster, HTTP_ROUTE, &route_ref).await?,
        gateway: get(cluster, K8S_GATEWAY, &gateway_ref).await?,
        route_ref,
        gateway_ref,
    })
}

const HTTP_ROUTE: (&str, &str) = ("gateway.networking.k8s.io/v1", "HTTPRoute");
const K8S_GATEWAY: (&str, &str) = ("gateway.networking.k8s.io/v1", "Gateway");

/// One pod's istio-proxy stats through the API server's pod proxy: Envoy's port 15090, then
/// istio-agent's 15020; the reasons when neither answers.
pub async fn pod_stats(
    cluster: &Cluster,
    namespace: &str,
    pod: &str,
) -> Result<ProxyStats, String> {
    let mut errors = Vec::new();
    for port in [ENVOY_PROMETHEUS_PORT, AGENT_PROMETHEUS_PORT] {
        match cluster
            .pod_proxy_get(namespace, pod, port, PROMETHEUS_PATH)
            .await
        {
            Ok(text) => return Ok(ProxyStats::parse(&text)),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(errors.join("\n         then "))
}

/// Reads the Prometheus stats of every running pod with `istio-proxy` in the (already
/// selected) workloads, through the API server's pod proxy: Envoy's port 15090, then
/// istio-agent's 15020. A pod whose stats cannot be read gets the reason, not an error.
pub async fn gather_proxy_stats(cluster: &Cluster, input: &mut CheckInput) {
    let namespace = input.namespace_name.clone();
    for w in &mut input.workloads {
        for pod in &w.pods {
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            let proxied = pod
                .spec
                .as_ref()
                .is_some_and(|s| crate::plan::proxy_container(s).is_some());
            let Some(name) = pod.metadata.name.clone().filter(|_| running && proxied) else {
                continue;
            };
            let stats = pod_stats(cluster, &namespace, &name).await;
            w.proxies.push(PodStats { pod: name, stats });
        }
    }
}
