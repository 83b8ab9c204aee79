//! Reading a standalone Envoy's static bootstrap (v3, and the v2 names older configs use): which
//! HTTP connection manager to import, its HTTP filters, host matching, and where clusters point.

use super::notes::{At, Notes, Scope};
use super::ImportError;
use serde_json::Value;
use std::collections::BTreeMap;

/// The HTTP connection manager chosen for import and what the route conversion needs from it.
#[derive(Debug)]
pub struct Hcm<'a> {
    /// The manager's config object (`typed_config` or v2's `config`).
    pub at: At<'a>,
    /// `static_resources.listeners[N]`.
    pub listener: usize,
    /// The listener's port, if given as a number.
    pub port: Option<u16>,
    /// The CORS filter is in `http_filters` (without it, CORS policies do nothing).
    pub cors_filter: bool,
    /// The gRPC-Web filter is in `http_filters`.
    pub grpc_web: bool,
    /// Host matching ignores a `:port` (`strip_any_host_port` or the route configuration's
    /// `ignore_port_in_host_matching`).
    pub ignore_port: bool,
    /// Host matching ignores a trailing dot (`strip_trailing_host_dot`).
    pub ignore_trailing_dot: bool,
    /// The original also rewrote the Host header it forwarded (the `strip_*` settings do).
    pub strips_host_header: bool,
}

/// Where an Envoy cluster's traffic goes in the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterTarget {
    /// A Kubernetes service port (`server:6000`, `svc.ns.svc.cluster.local:8080`).
    Service {
        /// Service name as written in the cluster (short or FQDN).
        service: String,
        /// Port.
        port: u16,
        /// The cluster spoke HTTP/2 to it (`http2_protocol_options`, or explicit HTTP/2 in
        /// its `HttpProtocolOptions`).
        http2: bool,
    },
    /// Kept as a raw cluster name: the address is not a Kubernetes service.
    Raw,
}

/// Is `name` the HTTP connection manager, by filter name or `@type`?
fn is_hcm(filter: &At<'_>) -> bool {
    let name = filter.get("name").str().unwrap_or_default();
    let ty = type_of(&filter.get("typed_config"));
    matches!(
        name,
        "envoy.filters.network.http_connection_manager" | "envoy.http_connection_manager"
    ) || ty.ends_with(".HttpConnectionManager")
}

/// The `@type` of a typed config (empty if none).
pub fn type_of<'a>(typed: &At<'a>) -> &'a str {
    typed.get("@type").str().unwrap_or_default()
}

/// The config object of a filter: v3 `typed_config`, else v2 `config`.
fn config_of<'a>(filter: &At<'a>) -> At<'a> {
    let typed = filter.get("typed_config");
    if typed.is_null() {
        filter.get("config")
    } else {
        typed
    }
}

/// What an HTTP filter entry is, by its name or `@type` (v2 and v3 spellings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpFilterKind {
    /// `envoy.filters.http.router` / `envoy.router`.
    Router,
    /// `envoy.filters.http.cors` / `envoy.cors`.
    Cors,
    /// `envoy.filters.http.grpc_web` / `envoy.grpc_web`.
    GrpcWeb,
    /// Anything else.
    Other,
}

/// Classifies an `http_filters` entry.
pub fn http_filter_kind(filter: &At<'_>) -> HttpFilterKind {
    let name = filter.get("name").str().unwrap_or_default();
    let ty = type_of(&filter.get("typed_config"));
    let is = |short: &str, ty_part: &str| {
        name == format!("envoy.filters.http.{short}")
            || name == format!("envoy.{short}")
            || ty.contains(ty_part)
    };
    if is("router", ".router.") {
        HttpFilterKind::Router
    } else if is("cors", ".http.cors.") {
        HttpFilterKind::Cors
    } else if is("grpc_web", ".grpc_web.") {
        HttpFilterKind::GrpcWeb
    } else {
        HttpFilterKind::Other
    }
}

fn filter_hint(name: &str) -> &'static str {
    let n = name.rsplit('.').next().unwrap_or(name);
    match n {
        "lua" => "Lua scripts do not translate to a declarative config; in Istio keep it as an EnvoyFilter of its own",
        "ext_authz" | "jwt_authn" | "rbac" | "oauth2" => "authentication and authorization are Istio's: RequestAuthentication and AuthorizationPolicy",
        "ratelimit" | "local_ratelimit" => "rate limiting is configured separately in Istio (EnvoyFilter with the rate limit filter)",
        "fault" => "fault injection is Istio's: `fault` on the VirtualService route",
        "csrf" => "CSRF checks are not a MeshConfig feature; keep an EnvoyFilter with the CSRF filter",
        "health_check" => "health checks are Kubernetes probes in the mesh",
        "gzip" | "compressor" | "decompressor" => "compression is a proxy setting; in Istio an EnvoyFilter adding the compressor",
        "grpc_json_transcoder" => "gRPC-JSON transcoding is not a MeshConfig feature; keep an EnvoyFilter with the transcoder",
        _ => "not a MeshConfig feature; in Istio add it with an EnvoyFilter of its own",
    }
}

/// HCM fields the import reads (everything else is noted).
const HCM_HANDLED: &[&str] = &[
    "@type",
    "route_config",
    "http_filters",
    "strip_any_host_port",
    "strip_trailing_host_dot",
];
/// HCM fields that are the proxy's settings, not routing: noted as [`Scope::Proxy`].
const HCM_PROXY: &[&str] = &[
    "use_remote_address",
    "xff_num_trusted_hops",
    "skip_xff_append",
    "via",
    "generate_request_id",
    "preserve_external_request_id",
    "always_set_request_id_in_response",
    "normalize_path",
    "merge_slashes",
    "path_with_escaped_slashes_action",
    "server_name",
    "server_header_transformation",
    "add_user_agent",
    "forward_client_cert_details",
    "set_current_client_cert_details",
    "local_reply_config",
    "strip_matching_host_port",
    "internal_address_config",
    "proxy_100_continue",
    "represent_ipv4_remote_address_as_ipv4_mapped_ipv6",
    "early_header_mutation_extensions",
    "request_id_extension",
];

/// How a listener is named on the command line: its `name`, else `listeners[N]`.
pub fn listener_label(li: usize, listener: &At<'_>) -> String {
    match listener.get("name").str() {
        Some(n) if !n.is_empty() => n.to_owned(),
        _ => format!("listeners[{li}]"),
    }
}

/// Whether `wanted` (a `--listener` value: its name, `listeners[N]` or `N`) names listener
/// `li`.
fn is_listener(wanted: &str, li: usize, listener: &At<'_>) -> bool {
    listener.get("name").str() == Some(wanted)
        || wanted == format!("listeners[{li}]")
        || wanted.parse::<usize>().ok() == Some(li)
}

/// Finds the HTTP connection manager to import: the first one on the listener `listener`
/// names, else the first on `port` when given (the port the Ingress sends to), else the first
/// one. Every other manager, listener detail and filter is noted.
pub fn find_hcm<'a>(
    root: &At<'a>,
    port: Option<u16>,
    listener: Option<&str>,
    notes: &mut Notes,
) -> Result<Hcm<'a>, ImportError> {
    let mut found: Vec<(usize, At<'a>, At<'a>, Option<u16>)> = Vec::new();
    let listeners = root.get("static_resources").get("listeners");
    if let Some(wanted) = listener {
        if !listeners
            .list()
            .iter()
            .any(|(li, l)| is_listener(wanted, *li, l))
        {
            let known: Vec<String> = listeners
                .list()
                .iter()
                .map(|(li, l)| listener_label(*li, l))
                .collect();
            return Err(ImportError::NoListener {
                wanted: wanted.to_owned(),
                known: match known.is_empty() {
                    true => "none".to_owned(),
                    false => known.join(", "),
                },
            });
        }
    }
    for (li, listener) in listeners.list() {
        let lport = listener
            .get("address")
            .get("socket_address")
            .get("port_value")
            .uint()
            .and_then(|p| u16::try_from(p).ok());
        for (_, chain) in listener.get("filter_chains").items() {
            for (_, f) in chain.get("filters").items() {
                if is_hcm(&f) {
                    found.push((li, f.clone(), chain.clone(), lport));
                }
            }
        }
    }
    if found.is_empty() {
        let why = if root.get("dynamic_resources").is_null() {
            "no listener in static_resources.listeners has an HTTP connection manager"
        } else {
            "only static_resources are read, and no static listener has an HTTP connection manager (this config uses dynamic_resources: export the routes it receives, e.g. from the admin /config_dump, and import that)"
        };
        return Err(ImportError::nothing(why, notes));
    }
    let chosen = |wanted: &str| {
        found.iter().position(|(li, _, _, _)| {
            listeners
                .list()
                .iter()
                .any(|(i, l)| i == li && is_listener(wanted, *i, l))
        })
    };
    let pick = match listener {
        Some(wanted) => chosen(wanted).ok_or_else(|| {
            ImportError::nothing(
                &format!("listener `{wanted}` has no HTTP connection manager"),
                notes,
            )
        })?,
        None => port
            .and_then(|p| found.iter().position(|(_, _, _, lp)| *lp == Some(p)))
            .unwrap_or(0),
    };
    let (listener, filter, chain, lport) = found[pick].clone();
    let at = config_of(&filter);
    for (i, (li, other, _, _)) in found.iter().enumerate() {
        if i == pick {
            continue;
        }
        let same = config_of(other).get("route_config").v == at.get("route_config").v;
        if same {
            notes.info(other, format!("same routes as the imported one (listeners[{listener}]); one MeshConfig covers both"));
        } else {
            let label = listeners
                .list()
                .into_iter()
                .find(|(i, _)| i == li)
                .map_or_else(
                    || format!("listeners[{li}]"),
                    |(i, l)| listener_label(i, &l),
                );
            notes.add(other, Scope::OtherListener, format!("another HTTP listener (listeners[{li}]) with other routes; not imported (one MeshConfig per listener: import it with --listener {label})"));
        }
    }
    let l = listeners
        .list()
        .into_iter()
        .find(|(i, _)| *i == listener)
        .map_or_else(|| listeners.at(listener), |(_, l)| l);
    for key in ["listener_filters", "transport_socket"] {
        if !l.get(key).is_null() {
            notes.add(
                &l.get(key),
                Scope::Connection,
                "listener TLS and inspection are the gateway's job in Istio (Gateway `tls`)",
            );
        }
    }
    if !chain.get("transport_socket").is_null() {
        notes.add(
            &chain.get("transport_socket"),
            Scope::Connection,
            "TLS termination is the gateway's job in Istio (Gateway `servers[].tls`)",
        );
    }
    if !chain.get("filter_chain_match").is_null() {
        notes.add(
            &chain.get("filter_chain_match"),
            Scope::Connection,
            "filter chain selection (SNI, ports, sources) is not a MeshConfig feature",
        );
    }
    for (_, f) in chain.get("filters").items() {
        if !is_hcm(&f) {
            let name = f.get("name").str().unwrap_or("?").to_owned();
            notes.add(
                &f,
                Scope::Connection,
                format!("network filter `{name}` is not a MeshConfig feature"),
            );
        }
    }
    if type_of(&filter.get("typed_config")).contains(".v2.") || !filter.get("config").is_null() {
        notes.info(
            &filter,
            "v2 API: read with its v2 field names as the v3 equivalents",
        );
    }
    let mut hcm = Hcm {
        at: at.clone(),
        listener,
        port: lport,
        cors_filter: false,
        grpc_web: false,
        ignore_port: false,
        ignore_trailing_dot: false,
        strips_host_header: false,
    };
    read_http_filters(&mut hcm, notes);
    let strip_port = at.get("strip_any_host_port").bool().unwrap_or(false);
    let ignore_port = at
        .get("route_config")
        .get("ignore_port_in_host_matching")
        .bool()
        .unwrap_or(false);
    hcm.ignore_port = strip_port || ignore_port;
    hcm.ignore_trailing_dot = at.get("strip_trailing_host_dot").bool().unwrap_or(false);
    hcm.strips_host_header = strip_port || hcm.ignore_trailing_dot;
    if hcm.strips_host_header {
        notes.add(&at, Scope::Unobservable, "strip_any_host_port / strip_trailing_host_dot: carried as hostMatching (matching ignores them); unlike Envoy, the filter forwards the Host header as the client sent it");
    }
    if !at.get("rds").is_null() {
        return Err(ImportError::nothing(
            &format!(
                "{}: routes come from RDS (a management server), not from the file; export the route configuration (admin /config_dump) and import a config with an inline route_config",
                at.get("rds").path()
            ),
            notes,
        ));
    }
    for key in at.keys() {
        if HCM_HANDLED.contains(&key) {
            continue;
        }
        let field = at.get(key);
        if let Some(d) = super::defaults::is_default(key, field.v) {
            notes.info(&field, super::defaults::reason(key, &d));
        } else if HCM_PROXY.contains(&key) {
            notes.add(&field, Scope::Proxy, format!("`{key}` is a setting of the proxy, not of the filter: in Istio it comes from the mesh or gateway configuration"));
        } else if ["codec_type", "stat_prefix", "access_log", "tracing"].contains(&key) {
            notes.info(&field, format!("`{key}`: the mesh proxy has its own codec, stats, access log and tracing settings"));
        } else {
            notes.add(&field, Scope::Unobservable, format!("`{key}` (timeouts, limits, protocol options) is the proxy's own setting in the mesh"));
        }
    }
    Ok(hcm)
}

fn read_http_filters(hcm: &mut Hcm<'_>, notes: &mut Notes) {
    let filters = hcm.at.get("http_filters");
    for (i, f) in filters.items() {
        if f.get("disabled").bool() == Some(true) {
            notes.info(&f, "disabled by default here, so it had no effect");
            continue;
        }
        match http_filter_kind(&f) {
            HttpFilterKind::Router => {}
            HttpFilterKind::Cors => hcm.cors_filter = true,
            HttpFilterKind::GrpcWeb => hcm.grpc_web = true,
            HttpFilterKind::Other => {
                let name = f.get("name").str().unwrap_or("?");
                notes.add(
                    &f,
                    Scope::HttpFilter { index: i },
                    format!("HTTP filter `{name}`: {}", filter_hint(name)),
                );
            }
        }
    }
}

/// A host name that is a Kubernetes service: one DNS label (`server`, as docker-compose and
/// Kubernetes both resolve), or a name under `.svc` (`server.ns.svc.cluster.local`).
pub fn is_service_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if h == "localhost" || h.parse::<std::net::IpAddr>().is_ok() || !h.split('.').all(label) {
        return false;
    }
    let labels: Vec<&str> = h.split('.').collect();
    labels.len() == 1 || (labels.len() >= 3 && labels[2] == "svc")
}

/// Reads every static cluster's endpoints and decides its mesh target. Only clusters in
/// `used` get notes (the others are not referenced by anything imported).
pub fn clusters(
    root: &At<'_>,
    used: &[String],
    notes: &mut Notes,
) -> BTreeMap<String, ClusterTarget> {
    let mut out = BTreeMap::new();
    for (_, c) in root.get("static_resources").get("clusters").list() {
        let Some(name) = c.get("name").str() else {
            continue;
        };
        let mut addrs: Vec<(String, u64)> = Vec::new();
        let mut push = |sa: &At<'_>| {
            if let (Some(a), Some(p)) = (sa.get("address").str(), sa.get("port_value").uint()) {
                if !addrs.iter().any(|(x, y)| x == a && *y == p) {
                    addrs.push((a.to_owned(), p));
                }
            }
        };
        for (_, e) in c.get("load_assignment").get("endpoints").items() {
            for (_, lb) in e.get("lb_endpoints").items() {
                push(&lb.get("endpoint").get("address").get("socket_address"));
            }
        }
        for (_, h) in c.get("hosts").items() {
            push(&h.get("socket_address"));
        }
        let target = match addrs.as_slice() {
            [(a, p)] if is_service_name(a) => match u16::try_from(*p) {
                Ok(port) if port > 0 => ClusterTarget::Service {
                    service: a.trim_end_matches('.').to_owned(),
                    port,
                    http2: speaks_http2(&c),
                },
                _ => ClusterTarget::Raw,
            },
            _ => ClusterTarget::Raw,
        };
        let referenced = used.iter().any(|u| u == name);
        if referenced {
            if target == ClusterTarget::Raw {
                let shown: Vec<String> = addrs.iter().map(|(a, p)| format!("{a}:{p}")).collect();
                notes.add(&c, Scope::Unobservable, format!(
                    "endpoints [{}] are not one Kubernetes service, so routes keep the raw cluster name `{name}`: in Istio that cluster must exist (a ServiceEntry's `outbound|PORT||HOST`), or change the route to `to: {{service, port}}`",
                    shown.join(", ")
                ));
            }
            note_cluster_settings(&c, notes);
        }
        out.insert(name.to_owned(), target);
    }
    out
}

/// Whether a cluster speaks HTTP/2 upstream: v2/v3 `http2_protocol_options`, or an
/// `HttpProtocolOptions` extension with explicit HTTP/2.
fn speaks_http2(c: &At<'_>) -> bool {
    if !c.get("http2_protocol_options").is_null() {
        return true;
    }
    c.get("typed_extension_protocol_options")
        .keys()
        .into_iter()
        .any(|k| {
            let o = c.get("typed_extension_protocol_options").get(k);
            k.ends_with("upstreams.http.v3.HttpProtocolOptions")
                && !o
                    .get("explicit_http_config")
                    .get("http2_protocol_options")
                    .is_null()
        })
}

fn note_cluster_settings(c: &At<'_>, notes: &mut Notes) {
    for key in c.keys() {
        if let Some(d) = super::defaults::is_default(key, c.get(key).v) {
            notes.info(&c.get(key), super::defaults::reason(key, &d));
            continue;
        }
        let why = match key {
            "name" | "load_assignment" | "hosts" => continue,
            "type" | "dns_lookup_family" | "respect_dns_ttl" | "dns_refresh_rate" => {
                notes.info(&c.get(key), "service discovery is Kubernetes' in the mesh");
                continue;
            }
            "transport_socket" | "tls_context" => {
                "upstream TLS: the mesh does mTLS itself; for an external service use a DestinationRule `tls`"
            }
            "http2_protocol_options" | "typed_extension_protocol_options"
                if speaks_http2(c) =>
            {
                notes.info(&c.get(key), "HTTP/2 to the upstream: carried (`to.http2: true`, which a `grpcWeb` route implies): kubectl-mesh makes Istio's cluster speak HTTP/2 whatever the Service port is named");
                continue;
            }
            "http2_protocol_options" | "typed_extension_protocol_options" | "http_protocol_options"
            | "protocol_selection" | "upstream_http_protocol_options" | "common_http_protocol_options" => {
                "the upstream protocol comes from the Service port name or appProtocol in Istio (e.g. `grpc-...` or appProtocol: grpc for HTTP/2)"
            }
            _ => "load balancing, timeouts, health checks and circuit breaking are a DestinationRule's job in Istio",
        };
        notes.add(&c.get(key), Scope::Unobservable, why);
    }
}

/// Reads the top level: notes what is not a listener or a cluster.
pub fn note_top_level(root: &At<'_>, notes: &mut Notes) {
    for key in root.keys() {
        let field = root.get(key);
        match key {
            "static_resources" => {
                for k in field.keys() {
                    if !["listeners", "clusters"].contains(&k) {
                        notes.add(&field.get(k), Scope::Unobservable, "secrets and other static resources are not routing");
                    }
                }
            }
            "dynamic_resources" => notes.add(&field, Scope::OtherListener, "dynamic resources (xDS) are not read: only static_resources"),
            _ => notes.info(&field, "bootstrap setting of the proxy (admin, runtime, stats, tracing, node); the mesh proxy has its own"),
        }
    }
}

/// Parses the text of an Envoy config file (YAML or JSON).
pub fn parse(file: &str, text: &str) -> Result<Value, ImportError> {
    serde_yaml_ng::from_str::<Value>(text).map_err(|e| ImportError::Parse {
        file: file.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        for yes in [
            "server",
            "node-server",
            "svc.ns.svc.cluster.local",
            "svc.ns.svc",
            "Server.",
        ] {
            assert!(is_service_name(yes), "{yes}");
        }
        for no in [
            "localhost",
            "127.0.0.1",
            "::1",
            "www.google.com",
            "svc.ns",
            "host.docker.internal",
            "a_b",
            "",
        ] {
            assert!(!is_service_name(no), "{no}");
        }
    }

    #[test]
    fn filters_by_v2_and_v3_names() {
        for (json, kind) in [
            (r#"{"name":"envoy.grpc_web"}"#, HttpFilterKind::GrpcWeb),
            (
                r#"{"name":"envoy.filters.http.cors","typed_config":{}}"#,
                HttpFilterKind::Cors,
            ),
            (
                r#"{"name":"x","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}"#,
                HttpFilterKind::Router,
            ),
            (r#"{"name":"envoy.lua"}"#, HttpFilterKind::Other),
        ] {
            let v: Value = serde_json::from_str(json).unwrap();
            assert_eq!(http_filter_kind(&At::root(&v, "")), kind, "{json}");
        }
    }
}
