//! Virtual hosts and routes: Envoy's route configuration becomes MeshConfig hosts, with route
//! matches, actions (forward, redirect, direct response), CORS and header rules.

use super::cors;
use super::envoy::{ClusterTarget, Hcm, HttpFilterKind};
use super::headers::{compose, Side};
use super::notes::{At, Notes, Scope};
use super::strings::{escape, regex_of, string_matcher, StringMatch};
use mesh_core::config::{
    CorsConfig, DirectResponse, HeaderMatch, HostConfig, Redirect, RouteConfig, RouteMatch, Target,
};
use mesh_core::cors::{GRPC_WEB_ALLOW_HEADERS, GRPC_WEB_EXPOSE_HEADERS};
use std::collections::BTreeMap;

/// One imported virtual host.
#[derive(Debug, Clone)]
pub struct ImportedHost {
    /// Index in `route_config.virtual_hosts`.
    pub vhost: usize,
    /// The host, with the domains that could be carried.
    pub host: HostConfig,
}

/// What the conversion reads from the manager and the clusters.
pub struct Ctx<'a> {
    /// The manager.
    pub hcm: &'a Hcm<'a>,
    /// Cluster name -> mesh target.
    pub clusters: &'a BTreeMap<String, ClusterTarget>,
    /// `http_filters` names of the CORS filter (keys of `typed_per_filter_config`).
    pub cors_names: Vec<String>,
    /// `http_filters` names of the gRPC-Web filter.
    pub grpc_web_names: Vec<String>,
}

impl<'a> Ctx<'a> {
    /// The context for `hcm`.
    pub fn new(hcm: &'a Hcm<'a>, clusters: &'a BTreeMap<String, ClusterTarget>) -> Self {
        let names = |kind: HttpFilterKind| {
            let mut v: Vec<String> = hcm
                .at
                .get("http_filters")
                .items()
                .into_iter()
                .filter(|(_, f)| super::envoy::http_filter_kind(f) == kind)
                .filter_map(|(_, f)| f.get("name").str().map(str::to_owned))
                .collect();
            let canonical = match kind {
                HttpFilterKind::Cors => "envoy.filters.http.cors",
                _ => "envoy.filters.http.grpc_web",
            };
            v.push(canonical.to_owned());
            v
        };
        Ctx {
            hcm,
            clusters,
            cors_names: names(HttpFilterKind::Cors),
            grpc_web_names: names(HttpFilterKind::GrpcWeb),
        }
    }
}

/// Every cluster a route of the manager names (before conversion, to note only those).
pub fn referenced_clusters(hcm: &Hcm<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for (_, vh) in hcm.at.get("route_config").get("virtual_hosts").items() {
        for (_, r) in vh.get("routes").items() {
            if let Some(c) = r.get("route").get("cluster").str() {
                out.push(c.to_owned());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A MeshConfig domain for an Envoy domain, or why it has none.
pub fn domain(d: &str) -> Result<String, String> {
    let star = d.matches('*').count();
    let ok = d == "*" || star == 0 || (star == 1 && d.starts_with("*.") && d.len() > 2);
    if !ok {
        return Err(format!("Envoy wildcard `{d}`: MeshConfig has exact names, `*.domain` and `*` only; requests for it are not routed to this host"));
    }
    Ok(d.to_ascii_lowercase())
}

/// Converts the manager's route configuration.
pub fn virtual_hosts(ctx: &Ctx<'_>, notes: &mut Notes) -> Vec<ImportedHost> {
    let rc = ctx.hcm.at.get("route_config");
    notes.rest(
        &rc,
        &[
            "name",
            "virtual_hosts",
            "most_specific_header_mutations_wins",
            "ignore_port_in_host_matching",
            "request_headers_to_add",
            "request_headers_to_remove",
            "response_headers_to_add",
            "response_headers_to_remove",
            "typed_per_filter_config",
        ],
        Scope::Connection,
    );
    let config_cors = typed_cors(ctx, &rc, &Scope::Connection, notes);
    let mut out = Vec::new();
    for (v, vh) in rc.get("virtual_hosts").items() {
        if let Some(h) = virtual_host(ctx, &rc, config_cors.as_ref(), v, &vh, notes) {
            out.push(ImportedHost { vhost: v, host: h });
        }
    }
    out
}

fn virtual_host(
    ctx: &Ctx<'_>,
    rc: &At<'_>,
    config_cors: Option<&CorsConfig>,
    v: usize,
    vh: &At<'_>,
    notes: &mut Notes,
) -> Option<HostConfig> {
    notes.rest(
        vh,
        &[
            "name",
            "domains",
            "routes",
            "cors",
            "typed_per_filter_config",
            "per_filter_config",
            "request_headers_to_add",
            "request_headers_to_remove",
            "response_headers_to_add",
            "response_headers_to_remove",
        ],
        Scope::VirtualHost { vhost: v },
    );
    let mut domains = Vec::new();
    for (_, d) in vh.get("domains").items() {
        let Some(text) = d.str() else { continue };
        match domain(text) {
            Ok(x) => domains.push(x),
            Err(why) => notes.add(
                &d,
                Scope::Domain {
                    vhost: v,
                    domain: text.to_owned(),
                },
                why,
            ),
        }
    }
    let vs = Scope::Cors {
        vhost: v,
        route: None,
    };
    let levels = CorsLevels {
        config: config_cors.cloned(),
        vhost: typed_cors(ctx, vh, &vs, notes),
        legacy_vhost: (!vh.get("cors").is_null())
            .then(|| cors::convert(&vh.get("cors"), &vs, notes))
            .flatten(),
    };
    let mut routes: Vec<(usize, RouteConfig, Option<CorsConfig>)> = Vec::new();
    for (r, route) in vh.get("routes").items() {
        if let Some(x) = convert_route(ctx, rc, vh, &levels, v, r, &route, notes) {
            routes.push((r, x.0, x.1));
        }
    }
    if domains.is_empty() || routes.is_empty() {
        let why = if domains.is_empty() {
            "none of its domains can be carried"
        } else {
            "none of its routes can be carried"
        };
        notes.add(
            vh,
            Scope::VirtualHost { vhost: v },
            format!("virtual host not carried: {why}"),
        );
        return None;
    }
    let mut host = HostConfig {
        name: vh.get("name").str().map(str::to_owned),
        domains,
        cors: None,
        request_headers: Default::default(),
        response_headers: Default::default(),
        routes: Vec::new(),
    };
    // The effective CORS policy goes on each forwarding route; when they all share one, it
    // moves up to the host, which reads like the original.
    let forwarding: Vec<&Option<CorsConfig>> = routes
        .iter()
        .filter(|(_, r, _)| r.to.is_some())
        .map(|(_, _, c)| c)
        .collect();
    let shared = forwarding
        .first()
        .filter(|first| first.is_some() && forwarding.iter().all(|c| c == *first))
        .and_then(|c| (*c).clone());
    for (_, mut r, c) in routes {
        if shared.is_none() && r.to.is_some() {
            r.cors = c;
        }
        host.routes.push(r);
    }
    host.cors = shared;
    // The same for header rules: composed per route, moved up when every route has the same.
    for side in [Side::Request, Side::Response] {
        let pick = |r: &RouteConfig| match side {
            Side::Request => r.request_headers.clone(),
            Side::Response => r.response_headers.clone(),
        };
        let first = host.routes.first().map(pick).unwrap_or_default();
        if host.routes.len() > 1
            && !first.is_empty()
            && host.routes.iter().all(|r| pick(r) == first)
        {
            for r in &mut host.routes {
                match side {
                    Side::Request => r.request_headers = Default::default(),
                    Side::Response => r.response_headers = Default::default(),
                }
            }
            match side {
                Side::Request => host.request_headers = first,
                Side::Response => host.response_headers = first,
            }
        }
    }
    Some(host)
}

/// The typed CORS policy (or a disabled filter config) in a `typed_per_filter_config`, and the
/// legacy `per_filter_config` of v2.
fn typed_cors(ctx: &Ctx<'_>, at: &At<'_>, scope: &Scope, notes: &mut Notes) -> Option<CorsConfig> {
    for key in ["typed_per_filter_config", "per_filter_config"] {
        let tpfc = at.get(key);
        for name in &ctx.cors_names {
            let p = tpfc.get(name);
            if p.is_null() {
                continue;
            }
            if p.get("disabled").bool() == Some(true) {
                return Some(CorsConfig {
                    enabled: Some(false),
                    ..Default::default()
                });
            }
            let inner = p.get("config");
            let policy = if inner.is_null() { p } else { inner };
            return cors::convert(&policy, scope, notes);
        }
    }
    None
}

/// The CORS policies above the routes of one virtual host, each converted (and noted) once.
#[derive(Debug, Default)]
struct CorsLevels {
    /// Typed policy on the route configuration.
    config: Option<CorsConfig>,
    /// Typed policy on the virtual host.
    vhost: Option<CorsConfig>,
    /// Legacy `cors` field of the virtual host.
    legacy_vhost: Option<CorsConfig>,
}

/// A route's effective CORS policy, from the levels Envoy's CORS filter reads: typed
/// per-filter configs if any level has one, else the legacy `cors` fields.
fn route_cors(
    ctx: &Ctx<'_>,
    levels: &CorsLevels,
    v: usize,
    r: usize,
    route: &At<'_>,
    notes: &mut Notes,
) -> Option<CorsConfig> {
    let rs = Scope::Cors {
        vhost: v,
        route: Some(r),
    };
    let route_typed = typed_cors(ctx, route, &rs, notes);
    let legacy_route = (!route.get("route").get("cors").is_null())
        .then(|| cors::convert(&route.get("route").get("cors"), &rs, notes))
        .flatten();
    let any_typed = levels.config.is_some() || levels.vhost.is_some() || route_typed.is_some();
    let policy = if any_typed {
        cors::effective(&[
            levels.config.as_ref(),
            levels.vhost.as_ref(),
            route_typed.as_ref(),
        ])
    } else {
        cors::effective(&[levels.legacy_vhost.as_ref(), legacy_route.as_ref()])
    }?;
    if !ctx.hcm.cors_filter {
        notes.info(route, "a CORS policy applies here, but the listener has no CORS filter, so it never had an effect");
        return None;
    }
    if cors::allows_nothing(&policy) {
        return Some(CorsConfig {
            enabled: Some(false),
            ..Default::default()
        });
    }
    Some(policy)
}

/// Converts one route: `(route, its effective CORS policy)`, or `None` (noted) when it cannot
/// be carried.
#[allow(clippy::too_many_arguments)]
fn convert_route(
    ctx: &Ctx<'_>,
    rc: &At<'_>,
    vh: &At<'_>,
    levels: &CorsLevels,
    v: usize,
    r: usize,
    route: &At<'_>,
    notes: &mut Notes,
) -> Option<(RouteConfig, Option<CorsConfig>)> {
    let scope = Scope::Route { vhost: v, route: r };
    let drop = |notes: &mut Notes, at: &At<'_>, why: String| {
        notes.add(at, scope.clone(), format!("{why}; route not carried"));
        None
    };
    notes.rest(
        route,
        &[
            "name",
            "match",
            "route",
            "redirect",
            "direct_response",
            "request_headers_to_add",
            "request_headers_to_remove",
            "response_headers_to_add",
            "response_headers_to_remove",
            "typed_per_filter_config",
            "per_filter_config",
        ],
        scope.clone(),
    );
    let m = match route_match(&route.get("match"), &scope, notes) {
        Ok(m) => m,
        Err(why) => return drop(notes, &route.get("match"), why),
    };
    let mut out = RouteConfig {
        name: route.get("name").str().map(str::to_owned),
        matches: m,
        grpc_web: false,
        cors: None,
        request_headers: Default::default(),
        response_headers: Default::default(),
        to: None,
        direct_response: None,
        redirect: None,
    };
    let mut cluster = None;
    let action = route.get("route");
    if !action.is_null() {
        notes.rest(
            &action,
            &[
                "cluster",
                "prefix_rewrite",
                "host_rewrite_literal",
                "host_rewrite",
                "cors",
            ],
            scope.clone(),
        );
        let Some(c) = action.get("cluster").str() else {
            return drop(notes, &action, "the route does not name one cluster".into());
        };
        cluster = Some(c.to_owned());
        let host_rewrite = action
            .get("host_rewrite_literal")
            .str()
            .or(action.get("host_rewrite").str())
            .map(str::to_owned);
        let target = match ctx.clusters.get(c) {
            Some(ClusterTarget::Service { service, port }) => Target {
                service: Some(service.clone()),
                port: Some(*port),
                cluster: None,
                prefix_rewrite: None,
                host_rewrite: None,
            },
            found => {
                if found.is_none() {
                    notes.add(&action.get("cluster"), Scope::Unobservable, format!("cluster `{c}` is not in static_resources.clusters; kept as a raw cluster name"));
                }
                Target {
                    service: None,
                    port: None,
                    cluster: Some(c.to_owned()),
                    prefix_rewrite: None,
                    host_rewrite: None,
                }
            }
        };
        out.to = Some(Target {
            prefix_rewrite: action.get("prefix_rewrite").str().map(str::to_owned),
            host_rewrite,
            ..target
        });
        out.grpc_web = ctx.hcm.grpc_web && !grpc_web_disabled(ctx, route);
    } else if !route.get("redirect").is_null() {
        match redirect(&route.get("redirect")) {
            Ok(rd) => out.redirect = Some(rd),
            Err(why) => return drop(notes, &route.get("redirect"), why),
        }
    } else if !route.get("direct_response").is_null() {
        match direct_response(&route.get("direct_response")) {
            Ok(d) => out.direct_response = Some(d),
            Err(why) => return drop(notes, &route.get("direct_response"), why),
        }
    } else {
        return drop(
            notes,
            route,
            "no route, redirect or direct_response action MeshConfig has".into(),
        );
    }
    let most_specific = rc
        .get("most_specific_header_mutations_wins")
        .bool()
        .unwrap_or(false);
    let mut header_levels = vec![route.clone(), vh.clone(), rc.clone()];
    if most_specific {
        header_levels.reverse();
    }
    let c = cluster.as_deref();
    out.request_headers = compose(&header_levels, Side::Request, c, &scope, notes);
    out.response_headers = compose(&header_levels, Side::Response, c, &scope, notes);
    let policy = route_cors(ctx, levels, v, r, route, notes);
    if out.grpc_web {
        if let Some(p) = policy.as_ref().filter(|p| p.enabled != Some(false)) {
            let lacks = |list: &[String], wanted: &[&str]| {
                list.iter().any(|x| x == "*")
                    || wanted
                        .iter()
                        .any(|w| !list.iter().any(|x| x.eq_ignore_ascii_case(w)))
            };
            if lacks(&p.allow_headers, GRPC_WEB_ALLOW_HEADERS)
                || lacks(&p.expose_headers, GRPC_WEB_EXPOSE_HEADERS)
            {
                notes.add(route, Scope::Cors { vhost: v, route: Some(r) }, format!(
                    "grpcWeb: true (the listener has the gRPC-Web filter) also allows the headers {} and exposes {} on this route's CORS answers, which the original's policy did not",
                    GRPC_WEB_ALLOW_HEADERS.join(", "),
                    GRPC_WEB_EXPOSE_HEADERS.join(", ")
                ));
            }
        }
    }
    Some((out, policy))
}

fn grpc_web_disabled(ctx: &Ctx<'_>, route: &At<'_>) -> bool {
    let tpfc = route.get("typed_per_filter_config");
    ctx.grpc_web_names
        .iter()
        .any(|n| tpfc.get(n).get("disabled").bool() == Some(true))
}

/// Converts a `RouteMatch`.
fn route_match(m: &At<'_>, scope: &Scope, notes: &mut Notes) -> Result<RouteMatch, String> {
    let mut out = RouteMatch::default();
    let case_sensitive = m.get("case_sensitive").bool().unwrap_or(true);
    let ci = if case_sensitive { "" } else { "(?i)" };
    for key in m.keys() {
        match key {
            "prefix" | "path" | "safe_regex" | "regex" | "path_separated_prefix" | "case_sensitive" | "headers" | "grpc" => {}
            "runtime_fraction" => match cors::fraction(&m.get(key)) {
                Some(f) if f >= 1.0 => notes.add(&m.get(key), Scope::Unobservable, "matches 100% by default; a runtime override is not carried"),
                _ => return Err("runtime_fraction: matching a share of requests is not a MeshConfig feature".into()),
            },
            "query_parameters" => return Err("query parameter conditions are not a MeshConfig feature (in Istio: VirtualService `queryParams`)".into()),
            other => return Err(format!("`{other}` conditions are not a MeshConfig feature")),
        }
    }
    if let Some(p) = m.get("prefix").str() {
        if p.is_empty() || (p == "/" && case_sensitive) {
            // Every path: no condition.
        } else if !p.starts_with('/') {
            return Err(format!(
                "prefix `{p}` cannot match a path starting with `/`"
            ));
        } else if case_sensitive {
            out.prefix = Some(p.to_owned());
        } else {
            out.regex = Some(format!("{ci}{}.*", escape(p)));
        }
    } else if let Some(p) = m.get("path").str() {
        if !p.starts_with('/') {
            return Err(format!("path `{p}` cannot match a path starting with `/`"));
        }
        out.path = (case_sensitive).then(|| p.to_owned());
        if !case_sensitive {
            out.regex = Some(format!("{ci}{}", escape(p)));
        }
    } else if let Some(p) = m.get("path_separated_prefix").str() {
        out.regex = Some(format!("{ci}{}(/.*)?", escape(p)));
    } else if let Some(re) = regex_of(m) {
        if m.get("safe_regex").is_null() {
            notes.add(
                &m.get("regex"),
                Scope::Unobservable,
                "v2 ECMAScript path regex read as RE2 (the same for ordinary patterns)",
            );
        }
        out.regex = Some(re);
    } else {
        return Err("no prefix, path or regex condition".into());
    }
    if !m.get("grpc").is_null() {
        out.headers.push(HeaderMatch {
            name: "content-type".into(),
            exact: None,
            prefix: None,
            regex: Some(r"application/grpc([+;].*)?".into()),
            present: None,
            invert: false,
        });
    }
    for (_, h) in m.get("headers").items() {
        let hm = header_match(&h).map_err(|why| format!("header condition {}: {why}", h.path()))?;
        out.headers.push(hm);
    }
    let _ = scope;
    Ok(out)
}

/// Converts a `HeaderMatcher` (v2 and v3 fields).
fn header_match(h: &At<'_>) -> Result<HeaderMatch, String> {
    let name = h.get("name").str().ok_or("no name")?.to_ascii_lowercase();
    let mut out = HeaderMatch {
        name,
        exact: None,
        prefix: None,
        regex: None,
        present: None,
        invert: h.get("invert_match").bool().unwrap_or(false),
    };
    if h.get("treat_missing_header_as_empty").bool() == Some(true) {
        return Err("treat_missing_header_as_empty is not a MeshConfig feature".into());
    }
    let sm = if !h.get("string_match").is_null() {
        Some(string_matcher(&h.get("string_match"))?)
    } else if let Some(s) = h.get("exact_match").str() {
        Some(StringMatch::Exact(s.to_owned()))
    } else if let Some(s) = h.get("prefix_match").str() {
        Some(StringMatch::Prefix(s.to_owned()))
    } else if let Some(s) = h.get("suffix_match").str() {
        Some(StringMatch::Suffix(s.to_owned()))
    } else if let Some(s) = h.get("contains_match").str() {
        Some(StringMatch::Regex(format!(".*{}.*", escape(s))))
    } else if let Some(r) = h
        .get("safe_regex_match")
        .get("regex")
        .str()
        .or(h.get("regex_match").str())
    {
        Some(StringMatch::Regex(r.to_owned()))
    } else if !h.get("range_match").is_null() {
        return Err("range_match is not a MeshConfig feature".into());
    } else {
        None
    };
    match sm {
        Some(StringMatch::Exact(s)) => out.exact = Some(s),
        Some(StringMatch::Prefix(s)) => out.prefix = Some(s),
        Some(StringMatch::Suffix(s)) => out.regex = Some(format!(".*{}", escape(&s))),
        Some(StringMatch::Regex(s)) => out.regex = Some(s),
        None => out.present = Some(h.get("present_match").bool().unwrap_or(true)),
    }
    Ok(out)
}

fn redirect(at: &At<'_>) -> Result<Redirect, String> {
    for key in at.keys() {
        if ![
            "https_redirect",
            "scheme_redirect",
            "host_redirect",
            "port_redirect",
            "path_redirect",
            "prefix_rewrite",
            "response_code",
            "strip_query",
        ]
        .contains(&key)
        {
            return Err(format!("redirect `{key}` is not a MeshConfig feature"));
        }
    }
    let scheme = if at.get("https_redirect").bool() == Some(true) {
        Some("https".to_owned())
    } else {
        at.get("scheme_redirect").str().map(str::to_owned)
    };
    let status = match at.get("response_code").v {
        serde_json::Value::Null => None,
        v => Some(match v.as_str().unwrap_or_default() {
            "MOVED_PERMANENTLY" => 301,
            "FOUND" => 302,
            "SEE_OTHER" => 303,
            "TEMPORARY_REDIRECT" => 307,
            "PERMANENT_REDIRECT" => 308,
            _ => match v.as_u64() {
                Some(0) => 301,
                Some(1) => 302,
                Some(2) => 303,
                Some(3) => 307,
                Some(4) => 308,
                _ => return Err(format!("redirect response_code `{v}` is unknown")),
            },
        }),
    };
    let port = match at.get("port_redirect").uint() {
        Some(p) => Some(u16::try_from(p).map_err(|_| format!("port_redirect {p} is not a port"))?),
        None => None,
    };
    Ok(Redirect {
        scheme,
        host: at.get("host_redirect").str().map(str::to_owned),
        port,
        path: at.get("path_redirect").str().map(str::to_owned),
        prefix_rewrite: at.get("prefix_rewrite").str().map(str::to_owned),
        status,
        strip_query: at.get("strip_query").bool().unwrap_or(false),
    })
}

fn direct_response(at: &At<'_>) -> Result<DirectResponse, String> {
    for key in at.keys() {
        if !["status", "body"].contains(&key) {
            return Err(format!(
                "direct response `{key}` is not a MeshConfig feature"
            ));
        }
    }
    let status = at
        .get("status")
        .uint()
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (200..=599).contains(s))
        .ok_or("direct response status must be 200-599 in MeshConfig")?;
    let body = at.get("body");
    let text = if body.is_null() {
        String::new()
    } else if let Some(s) = body.get("inline_string").str() {
        s.to_owned()
    } else if let Some(b) = body.get("inline_bytes").str() {
        let bytes = base64_decode(b).ok_or("inline_bytes is not base64")?;
        String::from_utf8(bytes)
            .map_err(|_| "inline_bytes is not UTF-8 text, which MeshConfig bodies are")?
    } else {
        return Err(
            "a direct response body from a file or environment variable is not read".into(),
        );
    };
    Ok(DirectResponse {
        status,
        body: text,
        content_type: None,
    })
}

/// Standard base64 (with or without padding).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= val(*c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn domains() {
        assert_eq!(domain("*").unwrap(), "*");
        assert_eq!(domain("*.Example.com").unwrap(), "*.example.com");
        assert_eq!(domain("grpc:9911").unwrap(), "grpc:9911");
        assert!(domain("*-bar.example.com").is_err());
        assert!(domain("foo.*").is_err());
    }

    #[test]
    fn matches() {
        let m = |v: serde_json::Value| {
            route_match(
                &At::root(&v, "m"),
                &Scope::Unobservable,
                &mut Notes::default(),
            )
        };
        assert_eq!(m(json!({"prefix": "/"})).unwrap(), RouteMatch::default());
        assert_eq!(
            m(json!({"prefix": "/a", "case_sensitive": false}))
                .unwrap()
                .regex
                .as_deref(),
            Some("(?i)/a.*")
        );
        assert_eq!(
            m(json!({"path_separated_prefix": "/api"}))
                .unwrap()
                .regex
                .as_deref(),
            Some("/api(/.*)?")
        );
        let h = m(json!({"prefix": "/", "headers": [{"name": ":method", "exact_match": "GET"}, {"name": "x-a"}, {"name": "x-b", "string_match": {"suffix": ".x"}, "invert_match": true}]})).unwrap();
        assert_eq!(h.headers[0].exact.as_deref(), Some("GET"));
        assert_eq!(h.headers[1].present, Some(true));
        assert_eq!(
            (h.headers[2].regex.as_deref(), h.headers[2].invert),
            (Some(r".*\.x"), true)
        );
        assert!(m(json!({"prefix": "/", "query_parameters": [{"name": "a"}]})).is_err());
        assert!(m(json!({"prefix": "/", "headers": [{"name": "x", "range_match": {"start": 1, "end": 2}}]})).is_err());
    }

    #[test]
    fn redirects_and_direct_responses() {
        let rd = redirect(&At::root(
            &json!({"https_redirect": true, "response_code": "PERMANENT_REDIRECT"}),
            "",
        ))
        .unwrap();
        assert_eq!(
            (rd.scheme.as_deref(), rd.status),
            (Some("https"), Some(308))
        );
        assert!(redirect(&At::root(&json!({"regex_rewrite": {}}), "")).is_err());
        let d = direct_response(&At::root(
            &json!({"status": 200, "body": {"inline_bytes": "aGk="}}),
            "",
        ))
        .unwrap();
        assert_eq!(d.body, "hi");
        assert!(direct_response(&At::root(
            &json!({"status": 200, "body": {"filename": "/x"}}),
            ""
        ))
        .is_err());
    }
}
