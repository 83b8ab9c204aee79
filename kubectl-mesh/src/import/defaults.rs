//! Envoy's defaults for fields configs often spell out (`lb_policy: ROUND_ROBIN`,
//! `connect_timeout: 5s`, `use_remote_address: false`, ...): a field set to its default asks
//! for nothing, so the import notes it for information only and `--strict` does not fail on it.

use serde_json::Value;

/// A default value.
enum Default {
    /// An enum name (also its number 0, which is the default of every Envoy enum).
    Enum(&'static str),
    /// A boolean (also as a `{value: ...}` wrapper).
    Bool(bool),
    /// A number (also as a numeric string or a `{value: ...}` wrapper).
    Number(u64),
    /// A duration in milliseconds (`"5s"`, `"5.000s"`, `{seconds: 5}`).
    Millis(u64),
}

/// Field name -> Envoy's default (v3 API docs; the names are unambiguous across the messages the
/// import reads: cluster, HTTP connection manager, route configuration, virtual host, route).
const DEFAULTS: &[(&str, Default)] = &[
    // Cluster.
    ("lb_policy", Default::Enum("ROUND_ROBIN")),
    ("connect_timeout", Default::Millis(5_000)),
    (
        "per_connection_buffer_limit_bytes",
        Default::Number(1_048_576),
    ),
    ("dns_refresh_rate", Default::Millis(5_000)),
    ("respect_dns_ttl", Default::Bool(false)),
    ("dns_lookup_family", Default::Enum("AUTO")),
    ("ignore_health_on_host_removal", Default::Bool(false)),
    (
        "close_connections_on_host_health_failure",
        Default::Bool(false),
    ),
    // HTTP connection manager.
    ("use_remote_address", Default::Bool(false)),
    ("xff_num_trusted_hops", Default::Number(0)),
    ("skip_xff_append", Default::Bool(false)),
    ("generate_request_id", Default::Bool(true)),
    ("preserve_external_request_id", Default::Bool(false)),
    ("always_set_request_id_in_response", Default::Bool(false)),
    ("normalize_path", Default::Bool(false)),
    ("merge_slashes", Default::Bool(false)),
    ("add_user_agent", Default::Bool(false)),
    ("proxy_100_continue", Default::Bool(false)),
    ("server_header_transformation", Default::Enum("OVERWRITE")),
    ("forward_client_cert_details", Default::Enum("SANITIZE")),
    (
        "path_with_escaped_slashes_action",
        Default::Enum("IMPLEMENTATION_SPECIFIC_DEFAULT"),
    ),
    ("stream_idle_timeout", Default::Millis(300_000)),
    ("request_timeout", Default::Millis(0)),
    ("drain_timeout", Default::Millis(5_000)),
    ("delayed_close_timeout", Default::Millis(1_000)),
    ("max_request_headers_kb", Default::Number(60)),
    (
        "represent_ipv4_remote_address_as_ipv4_mapped_ipv6",
        Default::Bool(false),
    ),
    ("strip_any_host_port", Default::Bool(false)),
    ("strip_trailing_host_dot", Default::Bool(false)),
    // Route configuration, virtual host, route.
    ("ignore_port_in_host_matching", Default::Bool(false)),
    ("most_specific_header_mutations_wins", Default::Bool(false)),
    ("require_tls", Default::Enum("NONE")),
    ("include_request_attempt_count", Default::Bool(false)),
    ("include_attempt_count_in_response", Default::Bool(false)),
    ("include_vh_rate_limits", Default::Bool(false)),
    ("timeout", Default::Millis(15_000)),
    ("priority", Default::Enum("DEFAULT")),
    (
        "cluster_not_found_response_code",
        Default::Enum("SERVICE_UNAVAILABLE"),
    ),
    ("auto_host_rewrite", Default::Bool(false)),
    ("append_x_forwarded_host", Default::Bool(false)),
    ("case_sensitive", Default::Bool(true)),
];

/// A protobuf wrapper's value (`{value: X}`) or the value itself.
fn unwrap(v: &Value) -> &Value {
    v.get("value").unwrap_or(v)
}

/// Milliseconds of a protobuf duration: `"1.5s"` or `{seconds, nanos}`.
fn millis(v: &Value) -> Option<u64> {
    if let Some(s) = v.as_str() {
        let secs: f64 = s.strip_suffix('s')?.trim().parse().ok()?;
        return (secs >= 0.0).then(|| (secs * 1000.0).round() as u64);
    }
    let secs = v.get("seconds").map_or(Some(0), |s| {
        s.as_u64()
            .or_else(|| s.as_str().and_then(|t| t.parse().ok()))
    })?;
    let nanos = v.get("nanos").and_then(Value::as_u64).unwrap_or(0);
    Some(secs * 1000 + nanos / 1_000_000)
}

/// Envoy's default for `key`, as text for the note, when `value` is it.
pub fn is_default(key: &str, value: &Value) -> Option<String> {
    let (_, d) = DEFAULTS.iter().find(|(k, _)| *k == key)?;
    let v = unwrap(value);
    let same = match d {
        Default::Enum(name) => v.as_str() == Some(*name) || v.as_u64() == Some(0),
        Default::Bool(b) => v.as_bool() == Some(*b),
        Default::Number(n) => {
            v.as_u64() == Some(*n) || v.as_str().and_then(|s| s.parse().ok()) == Some(*n)
        }
        Default::Millis(ms) => millis(v) == Some(*ms),
    };
    same.then(|| match d {
        Default::Enum(name) => (*name).to_owned(),
        Default::Bool(b) => b.to_string(),
        Default::Number(n) => n.to_string(),
        Default::Millis(ms) => format!("{}s", *ms as f64 / 1000.0),
    })
}

/// The reason of a note for a field set to its default.
pub fn reason(key: &str, default: &str) -> String {
    format!("`{key}: {default}` is Envoy's default: it asks for nothing, so nothing needs carrying")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_in_their_spellings() {
        assert!(is_default("lb_policy", &json!("ROUND_ROBIN")).is_some());
        assert!(is_default("lb_policy", &json!(0)).is_some());
        assert!(is_default("lb_policy", &json!("LEAST_REQUEST")).is_none());
        assert_eq!(
            is_default("connect_timeout", &json!("5s")).as_deref(),
            Some("5s")
        );
        assert!(is_default("connect_timeout", &json!("5.000s")).is_some());
        assert!(is_default("connect_timeout", &json!({"seconds": 5})).is_some());
        assert!(is_default("connect_timeout", &json!("0.25s")).is_none());
        assert!(is_default("timeout", &json!("15s")).is_some());
        assert!(is_default("timeout", &json!("0s")).is_none());
        assert!(is_default("use_remote_address", &json!({"value": false})).is_some());
        assert!(is_default("use_remote_address", &json!(true)).is_none());
        assert!(is_default("max_request_headers_kb", &json!("60")).is_some());
        assert!(is_default("bogus", &json!(0)).is_none());
    }
}
