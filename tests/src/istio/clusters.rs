//! istiod's clusters made runnable in a plain Envoy with their settings kept (protocol
//! options, timeouts, circuit breakers, load balancing, outlier detection): only where they
//! send changes, to a local process, and without the mTLS istio-agent's SDS would supply.

use serde_json::{json, Value};
use std::net::SocketAddr;

/// Cluster types that find endpoints elsewhere (EDS from istiod, DNS, the original
/// destination); here each gets one static endpoint.
const DISCOVERED: [&str; 4] = ["EDS", "STRICT_DNS", "LOGICAL_DNS", "ORIGINAL_DST"];

/// The cluster `c` from a dump, sending to `address` (`None`: no endpoint, as istiod's
/// `BlackHoleCluster`). Changed, and nothing else: the type (STATIC), the endpoints, the
/// transport socket (plain TCP instead of Istio mTLS, whose certificates come from istio-agent)
/// and Istio-only upstream filters (`istio.metadata_exchange`, only istio-proxy has it).
pub fn runnable_cluster(c: &Value, address: Option<SocketAddr>) -> Value {
    let mut c = c.clone();
    let Some(m) = c.as_object_mut() else {
        return c;
    };
    m.remove("@type");
    let name = m
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let discovered = m
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| DISCOVERED.contains(&t));
    if discovered || address.is_some() {
        m.insert("type".into(), json!("STATIC"));
        for key in [
            "eds_cluster_config",
            "dns_lookup_family",
            "dns_refresh_rate",
            "respect_dns_ttl",
            "original_dst_lb_config",
        ] {
            m.remove(key);
        }
        // ORIGINAL_DST clusters balance by the connection's destination.
        if m.get("lb_policy").and_then(Value::as_str) == Some("CLUSTER_PROVIDED") {
            m.remove("lb_policy");
        }
        let endpoints: Vec<Value> = address
            .into_iter()
            .map(|a| {
                json!({ "endpoint": { "address": { "socket_address": {
                    "address": a.ip().to_string(), "port_value": a.port(),
                }}}})
            })
            .collect();
        m.insert(
            "load_assignment".into(),
            json!({ "cluster_name": name, "endpoints": [{ "lb_endpoints": endpoints }] }),
        );
    }
    m.remove("transport_socket");
    m.remove("transport_socket_matches");
    if let Some(filters) = m.get_mut("filters").and_then(Value::as_array_mut) {
        filters.retain(|f| !f["name"].as_str().unwrap_or_default().starts_with("istio."));
        if filters.is_empty() {
            m.remove("filters");
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_tls_change_and_nothing_else() {
        let istiod = json!({
            "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            "name": "outbound|6000||server.digimon.svc.cluster.local",
            "type": "EDS",
            "eds_cluster_config": { "eds_config": { "ads": {} } },
            "connect_timeout": "10s",
            "lb_policy": "LEAST_REQUEST",
            "typed_extension_protocol_options": { "k": { "explicit_http_config": { "http2_protocol_options": {} } } },
            "transport_socket_matches": [{ "name": "tlsMode-istio" }],
            "filters": [{ "name": "istio.metadata_exchange" }],
        });
        let c = runnable_cluster(&istiod, Some("127.0.0.1:9".parse().unwrap()));
        assert_eq!(c["type"], "STATIC");
        assert_eq!(
            c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                ["socket_address"]["port_value"],
            9
        );
        for gone in [
            "@type",
            "eds_cluster_config",
            "transport_socket_matches",
            "filters",
        ] {
            assert!(c.get(gone).is_none(), "{gone}: {c}");
        }
        for kept in [
            "connect_timeout",
            "lb_policy",
            "typed_extension_protocol_options",
        ] {
            assert_eq!(c[kept], istiod[kept], "{kept}");
        }
        let passthrough = json!({ "name": "PassthroughCluster", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED" });
        let c = runnable_cluster(&passthrough, Some("127.0.0.1:9".parse().unwrap()));
        assert!(c.get("lb_policy").is_none(), "{c}");
        let blackhole = json!({ "name": "BlackHoleCluster", "type": "STATIC" });
        assert_eq!(runnable_cluster(&blackhole, None), blackhole);
    }
}
