//! The router: compiled routes, path/method/header conditions, route finding, and the action
//! each route takes (including where a redirect points).

use crate::bytes_regex::ByteRegex;
use crate::cors::CorsPolicy;
use crate::headers::HeaderOps;
use crate::host::{strip_port, HostTable};
use crate::request::RequestHeaders;
use std::sync::Arc;

/// How a route compares the path (always without the query string). No `match`: prefix `/`.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// Starts with.
    Prefix(String),
    /// Equal.
    Exact(String),
    /// Whole-path regular expression, compiled once (boxed: most routes have none).
    Regex(Box<ByteRegex>),
}

/// A compiled header condition.
#[derive(Debug, Clone)]
pub struct HeaderCond {
    /// Lower-case name.
    pub name: String,
    /// What the value must satisfy.
    pub test: HeaderTest,
    /// Invert the result.
    pub invert: bool,
}

/// The test a [`HeaderCond`] applies.
#[derive(Debug, Clone)]
pub enum HeaderTest {
    /// Equal.
    Exact(Vec<u8>),
    /// Starts with.
    Prefix(Vec<u8>),
    /// Whole value matches.
    Regex(Box<ByteRegex>),
    /// Present (`true`) or absent (`false`).
    Present(bool),
}

impl HeaderTest {
    /// Applies the test to one value.
    fn check_value(&self, v: &[u8]) -> bool {
        match self {
            HeaderTest::Present(_) => true,
            HeaderTest::Exact(e) => v == e.as_slice(),
            HeaderTest::Prefix(p) => v.starts_with(p),
            HeaderTest::Regex(r) => r.is_match(v),
        }
    }

    /// Applies the test to every value of a header: like Envoy 1.40, a repeated header
    /// satisfies a value test when any one of its values does; an absent one never does.
    pub fn check<'v>(&self, mut values: impl Iterator<Item = &'v [u8]>) -> bool {
        match self {
            HeaderTest::Present(want) => values.next().is_some() == *want,
            test => values.any(|v| test.check_value(v)),
        }
    }
}

impl HeaderCond {
    /// Whether the request satisfies this condition (`invert` applied). As Envoy: a value test
    /// on an absent header fails, inverted or not; only presence tests invert on absence.
    pub fn holds<R: RequestHeaders + ?Sized>(&self, req: &R) -> bool {
        if !matches!(self.test, HeaderTest::Present(_)) && req.values(&self.name).next().is_none() {
            return false;
        }
        self.test.check(req.values(&self.name)) != self.invert
    }
}

/// A prepared local answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalBody {
    /// Status code.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
    /// `content-type`, if there is a body.
    pub content_type: Option<String>,
}

/// A compiled redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectSpec {
    /// New scheme, or keep the request's.
    pub scheme: Option<String>,
    /// New host, or keep.
    pub host: Option<String>,
    /// New port, or keep.
    pub port: Option<u16>,
    /// New path, or keep.
    pub path: Option<String>,
    /// Replace the matched prefix.
    pub prefix_rewrite: Option<String>,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
    /// Drop the query string.
    pub strip_query: bool,
}

impl RedirectSpec {
    /// A "redirect" to the request's own URL, as a `location` header needs it.
    pub fn request_url(status: u16) -> Self {
        RedirectSpec {
            scheme: None,
            host: None,
            port: None,
            path: None,
            prefix_rewrite: None,
            status,
            strip_query: false,
        }
    }

    /// The `location` for a request with this scheme, Host/`:authority` and path (with query),
    /// matched by a route with path condition `matched`.
    pub fn location(
        &self,
        matched: &PathMatch,
        scheme: Option<&[u8]>,
        authority: &[u8],
        full_path: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::new();
        match &self.scheme {
            Some(s) => out.extend_from_slice(s.as_bytes()),
            None => out.extend_from_slice(scheme.filter(|s| *s == b"https").unwrap_or(b"http")),
        }
        out.extend_from_slice(b"://");
        let host = self
            .host
            .as_deref()
            .map(str::as_bytes)
            .unwrap_or_else(|| strip_port(authority));
        out.extend_from_slice(host);
        match self.port {
            Some(p) => out.extend_from_slice(format!(":{p}").as_bytes()),
            // As Envoy: the client's port stays unless the host changes, or the scheme changes
            // and the port is the old scheme's default (`http://a:80` -> `https://a`, but
            // `http://a:8443` -> `https://a:8443`).
            None if self.host.is_none() => {
                let port = authority
                    .get(strip_port(authority).len()..)
                    .unwrap_or_default();
                let old: &[u8] = if scheme == Some(b"https") {
                    b"https"
                } else {
                    b"http"
                };
                let changed = self.scheme.as_deref().is_some_and(|s| s.as_bytes() != old);
                let default: &[u8] = if old == b"https" { b":443" } else { b":80" };
                if !(changed && port == default) {
                    out.extend_from_slice(port);
                }
            }
            None => {}
        }
        let path = path_only(full_path);
        let query = if self.strip_query {
            &b""[..]
        } else {
            full_path.get(path.len()..).unwrap_or_default()
        };
        match (&self.path, &self.prefix_rewrite, matched) {
            (Some(p), _, _) => out.extend_from_slice(p.as_bytes()),
            (None, Some(rw), PathMatch::Prefix(prefix)) => {
                out.extend_from_slice(rw.as_bytes());
                out.extend_from_slice(path.get(prefix.len()..).unwrap_or_default());
            }
            _ => out.extend_from_slice(path),
        }
        out.extend_from_slice(query);
        out
    }
}

/// What a matched route does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Forward to an Envoy cluster.
    Forward {
        /// Cluster name set in the upstream header (shared by the routes with the same target).
        cluster: Arc<str>,
        /// Replacement for the matched prefix (or whole path).
        prefix_rewrite: Option<String>,
        /// Replacement authority.
        host_rewrite: Option<String>,
    },
    /// Answer locally.
    Direct(LocalBody),
    /// Answer with a redirect (boxed: the biggest and rarest action).
    Redirect(Box<RedirectSpec>),
}

/// A compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Name for logs and `${route}`.
    pub name: String,
    /// Path condition.
    pub path: PathMatch,
    /// Allowed methods; empty: any.
    pub methods: Vec<String>,
    /// Header conditions.
    pub headers: Vec<HeaderCond>,
    /// The action.
    pub action: Action,
    /// A gRPC-Web route: marked for the `grpc_web` filter placed after the filter.
    pub grpc_web: bool,
    /// Effective CORS policy (host merged with route), shared by the host's routes that have
    /// none of their own.
    pub cors: Option<Arc<CorsPolicy>>,
    /// Request header changes: host's (shared by its routes) then route's.
    pub request_ops: [Arc<HeaderOps>; 2],
    /// Response header changes: host's (shared by its routes) then route's.
    pub response_ops: [Arc<HeaderOps>; 2],
}

impl Route {
    /// Whether the request matches this route: path, method, then every header condition.
    pub fn matches<R: RequestHeaders + ?Sized>(&self, req: &R, path: &[u8], method: &[u8]) -> bool {
        self.matches_path_method(path, method) && self.headers.iter().all(|c| c.holds(req))
    }

    /// Path and method conditions (header conditions need the request; see [`Route::headers`]).
    pub fn matches_path_method(&self, path: &[u8], method: &[u8]) -> bool {
        let path = path_only(path);
        let path_ok = match &self.path {
            PathMatch::Prefix(p) => path.starts_with(p.as_bytes()),
            PathMatch::Exact(p) => path == p.as_bytes(),
            PathMatch::Regex(r) => r.is_match(path),
        };
        path_ok && (self.methods.is_empty() || self.methods.iter().any(|m| m.as_bytes() == method))
    }

    /// The new path for a forward with `prefix_rewrite` (query string kept).
    pub fn rewrite_path(&self, original: &[u8], replacement: &str, out: &mut Vec<u8>) {
        let path = path_only(original);
        let query = original.get(path.len()..).unwrap_or_default();
        let rest = match &self.path {
            PathMatch::Prefix(p) => path.get(p.len()..).unwrap_or_default(),
            PathMatch::Exact(_) | PathMatch::Regex(_) => b"",
        };
        out.clear();
        out.extend_from_slice(replacement.as_bytes());
        out.extend_from_slice(rest);
        out.extend_from_slice(query);
    }
}

/// A compiled virtual host.
#[derive(Debug, Clone)]
pub struct VirtualHost {
    /// Name for logs.
    pub name: String,
    /// Routes in order.
    pub routes: Vec<Route>,
}

/// Hosts and their lookup table.
#[derive(Debug, Clone, Default)]
pub struct Router {
    /// Domain table.
    pub table: HostTable,
    /// Hosts, indexed by the table.
    pub hosts: Vec<VirtualHost>,
}

impl Router {
    /// The first route of host `host` that the request matches, with its index.
    pub fn find<R: RequestHeaders + ?Sized>(
        &self,
        host: usize,
        req: &R,
        path: &[u8],
        method: &[u8],
    ) -> Option<(usize, &Route)> {
        self.hosts
            .get(host)?
            .routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(req, path, method))
    }
}

/// `/a/b?x#y` -> `/a/b`.
pub fn path_only(path: &[u8]) -> &[u8] {
    match path.iter().position(|&b| b == b'?' || b == b'#') {
        Some(i) => path.get(..i).unwrap_or(path),
        None => path,
    }
}
