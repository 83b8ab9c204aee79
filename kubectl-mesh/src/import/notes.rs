//! What `import-envoy` could not carry over: each note names the field's path in the Envoy file,
//! why, and which part of the behaviour it touches; plus the path-tracking walker that finds them.

use serde_json::Value;
use std::fmt;

/// Which part of the original's behaviour a note is about. The differential suite uses it to
/// know what the import does *not* claim to carry: requests in that scope are not compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Nothing a client or an upstream sees of routing, CORS or header rules changes (timeouts,
    /// retries, load balancing, stats, access logs, tracing, admin).
    Unobservable,
    /// A proxy setting (how the HTTP connection manager treats every request, e.g.
    /// `use_remote_address`): in a mesh it belongs to the proxy Istio configures, not to the
    /// filter, so both sides of a comparison run it.
    Proxy,
    /// The connection layer (TLS, listener and network filters): not the filter's job.
    Connection,
    /// An HTTP filter the MeshConfig cannot express (Lua, ext_authz, rate limits, ...).
    HttpFilter {
        /// Its index in `http_filters`.
        index: usize,
    },
    /// A virtual host is not carried, or only partly (see the reason).
    VirtualHost {
        /// Index in the route configuration's `virtual_hosts`.
        vhost: usize,
    },
    /// A route is not carried (dropped), or its forwarding differs (see the reason).
    Route {
        /// Virtual host index.
        vhost: usize,
        /// Route index in that virtual host.
        route: usize,
    },
    /// Only the CORS answers of a virtual host (`route: None`) or of one route differ.
    Cors {
        /// Virtual host index.
        vhost: usize,
        /// Route index, or the whole virtual host.
        route: Option<usize>,
    },
    /// A domain could not be carried (requests for it are not routed alike): one of a virtual
    /// host's, or an Ingress host (`vhost: None`).
    Domain {
        /// Virtual host index, for a domain of the Envoy config.
        vhost: Option<usize>,
        /// The domain as written.
        domain: String,
    },
    /// Another listener, filter chain or HTTP connection manager that was not imported.
    OtherListener,
}

/// One thing the import did not carry over, or carried with a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Path of the field in the input, e.g.
    /// `static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[2].route.retry_policy`.
    pub path: String,
    /// What was not carried and why, with the Istio alternative where there is one.
    pub reason: String,
    /// The part of the behaviour it affects.
    pub scope: Scope,
    /// Nothing is lost: the mesh proxy or Kubernetes has its own (admin, stats, codec, service
    /// discovery), or the field never had an effect. `--strict` ignores these.
    pub info: bool,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = if self.info { "info" } else { "not carried" };
        write!(f, "{}: {tag}: {}", self.path, self.reason)
    }
}

/// A JSON value with its path in the input, so every note can name the field.
#[derive(Debug, Clone)]
pub struct At<'a> {
    /// The value (`Null` when absent).
    pub v: &'a Value,
    path: String,
}

static NULL: Value = Value::Null;

impl<'a> At<'a> {
    /// The document root; `name` is the root's path (empty for the file itself).
    pub fn root(v: &'a Value, name: &str) -> Self {
        At {
            v,
            path: name.to_owned(),
        }
    }

    /// The field `key` (`Null` if absent).
    pub fn get(&self, key: &str) -> At<'a> {
        At {
            v: self.v.get(key).unwrap_or(&NULL),
            path: if self.path.is_empty() {
                key.to_owned()
            } else {
                format!("{}.{key}", self.path)
            },
        }
    }

    /// Item `i` of a list.
    pub fn at(&self, i: usize) -> At<'a> {
        At {
            v: self.v.get(i).unwrap_or(&NULL),
            path: format!("{}[{i}]", self.path),
        }
    }

    /// The items of a list (none if it is not one).
    pub fn items(&self) -> Vec<(usize, At<'a>)> {
        let n = self.v.as_array().map_or(0, Vec::len);
        (0..n).map(|i| (i, self.at(i))).collect()
    }

    /// The items of a list, or the value itself when it is one object (Envoy's JSON parser
    /// takes a single message where a list is expected, and configs rely on it).
    pub fn list(&self) -> Vec<(usize, At<'a>)> {
        if self.v.is_object() {
            return vec![(0, self.clone())];
        }
        self.items()
    }

    /// True when the field is absent or `null`.
    pub fn is_null(&self) -> bool {
        self.v.is_null()
    }

    /// A string value.
    pub fn str(&self) -> Option<&'a str> {
        self.v.as_str()
    }

    /// A boolean, also accepting v2's `BoolValue` wrapper (`{value: true}`).
    pub fn bool(&self) -> Option<bool> {
        self.v
            .as_bool()
            .or_else(|| self.v.get("value").and_then(Value::as_bool))
    }

    /// An unsigned number, also accepting a numeric string (`"1728000"`) and `{value: N}`.
    pub fn uint(&self) -> Option<u64> {
        let v = self.v.get("value").unwrap_or(self.v);
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
    }

    /// The object's keys (none if it is not an object).
    pub fn keys(&self) -> Vec<&'a str> {
        self.v
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// The path as text: `a.b[2].c`.
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// The notes of one import, in the order they were found.
#[derive(Debug, Default)]
pub struct Notes {
    /// Everything noted so far.
    pub list: Vec<Note>,
}

impl Notes {
    /// Notes `at` with `scope` and `reason`.
    pub fn add(&mut self, at: &At<'_>, scope: Scope, reason: impl Into<String>) {
        self.list.push(Note {
            path: at.path().to_owned(),
            reason: reason.into(),
            scope,
            info: false,
        });
    }

    /// Notes `at` as information only (see [`Note::info`]).
    pub fn info(&mut self, at: &At<'_>, reason: impl Into<String>) {
        self.list.push(Note {
            path: at.path().to_owned(),
            reason: reason.into(),
            scope: Scope::Unobservable,
            info: true,
        });
    }

    /// Notes every key of `at` that is not in `handled`, with the reason [`known_reason`] gives
    /// (or a generic one, in `fallback` scope). Returns whether anything was noted.
    pub fn rest(&mut self, at: &At<'_>, handled: &[&str], fallback: Scope) -> bool {
        let mut any = false;
        for key in at.keys() {
            if handled.contains(&key) {
                continue;
            }
            let field = at.get(key);
            if let Some(d) = super::defaults::is_default(key, field.v) {
                self.info(&field, super::defaults::reason(key, &d));
                continue;
            }
            let (scope, reason) = match known_reason(key) {
                Some((true, reason)) => (Scope::Unobservable, reason.to_owned()),
                Some((false, reason)) => (fallback.clone(), reason.to_owned()),
                None => (fallback.clone(), "not a MeshConfig feature".to_owned()),
            };
            self.add(&field, scope, reason);
            any = true;
        }
        any
    }
}

/// Why a known Envoy field is not carried: `(unobservable, reason)`. Unobservable fields change
/// nothing the filter is responsible for (routing, CORS, header rules).
pub fn known_reason(key: &str) -> Option<(bool, &'static str)> {
    Some(match key {
        "timeout" | "idle_timeout" | "max_grpc_timeout" | "grpc_timeout_offset"
        | "max_stream_duration" => (
            true,
            "timeouts are not a MeshConfig feature; in Istio set `timeout` on the VirtualService route",
        ),
        "retry_policy" | "hedge_policy" | "include_request_attempt_count"
        | "include_attempt_count_in_response" => (
            true,
            "retries are not a MeshConfig feature; in Istio set `retries` on the VirtualService route",
        ),
        "hash_policy" => (
            true,
            "consistent hashing is load balancing: in Istio a DestinationRule `trafficPolicy.loadBalancer.consistentHash`",
        ),
        "request_mirror_policy" | "request_mirror_policies" => (
            true,
            "mirroring is not a MeshConfig feature; in Istio set `mirror` on the VirtualService route",
        ),
        "rate_limits" | "include_vh_rate_limits" => (
            true,
            "rate limit descriptors need Envoy's rate limit filter and service; in Istio configure rate limiting separately",
        ),
        "priority" | "metadata_match" | "metadata" | "decorator" | "tracing" | "stat_prefix"
        | "per_request_buffer_limit_bytes" | "request_body_buffer_limit" | "virtual_clusters"
        | "early_data_policy" | "upgrade_configs" | "validate_clusters"
        | "cluster_not_found_response_code" | "internal_redirect_policy"
        | "internal_redirect_action" | "max_internal_redirects" => (
            true,
            "stats, tracing, metadata, buffering and connection-upgrade settings are not routing; the mesh proxy has its own",
        ),
        "require_tls" => (
            false,
            "requiring TLS is the gateway's job: in Istio set `tls.httpsRedirect: true` on the Gateway server",
        ),
        "weighted_clusters" => (
            false,
            "traffic splitting is not a MeshConfig feature: in Istio use weighted `route` destinations on a VirtualService; route not carried",
        ),
        "cluster_header" | "cluster_specifier_plugin" | "inline_cluster_specifier_plugin" => (
            false,
            "choosing the cluster from a header or a plugin is not a MeshConfig feature; route not carried",
        ),
        "regex_rewrite" | "path_rewrite_policy" => (
            false,
            "regex and template path rewrites are not a MeshConfig feature (only prefixRewrite); route not carried",
        ),
        "auto_host_rewrite" | "host_rewrite_header" | "host_rewrite_path_regex" => (
            false,
            "only a literal hostRewrite is a MeshConfig feature; the Host sent upstream differs",
        ),
        "append_x_forwarded_host" => (
            false,
            "x-forwarded-host on host rewrites is not a MeshConfig feature; the upstream does not get it",
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_keys_and_indexes() {
        let v: Value = serde_json::json!({"a": {"b": [{"c": 1}, {"d": true}]}});
        let root = At::root(&v, "");
        let b = root.get("a").get("b");
        let d = b.at(1);
        assert_eq!(d.get("d").path(), "a.b[1].d");
        assert_eq!(d.get("d").bool(), Some(true));
        assert!(b.at(5).is_null());
        let named = At::root(&v, "file");
        assert_eq!(named.get("a").path(), "file.a");
    }

    #[test]
    fn rest_notes_unhandled_fields_with_known_reasons() {
        let v: Value = serde_json::json!({"cluster": "x", "timeout": "1s", "weighted_clusters": {}, "bogus": 1});
        let at = At::root(&v, "r");
        let mut notes = Notes::default();
        assert!(notes.rest(&at, &["cluster"], Scope::Route { vhost: 0, route: 0 }));
        let got: Vec<(&str, &Scope)> = notes
            .list
            .iter()
            .map(|n| (n.path.as_str(), &n.scope))
            .collect();
        assert_eq!(
            got,
            vec![
                ("r.bogus", &Scope::Route { vhost: 0, route: 0 }),
                ("r.timeout", &Scope::Unobservable),
                ("r.weighted_clusters", &Scope::Route { vhost: 0, route: 0 }),
            ]
        );
        assert!(notes.list[2].reason.contains("VirtualService"));
    }
}
