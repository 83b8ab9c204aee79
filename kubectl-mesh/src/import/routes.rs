//! Virtual hosts and routes: Envoy's route configuration becomes MeshConfig hosts, with route
//! matches, actions (forward, redirect, direct response), CORS and header rules.

use super::cors;
use super::envoy::{ClusterTarget, Hcm, HttpFilterKind};
use super::headers::{compose, Side};
use super::matches::{direct_response, redirect, route_match};
use super::notes::{At, Notes, Scope};
use mesh_core::config::{CorsConfig, HeaderRules, HostConfig, RouteConfig, Target};
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
                    vhost: Some(v),
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
    let mut routes: Vec<(RouteConfig, RouteCors)> = Vec::new();
    for (r, route) in vh.get("routes").items() {
        if let Some(x) = convert_route(ctx, rc, vh, &levels, v, r, &route, notes) {
            routes.push(x);
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
    // CORS as in the original: the host's policy on the host and what a route changes on the
    // route, when MeshConfig's field-by-field merge gives each route its effective policy
    // (else each forwarding route carries its whole effective policy).
    let host_level = if levels.config.is_some() || levels.vhost.is_some() {
        cors::effective(&[levels.config.as_ref(), levels.vhost.as_ref()])
    } else {
        levels.legacy_vhost.clone()
    }
    .filter(|h| ctx.hcm.cors_filter && !cors::is_off(Some(h)));
    let placed = host_level.as_ref().and_then(|h| {
        routes
            .iter()
            .map(|(r, c)| {
                if r.to.is_none() {
                    return Some(None);
                }
                [None, c.own.clone(), Some(cors::off()), c.effective.clone()]
                    .into_iter()
                    .find(|cand| {
                        cors::same(
                            cors::merged(Some(h), cand.as_ref()).as_ref(),
                            c.effective.as_ref(),
                        )
                    })
            })
            .collect::<Option<Vec<Option<CorsConfig>>>>()
    });
    host.cors = placed.as_ref().and(host_level);
    for (i, (mut r, c)) in routes.into_iter().enumerate() {
        r.cors = match &placed {
            Some(p) => p[i].clone(),
            None if r.to.is_some() => c.effective,
            None => None,
        };
        host.routes.push(r);
    }
    // Header rules are composed per route; a header every route treats the same moves up to
    // the host (the host's rules run first, which cannot matter for a name the route's
    // remaining rules do not touch).
    host.request_headers = hoist(&mut host.routes, |r| &mut r.request_headers);
    host.response_headers = hoist(&mut host.routes, |r| &mut r.response_headers);
    Some(host)
}

/// Moves the header names that every route sets, adds or removes alike to one host-level rule
/// set, which it returns.
fn hoist(
    routes: &mut [RouteConfig],
    side: impl Fn(&mut RouteConfig) -> &mut HeaderRules,
) -> HeaderRules {
    let mut host = HeaderRules::default();
    if routes.len() < 2 {
        return host;
    }
    let effect = |r: &HeaderRules, name: &str| {
        (
            r.remove.iter().any(|n| n.eq_ignore_ascii_case(name)),
            r.set.get(name).cloned(),
            r.add.get(name).cloned(),
        )
    };
    let first = side(&mut routes[0]).clone();
    let names: Vec<String> = first
        .remove
        .iter()
        .chain(first.set.keys())
        .chain(first.add.keys())
        .map(|n| n.to_ascii_lowercase())
        .collect();
    for name in names {
        let e = effect(&first, &name);
        if host.set.contains_key(&name)
            || host.add.contains_key(&name)
            || host.remove.contains(&name)
        {
            continue;
        }
        if !routes.iter_mut().all(|r| effect(side(r), &name) == e) {
            continue;
        }
        for r in routes.iter_mut() {
            let rules = side(r);
            rules.remove.retain(|n| !n.eq_ignore_ascii_case(&name));
            rules.set.remove(&name);
            rules.add.remove(&name);
        }
        if e.0 {
            host.remove.push(name.clone());
        }
        if let Some(v) = e.1 {
            host.set.insert(name.clone(), v);
        }
        if let Some(v) = e.2 {
            host.add.insert(name, v);
        }
    }
    host
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

/// A route's CORS: the effective policy and the route's own one.
#[derive(Debug, Clone, Default)]
struct RouteCors {
    /// What applies to the route (`enabled: false` when nothing does or nothing is allowed).
    effective: Option<CorsConfig>,
    /// The route's own policy, from the level Envoy read for it.
    own: Option<CorsConfig>,
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
) -> RouteCors {
    let rs = Scope::Cors {
        vhost: v,
        route: Some(r),
    };
    let route_typed = typed_cors(ctx, route, &rs, notes);
    let legacy_route = (!route.get("route").get("cors").is_null())
        .then(|| cors::convert(&route.get("route").get("cors"), &rs, notes))
        .flatten();
    let any_typed = levels.config.is_some() || levels.vhost.is_some() || route_typed.is_some();
    let (policy, own) = if any_typed {
        let p = cors::effective(&[
            levels.config.as_ref(),
            levels.vhost.as_ref(),
            route_typed.as_ref(),
        ]);
        (p, route_typed)
    } else {
        let p = cors::effective(&[levels.legacy_vhost.as_ref(), legacy_route.as_ref()]);
        (p, legacy_route)
    };
    let Some(policy) = policy else {
        return RouteCors::default();
    };
    if !ctx.hcm.cors_filter {
        notes.info(route, "a CORS policy applies here, but the listener has no CORS filter, so it never had an effect");
        return RouteCors::default();
    }
    let effective = if cors::is_off(Some(&policy)) {
        cors::off()
    } else {
        policy
    };
    RouteCors {
        effective: Some(effective),
        own,
    }
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
) -> Option<(RouteConfig, RouteCors)> {
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
        let grpc_web = ctx.hcm.grpc_web && !grpc_web_disabled(ctx, route);
        let target = match ctx.clusters.get(c) {
            Some(ClusterTarget::Service {
                service,
                port,
                http2,
            }) => Target {
                service: Some(service.clone()),
                port: Some(*port),
                cluster: None,
                prefix_rewrite: None,
                host_rewrite: None,
                // A grpcWeb route implies it; say it only where nothing else does.
                http2: (*http2 && !grpc_web).then_some(true),
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
                    http2: None,
                }
            }
        };
        out.to = Some(Target {
            prefix_rewrite: action.get("prefix_rewrite").str().map(str::to_owned),
            host_rewrite,
            ..target
        });
        out.grpc_web = grpc_web;
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
        if let Some(p) = policy.effective.as_ref().filter(|p| !cors::is_off(Some(p))) {
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
