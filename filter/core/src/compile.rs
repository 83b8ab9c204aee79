//! Validation and compilation: a [`MeshConfig`] becomes an [`Engine`], or an error naming the field.
//!
//! This is the one validator: the filter runs it in `on_configure`, the plugin runs it natively
//! before rendering anything. It consumes the document, so the compiled routes take over its
//! strings instead of copying them, and what every route of a host shares (the host's header
//! rules, its CORS policy) is compiled once and shared: configuring a large config in the
//! filter is mostly reading it.

use crate::bytes_regex::ByteRegex;
use crate::config::{
    CorsConfig, Delivery, DirectResponse, FilterConfig, HeaderMatch, LoadError, MeshConfig,
    NotFoundHosts, RouteConfig, Target, API_VERSION, KIND,
};
use crate::cors::CorsPolicy;
// Defined beside the engine's revision; also kept at this path.
pub use crate::engine::revision_number;
use crate::engine::Engine;
use crate::headers::HeaderOps;
use crate::host::Fnv;
use crate::host::HostTable;
use crate::router::{
    Action, HeaderCond, HeaderTest, LocalBody, PathMatch, RedirectSpec, Route, Router, VirtualHost,
};
use crate::upstream::{istio_cluster, service_fqdn};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
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
    let mut engine = compile_owned(fc.mesh, fc.delivery)?;
    engine.revision = fc.revision.as_deref().and_then(revision_number);
    Ok(engine)
}

/// Validates and compiles a config for upstream delivery (gateway, sidecar-outbound).
pub fn compile(cfg: &MeshConfig) -> Result<Engine, ConfigError> {
    compile_for(cfg, Delivery::Upstream)
}

/// Validates and compiles a config for `delivery`.
pub fn compile_for(cfg: &MeshConfig, delivery: Delivery) -> Result<Engine, ConfigError> {
    compile_owned(cfg.clone(), delivery)
}

/// Validates and compiles a config for `delivery`, taking its strings over.
pub fn compile_owned(cfg: MeshConfig, delivery: Delivery) -> Result<Engine, ConfigError> {
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
    let mut names = Clusters::new(&cfg.namespace, &cfg.cluster_domain);
    let empty = Arc::new(HeaderOps::default());
    for (hi, host) in cfg.hosts.into_iter().enumerate() {
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
        let shared = |ops: HeaderOps| match ops.is_empty() {
            true => empty.clone(),
            false => Arc::new(ops),
        };
        let host_req = HeaderOps::compile(&host.request_headers)
            .map(shared)
            .map_err(|e| invalid(hp.field("requestHeaders"), e))?;
        let host_resp = HeaderOps::compile(&host.response_headers)
            .map(shared)
            .map_err(|e| invalid(hp.field("responseHeaders"), e))?;
        if let Some(c) = &host.cors {
            // Check the host policy on its own too, so its errors name the host's field.
            CorsPolicy::compile(None, Some(c), false).map_err(|e| invalid(hp.field("cors"), e))?;
        }
        let mut shared_cors = HostCors::new(host.cors.as_ref());
        let mut routes = Vec::with_capacity(host.routes.len());
        for (ri, r) in host.routes.into_iter().enumerate() {
            let routes_at = hp.field("routes");
            let rp = routes_at.index(ri);
            routes.push(compile_route(
                r,
                &rp,
                &mut shared_cors,
                [&host_req, &host_resp],
                &shared,
                &mut names,
            )?);
        }
        let name = host
            .name
            .or_else(|| host.domains.into_iter().next())
            .unwrap_or_default();
        router.hosts.push(VirtualHost { name, routes });
    }
    // Without `notFound`, Envoy's own "no route" answer: 404, no body, no content type.
    let own_all_hosts = cfg.not_found.is_some() && cfg.not_found_hosts == NotFoundHosts::All;
    let not_found = match cfg.not_found {
        Some(d) => local_body(d, &At::top("notFound"))?,
        None => LocalBody {
            status: 404,
            body: Vec::new(),
            content_type: None,
        },
    };
    Ok(Engine::new(router, not_found, own_all_hosts, delivery))
}

/// A host's CORS policy as its routes without one of their own get it: compiled once per
/// gRPC-Web flag and shared.
struct HostCors<'h> {
    host: Option<&'h CorsConfig>,
    /// By `grpc_web`: not compiled yet, or the compiled (maybe absent) policy.
    compiled: [Option<Option<Arc<CorsPolicy>>>; 2],
}

impl<'h> HostCors<'h> {
    fn new(host: Option<&'h CorsConfig>) -> Self {
        HostCors {
            host,
            compiled: [None, None],
        }
    }

    /// The effective policy of a route with `own` policy (merged over the host's).
    fn of(
        &mut self,
        own: Option<&CorsConfig>,
        grpc_web: bool,
    ) -> Result<Option<Arc<CorsPolicy>>, crate::cors::CorsError> {
        if own.is_some() {
            return Ok(CorsPolicy::compile(own, self.host, grpc_web)?.map(Arc::new));
        }
        let slot = &mut self.compiled[usize::from(grpc_web)];
        if let Some(p) = slot {
            return Ok(p.clone());
        }
        let p = CorsPolicy::compile(None, self.host, grpc_web)?.map(Arc::new);
        *slot = Some(p.clone());
        Ok(p)
    }
}

fn compile_route(
    r: RouteConfig,
    rp: &At<'_>,
    host_cors: &mut HostCors<'_>,
    [host_req, host_resp]: [&Arc<HeaderOps>; 2],
    shared: &impl Fn(HeaderOps) -> Arc<HeaderOps>,
    names: &mut Clusters,
) -> Result<Route, ConfigError> {
    let RouteConfig {
        name,
        matches: m,
        grpc_web,
        cors,
        request_headers,
        response_headers,
        to,
        direct_response,
        redirect,
    } = r;
    let path = match (m.prefix, m.path, m.regex) {
        (None, None, None) => PathMatch::Prefix("/".to_owned()),
        (Some(p), None, None) => PathMatch::Prefix(abs_path(p, &rp.field("match.prefix"))?),
        (None, Some(p), None) => PathMatch::Exact(abs_path(p, &rp.field("match.path"))?),
        (None, None, Some(re)) => {
            PathMatch::Regex(Box::new(full_regex(&re, &rp.field("match.regex"))?))
        }
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
        .into_iter()
        .enumerate()
        .map(|(i, h)| header_cond(h, &rp.field("match.headers").index(i)))
        .collect::<Result<Vec<_>, _>>()?;
    let actions = [to.is_some(), direct_response.is_some(), redirect.is_some()];
    if actions.iter().filter(|a| **a).count() != 1 {
        return Err(invalid(
            rp,
            "give exactly one action: to, directResponse or redirect",
        ));
    }
    let action = if let Some(t) = to {
        forward(t, &rp.field("to"), names)?
    } else if let Some(d) = direct_response {
        Action::Direct(local_body(d, &rp.field("directResponse"))?)
    } else if let Some(rd) = redirect {
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
        let path_rewrite = match rd.path {
            Some(x) => Some(abs_path(x, &p.field("path"))?),
            None => None,
        };
        let prefix_rewrite = match rd.prefix_rewrite {
            Some(x) => {
                let x = abs_path(x, &p.field("prefixRewrite"))?;
                if !matches!(path, PathMatch::Prefix(_)) || path_rewrite.is_some() {
                    return Err(invalid(
                        p.field("prefixRewrite"),
                        "needs a prefix match and no redirect.path",
                    ));
                }
                Some(x)
            }
            None => None,
        };
        Action::Redirect(Box::new(RedirectSpec {
            scheme: rd.scheme,
            host: rd.host,
            port: rd.port,
            path: path_rewrite,
            prefix_rewrite,
            status,
            strip_query: rd.strip_query,
        }))
    } else {
        return Err(invalid(
            rp,
            "give exactly one action: to, directResponse or redirect",
        ));
    };
    let cors = host_cors
        .of(cors.as_ref(), grpc_web)
        .map_err(|e| invalid(rp.field("cors"), e))?;
    let req =
        HeaderOps::compile(&request_headers).map_err(|e| invalid(rp.field("requestHeaders"), e))?;
    let resp = HeaderOps::compile(&response_headers)
        .map_err(|e| invalid(rp.field("responseHeaders"), e))?;
    Ok(Route {
        name: name.unwrap_or_default(),
        path,
        methods: m.methods,
        headers,
        action,
        grpc_web,
        cors,
        request_ops: [host_req.clone(), shared(req)],
        response_ops: [host_resp.clone(), shared(resp)],
    })
}

/// Names by key, hashed with FNV (the keys are the config's own).
type Names<V> = HashMap<Box<str>, V, BuildHasherDefault<Fnv>>;

/// Cluster names built once per distinct target and shared by every route that uses it
/// (configure time at 10,000 hosts is mostly allocation).
struct Clusters {
    namespace: String,
    cluster_domain: String,
    /// By service, then port.
    services: Names<Vec<(u16, Arc<str>)>>,
    raw: Names<Arc<str>>,
}

impl Clusters {
    fn new(namespace: &str, cluster_domain: &str) -> Self {
        Clusters {
            namespace: namespace.to_owned(),
            cluster_domain: cluster_domain.to_owned(),
            services: HashMap::default(),
            raw: HashMap::default(),
        }
    }

    fn service(&mut self, svc: &str, port: u16) -> Arc<str> {
        let ports = match self.services.get_mut(svc) {
            Some(ports) => ports,
            None => self.services.entry(svc.into()).or_default(),
        };
        if let Some((_, name)) = ports.iter().find(|(p, _)| *p == port) {
            return name.clone();
        }
        let name: Arc<str> = istio_cluster(
            &service_fqdn(svc, &self.namespace, &self.cluster_domain),
            port,
        )
        .into();
        ports.push((port, name.clone()));
        name
    }

    fn raw(&mut self, cluster: String) -> Arc<str> {
        if let Some(name) = self.raw.get(cluster.as_str()) {
            return name.clone();
        }
        let name: Arc<str> = cluster.as_str().into();
        self.raw.insert(cluster.into_boxed_str(), name.clone());
        name
    }
}

fn forward(t: Target, p: &At<'_>, names: &mut Clusters) -> Result<Action, ConfigError> {
    let cluster = match (t.service, t.port, t.cluster) {
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
            names.service(&svc, port)
        }
        (None, None, Some(c)) => {
            if c.is_empty() || c.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                return Err(invalid(
                    p.field("cluster"),
                    "cluster name must be non-empty, without spaces or control characters",
                ));
            }
            names.raw(c)
        }
        (Some(_), None, None) => {
            return Err(invalid(
                p.field("port"),
                "a service target needs its port, e.g. port: 8080",
            ))
        }
        _ => return Err(invalid(p, "give either service and port, or cluster")),
    };
    let prefix_rewrite = match t.prefix_rewrite {
        Some(x) => Some(abs_path(x, &p.field("prefixRewrite"))?),
        None => None,
    };
    if let Some(h) = &t.host_rewrite {
        check_host(h, &p.field("hostRewrite"))?;
    }
    Ok(Action::Forward {
        cluster,
        prefix_rewrite,
        host_rewrite: t.host_rewrite,
    })
}

fn header_cond(h: HeaderMatch, p: &At<'_>) -> Result<HeaderCond, ConfigError> {
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
    let test = match (h.exact, h.prefix, h.regex, h.present) {
        (Some(v), None, None, None) => HeaderTest::Exact(v.into_bytes()),
        (None, Some(v), None, None) => HeaderTest::Prefix(v.into_bytes()),
        (None, None, Some(r), None) => {
            HeaderTest::Regex(Box::new(full_regex(&r, &p.field("regex"))?))
        }
        (None, None, None, Some(b)) => HeaderTest::Present(b),
        _ => {
            return Err(invalid(
                p,
                "give exactly one of exact, prefix, regex or present",
            ))
        }
    };
    let mut name = h.name;
    name.make_ascii_lowercase();
    Ok(HeaderCond {
        name,
        test,
        invert: h.invert,
    })
}

fn local_body(d: DirectResponse, p: &At<'_>) -> Result<LocalBody, ConfigError> {
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
    let content_type = match (d.content_type, d.body.is_empty()) {
        (Some(ct), _) => Some(ct),
        (None, false) => Some("text/plain".to_owned()),
        (None, true) => None,
    };
    Ok(LocalBody {
        status: d.status,
        body: d.body.into_bytes(),
        content_type,
    })
}

fn abs_path(p: String, field: &At<'_>) -> Result<String, ConfigError> {
    if !p.starts_with('/') || p.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(invalid(
            field,
            format!("`{p}` must start with `/` and have no spaces or control characters"),
        ));
    }
    Ok(p)
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
