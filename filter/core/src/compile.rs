//! Validation and compilation: a [`MeshConfig`] becomes an [`Engine`], or an error naming the field.
//!
//! This is the one validator: the filter runs it in `on_configure`, the plugin runs it natively
//! before rendering anything.

use crate::bytes_regex::ByteRegex;
use crate::config::{
    Delivery, DirectResponse, FilterConfig, HeaderMatch, LoadError, MeshConfig, NotFoundHosts,
    RouteConfig, Target, API_VERSION, KIND,
};
use crate::cors::CorsPolicy;
use crate::engine::Engine;
use crate::headers::HeaderOps;
use crate::host::HostTable;
use crate::router::{
    Action, HeaderCond, HeaderTest, LocalBody, PathMatch, RedirectSpec, Route, Router, VirtualHost,
};
use crate::upstream::{istio_cluster, service_fqdn};
use std::collections::HashMap;
use std::sync::Arc;

/// A config that cannot be used. `path` names the field, `reason` says what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The document could not be read into the schema.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The document is well-formed but wrong.
    #[error("{path}: {reason}")]
    Invalid {
        /// Field path, e.g. `hosts[0].routes[2].match.regex`.
        path: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

impl ConfigError {
    /// The field path the error is about (`.` for the whole document).
    pub fn path(&self) -> &str {
        match self {
            ConfigError::Load(LoadError::Shape { path, .. }) => path,
            ConfigError::Invalid { path, .. } => path,
        }
    }
}

fn invalid(path: impl ToString, reason: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_string(),
        reason: reason.to_string(),
    }
}

/// One step of a field path.
#[derive(Debug, Clone, Copy)]
enum Seg {
    Field(&'static str),
    Index(usize),
}

/// Where a field is (`hosts[0].routes[2].match.regex`), rendered only when an error names it:
/// configuring 10,000 hosts must not format a path for every field that is fine.
#[derive(Debug, Clone, Copy)]
struct At<'a> {
    parent: Option<&'a At<'a>>,
    seg: Seg,
}

impl<'a> At<'a> {
    fn top(name: &'static str) -> At<'static> {
        At {
            parent: None,
            seg: Seg::Field(name),
        }
    }
    fn field(&'a self, name: &'static str) -> At<'a> {
        At {
            parent: Some(self),
            seg: Seg::Field(name),
        }
    }
    fn index(&'a self, i: usize) -> At<'a> {
        At {
            parent: Some(self),
            seg: Seg::Index(i),
        }
    }
}

impl std::fmt::Display for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(p) = self.parent {
            p.fmt(f)?;
        }
        match self.seg {
            Seg::Field(name) if self.parent.is_some() => write!(f, ".{name}"),
            Seg::Field(name) => f.write_str(name),
            Seg::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// Parses what Envoy hands the filter (a [`FilterConfig`] or a bare [`MeshConfig`]) and
/// compiles it: what the filter does in `on_configure`.
pub fn compile_json(text: &str) -> Result<Engine, ConfigError> {
    let fc = FilterConfig::from_json(text)?;
    let mut engine = compile_for(&fc.mesh, fc.delivery)?;
    engine.revision = fc.revision.as_deref().and_then(revision_number);
    Ok(engine)
}

/// The stat value of a revision: its first 12 hex digits as a number (48 bits, which a
/// Prometheus sample, a float, holds exactly); `None` when it does not start with 12 hex digits.
pub fn revision_number(revision: &str) -> Option<u64> {
    let digits = revision.get(..12)?;
    match digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        true => u64::from_str_radix(digits, 16).ok(),
        false => None,
    }
}

/// Validates and compiles a config for upstream delivery (gateway, sidecar-outbound).
pub fn compile(cfg: &MeshConfig) -> Result<Engine, ConfigError> {
    compile_for(cfg, Delivery::Upstream)
}

/// Validates and compiles a config for `delivery`.
pub fn compile_for(cfg: &MeshConfig, delivery: Delivery) -> Result<Engine, ConfigError> {
    if cfg.api_version != API_VERSION {
        return Err(invalid(
            "apiVersion",
            format!("expected `{API_VERSION}`, got `{}`", cfg.api_version),
        ));
    }
    if cfg.kind != KIND {
        return Err(invalid(
            "kind",
            format!("expected `{KIND}`, got `{}`", cfg.kind),
        ));
    }
    if !is_dns_label(&cfg.namespace) {
        return Err(invalid(
            "namespace",
            format!(
                "`{}` is not a Kubernetes namespace name (lower-case letters, digits, `-`)",
                cfg.namespace
            ),
        ));
    }
    if cfg.cluster_domain.is_empty() || !cfg.cluster_domain.split('.').all(is_dns_label) {
        return Err(invalid(
            "clusterDomain",
            format!(
                "`{}` is not a DNS domain such as `cluster.local`",
                cfg.cluster_domain
            ),
        ));
    }
    if cfg.hosts.is_empty() {
        return Err(invalid(
            "hosts",
            "at least one host is needed (use domains: [\"*\"] for every host)",
        ));
    }
    let mut router = Router {
        table: HostTable::new(cfg.host_matching),
        hosts: Vec::with_capacity(cfg.hosts.len()),
    };
    let mut names = Clusters::default();
    for (hi, host) in cfg.hosts.iter().enumerate() {
        let hosts = At::top("hosts");
        let hp = hosts.index(hi);
        if host.domains.is_empty() {
            return Err(invalid(hp.field("domains"), "list at least one domain"));
        }
        for (di, d) in host.domains.iter().enumerate() {
            router
                .table
                .insert(d, hi)
                .map_err(|e| invalid(hp.field("domains").index(di), e))?;
        }
        if host.routes.is_empty() {
            return Err(invalid(hp.field("routes"), "list at least one route"));
        }
        let host_req = HeaderOps::compile(&host.request_headers)
            .map_err(|e| invalid(hp.field("requestHeaders"), e))?;
        let host_resp = HeaderOps::compile(&host.response_headers)
            .map_err(|e| invalid(hp.field("responseHeaders"), e))?;
        if let Some(c) = &host.cors {
            // Check the host policy on its own too, so its errors name the host's field.
            CorsPolicy::compile(None, Some(c), false).map_err(|e| invalid(hp.field("cors"), e))?;
        }
        let mut routes = Vec::with_capacity(host.routes.len());
        for (ri, r) in host.routes.iter().enumerate() {
            let routes_at = hp.field("routes");
            let rp = routes_at.index(ri);
            routes.push(compile_route(
                cfg,
                host.cors.as_ref(),
                r,
                &rp,
                [host_req.clone(), host_resp.clone()],
                &mut names,
            )?);
        }
        let name = host
            .name
            .clone()
            .or_else(|| host.domains.first().cloned())
            .unwrap_or_default();
        router.hosts.push(VirtualHost { name, routes });
    }
    // Without `notFound`, Envoy's own "no route" answer: 404, no body, no content type.
    let not_found = match &cfg.not_found {
        Some(d) => local_body(d, &At::top("notFound"))?,
        None => LocalBody {
            status: 404,
            body: Vec::new(),
            content_type: None,
        },
    };
    let own_all_hosts = cfg.not_found.is_some() && cfg.not_found_hosts == NotFoundHosts::All;
    Ok(Engine::new(router, not_found, own_all_hosts, delivery))
}

fn compile_route<'a>(
    cfg: &MeshConfig,
    host_cors: Option<&crate::config::CorsConfig>,
    r: &'a RouteConfig,
    rp: &At<'_>,
    [host_req, host_resp]: [HeaderOps; 2],
    names: &mut Clusters<'a>,
) -> Result<Route, ConfigError> {
    let m = &r.matches;
    let path = match (&m.prefix, &m.path, &m.regex) {
        (None, None, None) => PathMatch::Prefix("/".to_owned()),
        (Some(p), None, None) => PathMatch::Prefix(abs_path(p, &rp.field("match.prefix"))?),
        (None, Some(p), None) => PathMatch::Exact(abs_path(p, &rp.field("match.path"))?),
        (None, None, Some(re)) => PathMatch::Regex(full_regex(re, &rp.field("match.regex"))?),
        _ => {
            return Err(invalid(
                rp.field("match"),
                "give only one of prefix, path and regex",
            ))
        }
    };
    for (i, meth) in m.methods.iter().enumerate() {
        if meth.is_empty()
            || !meth
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                rp.field("match.methods").index(i),
                format!("`{meth}` is not an HTTP method; write it upper-case, like GET"),
            ));
        }
    }
    let headers = m
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| header_cond(h, &rp.field("match.headers").index(i)))
        .collect::<Result<Vec<_>, _>>()?;
    let actions = [
        r.to.is_some(),
        r.direct_response.is_some(),
        r.redirect.is_some(),
    ];
    if actions.iter().filter(|a| **a).count() != 1 {
        return Err(invalid(
            rp,
            "give exactly one action: to, directResponse or redirect",
        ));
    }
    let action = if let Some(t) = &r.to {
        forward(cfg, t, &rp.field("to"), names)?
    } else if let Some(d) = &r.direct_response {
        Action::Direct(local_body(d, &rp.field("directResponse"))?)
    } else if let Some(rd) = &r.redirect {
        let p = rp.field("redirect");
        let status = rd.status.unwrap_or(301);
        if ![301, 302, 303, 307, 308].contains(&status) {
            return Err(invalid(
                p.field("status"),
                format!("{status} is not a redirect status; use 301, 302, 303, 307 or 308"),
            ));
        }
        if let Some(s) = &rd.scheme {
            if s != "http" && s != "https" {
                return Err(invalid(
                    p.field("scheme"),
                    format!("`{s}` must be http or https"),
                ));
            }
        }
        if let Some(h) = &rd.host {
            check_host(h, &p.field("host"))?;
        }
        if let Some(x) = &rd.path {
            abs_path(x, &p.field("path"))?;
        }
        if let Some(x) = &rd.prefix_rewrite {
            abs_path(x, &p.field("prefixRewrite"))?;
            if !matches!(path, PathMatch::Prefix(_)) || rd.path.is_some() {
                return Err(invalid(
                    p.field("prefixRewrite"),
                    "needs a prefix match and no redirect.path",
                ));
            }
        }
        Action::Redirect(RedirectSpec {
            scheme: rd.scheme.clone(),
            host: rd.host.clone(),
            port: rd.port,
            path: rd.path.clone(),
            prefix_rewrite: rd.prefix_rewrite.clone(),
            status,
            strip_query: rd.strip_query,
        })
    } else {
        return Err(invalid(
            rp,
            "give exactly one action: to, directResponse or redirect",
        ));
    };
    let cors = CorsPolicy::compile(r.cors.as_ref(), host_cors, r.grpc_web)
        .map_err(|e| invalid(rp.field("cors"), e))?;
    let req = HeaderOps::compile(&r.request_headers)
        .map_err(|e| invalid(rp.field("requestHeaders"), e))?;
    let resp = HeaderOps::compile(&r.response_headers)
        .map_err(|e| invalid(rp.field("responseHeaders"), e))?;
    Ok(Route {
        name: r.name.clone().unwrap_or_default(),
        path,
        methods: m.methods.clone(),
        headers,
        action,
        grpc_web: r.grpc_web,
        cors,
        request_ops: [host_req, req],
        response_ops: [host_resp, resp],
    })
}

/// Cluster names built once per distinct target and shared by every route that uses it
/// (configure time at 10,000 hosts is mostly allocation).
#[derive(Default)]
struct Clusters<'a> {
    services: HashMap<(&'a str, u16), Arc<str>>,
    raw: HashMap<&'a str, Arc<str>>,
}

fn forward<'a>(
    cfg: &MeshConfig,
    t: &'a Target,
    p: &At<'_>,
    names: &mut Clusters<'a>,
) -> Result<Action, ConfigError> {
    let cluster = match (&t.service, t.port, &t.cluster) {
        (Some(svc), Some(port), None) => {
            if svc.is_empty() || !svc.trim_end_matches('.').split('.').all(is_dns_label) {
                return Err(invalid(
                    p.field("service"),
                    format!("`{svc}` is not a service name like `server` or `server.namespace`"),
                ));
            }
            if port == 0 {
                return Err(invalid(p.field("port"), "port must be 1-65535"));
            }
            names
                .services
                .entry((svc.as_str(), port))
                .or_insert_with(|| {
                    istio_cluster(
                        &service_fqdn(svc, &cfg.namespace, &cfg.cluster_domain),
                        port,
                    )
                    .into()
                })
                .clone()
        }
        (None, None, Some(c)) => {
            if c.is_empty() || c.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                return Err(invalid(
                    p.field("cluster"),
                    "cluster name must be non-empty, without spaces or control characters",
                ));
            }
            names
                .raw
                .entry(c.as_str())
                .or_insert_with(|| c.as_str().into())
                .clone()
        }
        (Some(_), None, None) => {
            return Err(invalid(
                p.field("port"),
                "a service target needs its port, e.g. port: 8080",
            ))
        }
        _ => return Err(invalid(p, "give either service and port, or cluster")),
    };
    if let Some(x) = &t.prefix_rewrite {
        abs_path(x, &p.field("prefixRewrite"))?;
    }
    if let Some(h) = &t.host_rewrite {
        check_host(h, &p.field("hostRewrite"))?;
    }
    Ok(Action::Forward {
        cluster,
        prefix_rewrite: t.prefix_rewrite.clone(),
        host_rewrite: t.host_rewrite.clone(),
    })
}

fn header_cond(h: &HeaderMatch, p: &At<'_>) -> Result<HeaderCond, ConfigError> {
    if h.name.is_empty()
        || !h
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return Err(invalid(
            p.field("name"),
            format!("`{}` is not a header name", h.name),
        ));
    }
    let test = match (&h.exact, &h.prefix, &h.regex, h.present) {
        (Some(v), None, None, None) => HeaderTest::Exact(v.as_bytes().to_vec()),
        (None, Some(v), None, None) => HeaderTest::Prefix(v.as_bytes().to_vec()),
        (None, None, Some(r), None) => HeaderTest::Regex(full_regex(r, &p.field("regex"))?),
        (None, None, None, Some(b)) => HeaderTest::Present(b),
        _ => {
            return Err(invalid(
                p,
                "give exactly one of exact, prefix, regex or present",
            ))
        }
    };
    Ok(HeaderCond {
        name: h.name.to_ascii_lowercase(),
        test,
        invert: h.invert,
    })
}

fn local_body(d: &DirectResponse, p: &At<'_>) -> Result<LocalBody, ConfigError> {
    if !(200..=599).contains(&d.status) {
        return Err(invalid(
            p.field("status"),
            format!("{} is not an HTTP status from 200 to 599", d.status),
        ));
    }
    if let Some(ct) = &d.content_type {
        if ct.bytes().any(|b| b.is_ascii_control()) {
            return Err(invalid(
                p.field("contentType"),
                "contains control characters",
            ));
        }
    }
    let content_type = match (&d.content_type, d.body.is_empty()) {
        (Some(ct), _) => Some(ct.clone()),
        (None, false) => Some("text/plain".to_owned()),
        (None, true) => None,
    };
    Ok(LocalBody {
        status: d.status,
        body: d.body.as_bytes().to_vec(),
        content_type,
    })
}

fn abs_path(p: &str, field: &At<'_>) -> Result<String, ConfigError> {
    if !p.starts_with('/') || p.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(invalid(
            field,
            format!("`{p}` must start with `/` and have no spaces or control characters"),
        ));
    }
    Ok(p.to_owned())
}

/// Whole-input, byte-wise regex: like Envoy's RE2 on paths and header values, `.` matches any
/// byte (also invalid UTF-8) and `\w`/`\d` are ASCII.
fn full_regex(re: &str, field: &At<'_>) -> Result<ByteRegex, ConfigError> {
    ByteRegex::whole(re).map_err(|e| invalid(field, format!("invalid regular expression: {e}")))
}

fn check_host(h: &str, field: &At<'_>) -> Result<(), ConfigError> {
    let mut t = HostTable::default();
    if h.contains('*') {
        return Err(invalid(
            field,
            format!("`{h}` must be a plain host name, without `*`"),
        ));
    }
    t.insert(h, 0).map_err(|e| invalid(field, e))
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}
