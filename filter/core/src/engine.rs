//! The per-request flow: whether the config owns the request, then CORS, header rules,
//! rewrites and the routing decision; on the response, header rules and the CORS grant.
//!
//! The engine reads the request from one [`RequestHeaders`] snapshot and writes changes through
//! [`HeaderMap`], so the same code runs inside Envoy (the adapter maps both to proxy-wasm host
//! calls) and natively in tests, the plugin and the benchmarks.

use crate::config::Delivery;
use crate::cors::CorsPolicy;
use crate::headers::{HeaderOps, Vars};
// Defined beside the request views (cors.rs writes through it too); also kept at this path.
pub use crate::request::HeaderMap;
use crate::request::{HeaderList, RequestHeaders};
use crate::router::{Action, LocalBody, RedirectSpec, Route, Router};
use crate::upstream::{GRPC_WEB_HEADER, RESERVED_HEADERS, UPSTREAM_HEADER};

/// Why the filter answered locally (for metrics and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// No route matched on a listed host (or no host matched, with an explicit `notFound`).
    NotFound,
    /// A CORS preflight from an allowed origin.
    Preflight,
    /// A `directResponse` route.
    Direct,
    /// A `redirect` route.
    Redirect,
}

/// A local answer to send instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// Why.
    pub kind: ReplyKind,
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderList,
    /// Body.
    pub body: Vec<u8>,
}

/// What the engine remembers between request and response of one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestState {
    host: usize,
    route: usize,
    /// The allowed CORS origin to echo on the response.
    cors_origin: Option<Vec<u8>>,
    /// Host and path as forwarded (after rewrites), and the method: kept only when response
    /// rules read them. Envoy's `%REQ(:authority)%`/`%REQ(:path)%` in response headers read the
    /// request as sent upstream, so `${host}`/`${path}` do too on the response side.
    request: Option<[Vec<u8>; 3]>,
    /// The response phase has something to do (rules or a CORS grant).
    respond: bool,
}

impl RequestState {
    /// False when the response phase would change nothing: the adapter then skips it (no host
    /// call at all).
    pub fn needs_response(&self) -> bool {
        self.respond
    }
}

/// The decision for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOutcome {
    /// The config does not own this request: it was left exactly as it came (only a
    /// client-sent reserved header, if any, was removed), for Istio's own routes to handle.
    PassThrough,
    /// Forwarded (routed upstream, or delivered locally in sidecar-inbound); keep the state
    /// for the response.
    Forward(RequestState),
    /// Answer locally; the response phase has nothing left to do.
    Reply(LocalReply),
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

/// The compiled config, ready for requests. Build it with [`crate::compile`].
#[derive(Debug, Clone)]
pub struct Engine {
    router: Router,
    not_found: LocalBody,
    /// `notFound` was set and `notFoundHosts` is `all`: the filter also answers hosts the config does not list.
    own_all_hosts: bool,
    delivery: Delivery,
    /// [`revision_number`] of the config's revision, if it had one.
    pub(crate) revision: Option<u64>,
}

impl Engine {
    pub(crate) fn new(
        router: Router,
        not_found: LocalBody,
        own_all_hosts: bool,
        delivery: Delivery,
    ) -> Self {
        Engine {
            router,
            not_found,
            own_all_hosts,
            delivery,
            revision: None,
        }
    }

    /// The config's revision as the filter reports it (`mesh_filter_config_revision`).
    pub fn revision(&self) -> Option<u64> {
        self.revision
    }

    /// Number of hosts and routes, for the "configured" log line.
    pub fn size(&self) -> (usize, usize) {
        (
            self.router.hosts.len(),
            self.router.hosts.iter().map(|h| h.routes.len()).sum(),
        )
    }

    /// How routed requests are delivered.
    pub fn delivery(&self) -> Delivery {
        self.delivery
    }

    /// Every cluster a route may forward to (the plugin checks these exist).
    pub fn clusters(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .router
            .hosts
            .iter()
            .flat_map(|h| &h.routes)
            .filter_map(|r| match &r.action {
                Action::Forward { cluster, .. } => Some(&**cluster),
                _ => None,
            })
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    fn route(&self, state: &RequestState) -> Option<&Route> {
        self.router.hosts.get(state.host)?.routes.get(state.route)
    }

    /// The cluster a forwarded request was routed to.
    pub fn cluster(&self, state: &RequestState) -> Option<&str> {
        match &self.route(state)?.action {
            Action::Forward { cluster, .. } => Some(&**cluster),
            _ => None,
        }
    }

    /// Decides what to do with the request `req` and writes the request-side changes to `h`.
    /// Every read comes from `req` (the request as it arrived), never from `h`.
    pub fn on_request_headers<R, H>(&self, req: &R, h: &mut H) -> Result<RequestOutcome, H::Error>
    where
        R: RequestHeaders + ?Sized,
        H: HeaderMap,
    {
        // Only the filter may set its own headers; a client-sent one must never reach the
        // routing route or the grpc_web matcher. Removed only where present (no host call).
        for name in RESERVED_HEADERS {
            if req.first(name).is_some() {
                h.remove(name)?;
            }
        }
        let authority = req.first(":authority");
        let Some(hi) = self.router.table.lookup(authority) else {
            return Ok(match self.own_all_hosts {
                true => RequestOutcome::Reply(self.reply(ReplyKind::NotFound, &self.not_found)),
                false => RequestOutcome::PassThrough,
            });
        };
        let path = req.first(":path").unwrap_or_default();
        let method = req.first(":method").unwrap_or_default();
        let Some((ri, route)) = self.router.find(hi, req, path, method) else {
            return Ok(RequestOutcome::Reply(
                self.reply(ReplyKind::NotFound, &self.not_found),
            ));
        };
        let mut state = RequestState {
            host: hi,
            route: ri,
            ..Default::default()
        };
        let vars = Vars {
            host: authority.unwrap_or_default(),
            path,
            method,
            route: &route.name,
            cluster: "",
        };
        match &route.action {
            Action::Direct(body) => {
                let mut reply = self.reply(ReplyKind::Direct, body);
                // As Envoy (RFC 7231 7.1.2): a 201 or 3xx direct response names the request's
                // URL in `location`.
                if body.status == 201 || (300..400).contains(&body.status) {
                    let location = RedirectSpec::request_url(body.status).location(
                        &route.path,
                        req.first(":scheme"),
                        vars.host,
                        vars.path,
                    );
                    reply.headers.0.push(("location".to_owned(), location));
                }
                finish_local(route, &vars, &mut reply);
                Ok(RequestOutcome::Reply(reply))
            }
            Action::Redirect(spec) => {
                let location =
                    spec.location(&route.path, req.first(":scheme"), vars.host, vars.path);
                let mut reply = LocalReply {
                    kind: ReplyKind::Redirect,
                    status: spec.status,
                    headers: HeaderList(vec![("location".to_owned(), location)]),
                    body: Vec::new(),
                };
                finish_local(route, &vars, &mut reply);
                Ok(RequestOutcome::Reply(reply))
            }
            Action::Forward {
                cluster,
                prefix_rewrite,
                host_rewrite,
            } => {
                // Envoy's CORS filter only acts on routes that forward (it skips routes
                // without a route entry): direct responses and redirects get no CORS at all.
                if let Some(policy) = &route.cors {
                    if let Some(reply) = cors_request(policy, req, method, &mut state) {
                        return Ok(RequestOutcome::Reply(reply));
                    }
                }
                let vars = Vars { cluster, ..vars };
                let mut buf = Vec::new();
                for ops in &route.request_ops {
                    apply_ops(ops, &vars, h, &mut buf)?;
                }
                // Like Envoy's router: header rules see the request as received, then the
                // rewrites record what they replaced in x-envoy-original-path/-host.
                let keep = route.response_ops.iter().any(|o| o.uses_request());
                let mut upstream_path = None;
                if let Some(rw) = prefix_rewrite {
                    route.rewrite_path(path, rw, &mut buf);
                    h.set("x-envoy-original-path", path)?;
                    h.set(":path", &buf)?;
                    if keep {
                        upstream_path = Some(std::mem::take(&mut buf));
                    }
                }
                if let Some(host) = host_rewrite {
                    if let Some(a) = authority {
                        h.set("x-envoy-original-host", a)?;
                    }
                    h.set(":authority", host.as_bytes())?;
                }
                if self.delivery == Delivery::Upstream {
                    h.set(UPSTREAM_HEADER, cluster.as_bytes())?;
                }
                if route.grpc_web {
                    h.set(GRPC_WEB_HEADER, b"1")?;
                }
                if keep {
                    let host = match host_rewrite {
                        Some(hr) => hr.as_bytes().to_vec(),
                        None => vars.host.to_vec(),
                    };
                    let path = upstream_path.unwrap_or_else(|| path.to_vec());
                    state.request = Some([host, path, method.to_vec()]);
                }
                state.respond =
                    state.cors_origin.is_some() || route.response_ops.iter().any(|o| !o.is_empty());
                Ok(RequestOutcome::Forward(state))
            }
        }
    }

    /// Applies response header rules and the CORS grant for a forwarded request.
    pub fn on_response_headers<H: HeaderMap>(
        &self,
        state: &RequestState,
        h: &mut H,
    ) -> Result<(), H::Error> {
        let Some(route) = self.route(state) else {
            return Ok(());
        };
        let cluster = match &route.action {
            Action::Forward { cluster, .. } => &**cluster,
            _ => "",
        };
        let (host, path, method) = match &state.request {
            Some([a, b, c]) => (a.as_slice(), b.as_slice(), c.as_slice()),
            None => (&b""[..], &b""[..], &b""[..]),
        };
        let vars = Vars {
            host,
            path,
            method,
            route: &route.name,
            cluster,
        };
        let mut buf = Vec::new();
        for ops in &route.response_ops {
            apply_ops(ops, &vars, h, &mut buf)?;
        }
        match (&route.cors, &state.cors_origin) {
            (Some(policy), Some(origin)) => policy.grant(origin, h),
            _ => Ok(()),
        }
    }

    /// Convenience for callers without a host (tests, tools): runs the request phase on `h`
    /// as both the snapshot and the map changed.
    pub fn on_request_list(&self, h: &mut HeaderList) -> RequestOutcome {
        let snapshot = h.clone();
        match self.on_request_headers(&snapshot, h) {
            Ok(outcome) => outcome,
            Err(never) => match never {},
        }
    }

    fn reply(&self, kind: ReplyKind, body: &LocalBody) -> LocalReply {
        let mut headers = HeaderList::default();
        if let Some(ct) = &body.content_type {
            headers
                .0
                .push(("content-type".to_owned(), ct.as_bytes().to_vec()));
        }
        LocalReply {
            kind,
            status: body.status,
            headers,
            body: body.body.clone(),
        }
    }
}

/// The CORS half of the request phase: the answer to a preflight from an allowed origin, or
/// (recorded in `state`) the origin to grant on the response. A preflight from another origin
/// is forwarded untouched, as Envoy does.
fn cors_request<R: RequestHeaders + ?Sized>(
    policy: &CorsPolicy,
    req: &R,
    method: &[u8],
    state: &mut RequestState,
) -> Option<LocalReply> {
    let origin = req.first("origin").filter(|o| !o.is_empty())?;
    let allowed = policy.allows(origin);
    let request_method = match method {
        b"OPTIONS" => req
            .first("access-control-request-method")
            .filter(|m| !m.is_empty()),
        _ => None,
    };
    match request_method {
        Some(rm) if allowed => {
            let request_headers = match &policy.allow_headers {
                Some(v) if CorsPolicy::echo(v) => req.first("access-control-request-headers"),
                _ => None,
            };
            Some(LocalReply {
                kind: ReplyKind::Preflight,
                status: 200,
                headers: policy.preflight_headers(origin, rm, request_headers.unwrap_or_default()),
                body: Vec::new(),
            })
        }
        None if allowed => {
            state.cors_origin = Some(origin.to_vec());
            None
        }
        _ => None,
    }
}

/// Route response rules on a direct response or redirect, as Envoy's router adds them.
fn finish_local(route: &Route, vars: &Vars<'_>, reply: &mut LocalReply) {
    let mut buf = Vec::new();
    for ops in &route.response_ops {
        match apply_ops(ops, vars, &mut reply.headers, &mut buf) {
            Ok(()) => {}
            Err(never) => match never {},
        }
    }
}

/// Applies one level of rules: remove, then set, then add. A value that renders empty is
/// skipped (the header is neither set nor added, an existing one stays), as Envoy does for
/// header values without `keep_empty_value`.
fn apply_ops<H: HeaderMap>(
    ops: &HeaderOps,
    vars: &Vars<'_>,
    h: &mut H,
    buf: &mut Vec<u8>,
) -> Result<(), H::Error> {
    for name in &ops.remove {
        h.remove(name)?;
    }
    for (append, (name, t)) in ops
        .set
        .iter()
        .map(|op| (false, op))
        .chain(ops.add.iter().map(|op| (true, op)))
    {
        let value: &[u8] = match t.literal() {
            Some(v) => v,
            None => {
                t.render(vars, buf);
                buf
            }
        };
        match (value.is_empty(), append) {
            (true, _) => {}
            (false, false) => h.set(name, value)?,
            (false, true) => h.add(name, value)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod local_tests;
#[cfg(test)]
mod tests;
