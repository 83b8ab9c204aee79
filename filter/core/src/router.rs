//! The router: compiled routes, path/method/header conditions and the action each route takes.

use crate::cors::CorsPolicy;
use crate::headers::HeaderOps;
use crate::host::HostTable;
use regex::bytes::Regex;

/// How a route compares the path (always without the query string). No `match`: prefix `/`.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// Starts with.
    Prefix(String),
    /// Equal.
    Exact(String),
    /// Whole-path regular expression, compiled once.
    Regex(Regex),
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
    Regex(Regex),
    /// Present (`true`) or absent (`false`).
    Present(bool),
}

impl HeaderTest {
    /// Applies the test to a header's value (`None`: absent).
    pub fn check(&self, value: Option<&[u8]>) -> bool {
        match (self, value) {
            (HeaderTest::Present(want), v) => v.is_some() == *want,
            (_, None) => false,
            (HeaderTest::Exact(e), Some(v)) => v == e.as_slice(),
            (HeaderTest::Prefix(p), Some(v)) => v.starts_with(p),
            (HeaderTest::Regex(r), Some(v)) => r.is_match(v),
        }
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

/// What a matched route does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Forward to an Envoy cluster.
    Forward {
        /// Cluster name set in the upstream header.
        cluster: String,
        /// Replacement for the matched prefix (or whole path).
        prefix_rewrite: Option<String>,
        /// Replacement authority.
        host_rewrite: Option<String>,
    },
    /// Answer locally.
    Direct(LocalBody),
    /// Answer with a redirect.
    Redirect(RedirectSpec),
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
    /// Effective CORS policy (host merged with route).
    pub cors: Option<CorsPolicy>,
    /// Request header changes: host's then route's.
    pub request_ops: [HeaderOps; 2],
    /// Response header changes: host's then route's.
    pub response_ops: [HeaderOps; 2],
}

impl Route {
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

/// `/a/b?x#y` -> `/a/b`.
pub fn path_only(path: &[u8]) -> &[u8] {
    match path.iter().position(|&b| b == b'?' || b == b'#') {
        Some(i) => path.get(..i).unwrap_or(path),
        None => path,
    }
}
