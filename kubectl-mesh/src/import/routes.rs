//! Virtual hosts and routes: Envoy's route configuration becomes MeshConfig hosts, with route
//! matches, actions (forward, redirect, direct response), CORS and header rules.

use super::cors;
use super::envoy::{ClusterTarget, Hcm, HttpFilterKind};
use super::headers::{compose, Side};
use super::matches::{direct_response, redirect, route_match};
use super::notes::{At, Notes, Scope};
use mesh_core::config::{CorsConfig, HostConfig, RouteConfig, Target};
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        assert_eq!(domain("*").unwrap(), "*");
        assert_eq!(domain("*.Example.com").unwrap(), "*.example.com");
        assert_eq!(domain("grpc:9911").unwrap(), "grpc:9911");
        assert!(domain("*-bar.example.com").is_err());
        assert!(domain("foo.*").is_err());
    }
}
