//! The per-request engine: given request headers, route, answer CORS preflights, rewrite and pick
//! the upstream; given response headers, apply header rules and CORS headers.
//!
//! The engine talks to headers only through [`HeaderMap`], so the same code runs inside Envoy
//! (the adapter maps it to proxy-wasm host calls) and natively in tests and the plugin.

use crate::cors::CorsPolicy;
use crate::headers::{HeaderOps, Vars};
use crate::host::strip_port;
use crate::router::{path_only, Action, LocalBody, PathMatch, RedirectSpec, Route, Router};
use crate::upstream::UPSTREAM_HEADER;

/// Header access the engine needs. Names are lower-case.
pub trait HeaderMap {
    /// Error of the underlying host (never produced by in-memory maps).
    type Error;
    /// The first value of `name`, if present.
    fn get(&mut self, name: &str) -> Result<Option<Vec<u8>>, Self::Error>;
    /// Replaces all values of `name`.
    fn set(&mut self, name: &str, value: &[u8]) -> Result<(), Self::Error>;
    /// Appends a value.
    fn add(&mut self, name: &str, value: &[u8]) -> Result<(), Self::Error>;
    /// Removes all values of `name`.
    fn remove(&mut self, name: &str) -> Result<(), Self::Error>;
}

/// An in-memory header list: local replies are built in it, and tests use it as a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderList(pub Vec<(String, Vec<u8>)>);

impl HeaderList {
    /// Builds a list from `(name, value)` pairs.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        HeaderList(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
                .collect(),
        )
    }
    /// The first value of `name` as text (lossy), for assertions and logs.
    pub fn text(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

impl HeaderMap for HeaderList {
    type Error = std::convert::Infallible;
    fn get(&mut self, name: &str) -> Result<Option<Vec<u8>>, Self::Error> {
        Ok(self
            .0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone()))
    }
    fn set(&mut self, name: &str, value: &[u8]) -> Result<(), Self::Error> {
        self.0.retain(|(k, _)| k != name);
        self.0.push((name.to_owned(), value.to_vec()));
        Ok(())
    }
    fn add(&mut self, name: &str, value: &[u8]) -> Result<(), Self::Error> {
        self.0.push((name.to_owned(), value.to_vec()));
        Ok(())
    }
    fn remove(&mut self, name: &str) -> Result<(), Self::Error> {
        self.0.retain(|(k, _)| k != name);
        Ok(())
    }
}

/// Why the filter answered locally (for metrics and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// No host or route matched.
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
}

/// The decision for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOutcome {
    /// Forward upstream to `cluster`; keep the state for the response.
    Forward {
        /// The chosen cluster.
        cluster: String,
        /// State for [`Engine::on_response_headers`].
        state: RequestState,
    },
    /// Answer locally; the response phase has nothing left to do.
    Reply(LocalReply),
}

/// The compiled config, ready for requests. Build it with [`crate::compile`].
#[derive(Debug, Clone)]
pub struct Engine {
    router: Router,
    not_found: LocalBody,
}

impl Engine {
    pub(crate) fn new(router: Router, not_found: LocalBody) -> Self {
        Engine { router, not_found }
    }

    /// Number of hosts and routes, for the "configured" log line.
    pub fn size(&self) -> (usize, usize) {
        (
            self.router.hosts.len(),
            self.router.hosts.iter().map(|h| h.routes.len()).sum(),
        )
    }

    /// Every cluster a route may forward to (the plugin checks these exist).
    pub fn clusters(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .router
            .hosts
            .iter()
            .flat_map(|h| &h.routes)
            .filter_map(|r| match &r.action {
                Action::Forward { cluster, .. } => Some(cluster.as_str()),
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

    /// Decides what to do with a request and applies the request-side changes to `h`.
    pub fn on_request_headers<H: HeaderMap>(&self, h: &mut H) -> Result<RequestOutcome, H::Error> {
        // Whatever happens next, a client-sent routing header must never reach the router.
        h.remove(UPSTREAM_HEADER)?;
        let authority = h.get(":authority")?;
        let path = h.get(":path")?.unwrap_or_default();
        let method = h.get(":method")?.unwrap_or_default();

        let Some((hi, ri, route)) = self.find(h, authority.as_deref(), &path, &method)? else {
            return Ok(RequestOutcome::Reply(
                self.reply(ReplyKind::NotFound, &self.not_found),
            ));
        };
        let mut state = RequestState {
            host: hi,
            route: ri,
            ..Default::default()
        };

        // Envoy's CORS filter only acts on routes that forward (it skips routes without a route
        // entry, i.e. direct responses and redirects): no preflight answer, no CORS headers.
        let cors = match route.action {
            Action::Forward { .. } => route.cors.as_ref(),
            _ => None,
        };
        if let Some(policy) = cors {
            if let Some(origin) = h.get("origin")?.filter(|o| !o.is_empty()) {
                let request_method = if method == b"OPTIONS" {
                    h.get("access-control-request-method")?
                        .filter(|m| !m.is_empty())
                } else {
                    None
                };
                let allowed = policy.allows(&origin);
                match request_method {
                    Some(rm) if allowed => {
                        let request_headers = match &policy.allow_headers {
                            Some(v) if CorsPolicy::echo(v) => {
                                h.get("access-control-request-headers")?
                            }
                            _ => None,
                        };
                        return Ok(RequestOutcome::Reply(preflight_reply(
                            policy,
                            &origin,
                            &rm,
                            request_headers.as_deref().unwrap_or_default(),
                        )));
                    }
                    // A disallowed preflight is forwarded untouched, as Envoy does.
                    Some(_) => {}
                    None if allowed => state.cors_origin = Some(origin),
                    None => {}
                }
            }
        }

        let vars = Vars {
            host: authority.as_deref().unwrap_or_default(),
            path: &path,
            method: &method,
            route: &route.name,
            cluster: "",
        };
        match &route.action {
            Action::Direct(body) => {
                let mut reply = self.reply(ReplyKind::Direct, body);
                self.finish_local(route, &vars, &mut reply);
                Ok(RequestOutcome::Reply(reply))
            }
            Action::Redirect(spec) => {
                let scheme = h.get(":scheme")?;
                let location = redirect_location(route, spec, scheme.as_deref(), &vars);
                let mut reply = LocalReply {
                    kind: ReplyKind::Redirect,
                    status: spec.status,
                    headers: HeaderList(vec![("location".to_owned(), location)]),
                    body: Vec::new(),
                };
                self.finish_local(route, &vars, &mut reply);
                Ok(RequestOutcome::Reply(reply))
            }
            Action::Forward {
                cluster,
                prefix_rewrite,
                host_rewrite,
            } => {
                let vars = Vars { cluster, ..vars };
                let mut buf = Vec::new();
                for ops in &route.request_ops {
                    apply_ops(ops, &vars, h, &mut buf)?;
                }
                // Like Envoy's router: header rules see the request as received, then the
                // rewrites record what they replaced in x-envoy-original-path/-host.
                let keep = route.response_ops.iter().any(HeaderOps::uses_request);
                let mut upstream_path = None;
                if let Some(rw) = prefix_rewrite {
                    route.rewrite_path(&path, rw, &mut buf);
                    h.set("x-envoy-original-path", &path)?;
                    h.set(":path", &buf)?;
                    if keep {
                        upstream_path = Some(std::mem::take(&mut buf));
                    }
                }
                if let Some(host) = host_rewrite {
                    if let Some(a) = &authority {
                        h.set("x-envoy-original-host", a)?;
                    }
                    h.set(":authority", host.as_bytes())?;
                }
                h.set(UPSTREAM_HEADER, cluster.as_bytes())?;
                if keep {
                    let host = match host_rewrite {
                        Some(hr) => hr.as_bytes().to_vec(),
                        None => vars.host.to_vec(),
                    };
                    let path = upstream_path.unwrap_or_else(|| path.clone());
                    state.request = Some([host, path, method.clone()]);
                }
                Ok(RequestOutcome::Forward {
                    cluster: cluster.clone(),
                    state,
                })
            }
        }
    }

    /// Applies response header rules and CORS headers for a forwarded request.
    pub fn on_response_headers<H: HeaderMap>(
        &self,
        state: &RequestState,
        h: &mut H,
    ) -> Result<(), H::Error> {
        let Some(route) = self.route(state) else {
            return Ok(());
        };
        let cluster = match &route.action {
            Action::Forward { cluster, .. } => cluster.as_str(),
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
        cors_response_headers(route, state, h)
    }

    fn find<H: HeaderMap>(
        &self,
        h: &mut H,
        authority: Option<&[u8]>,
        path: &[u8],
        method: &[u8],
    ) -> Result<Option<(usize, usize, &Route)>, H::Error> {
        let Some(hi) = self.router.table.lookup(authority) else {
            return Ok(None);
        };
        let Some(host) = self.router.hosts.get(hi) else {
            return Ok(None);
        };
        'routes: for (ri, route) in host.routes.iter().enumerate() {
            if !route.matches_path_method(path, method) {
                continue;
            }
            for cond in &route.headers {
                let v = h.get(&cond.name)?;
                if cond.test.check(v.as_deref()) == cond.invert {
                    continue 'routes;
                }
            }
            return Ok(Some((hi, ri, route)));
        }
        Ok(None)
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

    /// Route response rules on a direct response or redirect, as Envoy's router adds them.
    /// No CORS headers: Envoy's CORS filter ignores routes without a route entry.
    fn finish_local(&self, route: &Route, vars: &Vars<'_>, reply: &mut LocalReply) {
        let mut buf = Vec::new();
        for ops in &route.response_ops {
            // HeaderList is infallible.
            let _ = apply_ops(ops, vars, &mut reply.headers, &mut buf);
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

fn cors_response_headers<H: HeaderMap>(
    route: &Route,
    state: &RequestState,
    h: &mut H,
) -> Result<(), H::Error> {
    let (Some(policy), Some(origin)) = (&route.cors, &state.cors_origin) else {
        return Ok(());
    };
    h.set("access-control-allow-origin", origin)?;
    if policy.credentials {
        h.set("access-control-allow-credentials", b"true")?;
    }
    if let Some(e) = &policy.expose_headers {
        h.set("access-control-expose-headers", e.as_bytes())?;
    }
    // The answer depends on the Origin: caches must key on it.
    h.add("vary", b"Origin")?;
    Ok(())
}

/// The answer to a preflight from an allowed origin, header for header what Envoy sends: its
/// CORS filter answers the preflight and then also runs its response half on that answer, so
/// `Access-Control-Expose-Headers` is on preflights too. `*` methods/headers echo the request's
/// `Access-Control-Request-Method`/`-Headers` (`request_headers` is empty when absent).
fn preflight_reply(
    policy: &CorsPolicy,
    origin: &[u8],
    request_method: &[u8],
    request_headers: &[u8],
) -> LocalReply {
    let mut headers = HeaderList(Vec::with_capacity(7));
    headers
        .0
        .push(("access-control-allow-origin".to_owned(), origin.to_vec()));
    if policy.credentials {
        headers.0.push((
            "access-control-allow-credentials".to_owned(),
            b"true".to_vec(),
        ));
    }
    for (name, value, echo) in [
        (
            "access-control-allow-methods",
            &policy.allow_methods,
            request_method,
        ),
        (
            "access-control-allow-headers",
            &policy.allow_headers,
            request_headers,
        ),
    ] {
        if let Some(v) = value {
            let v = if CorsPolicy::echo(v) {
                echo
            } else {
                v.as_bytes()
            };
            headers.0.push((name.to_owned(), v.to_vec()));
        }
    }
    for (name, value) in [
        ("access-control-max-age", &policy.max_age),
        ("access-control-expose-headers", &policy.expose_headers),
    ] {
        if let Some(v) = value {
            headers.0.push((name.to_owned(), v.as_bytes().to_vec()));
        }
    }
    headers.0.push(("vary".to_owned(), b"Origin".to_vec()));
    LocalReply {
        kind: ReplyKind::Preflight,
        status: 200,
        headers,
        body: Vec::new(),
    }
}

fn redirect_location(
    route: &Route,
    spec: &RedirectSpec,
    scheme: Option<&[u8]>,
    vars: &Vars<'_>,
) -> Vec<u8> {
    let mut out = Vec::new();
    match &spec.scheme {
        Some(s) => out.extend_from_slice(s.as_bytes()),
        None => out.extend_from_slice(scheme.filter(|s| *s == b"https").unwrap_or(b"http")),
    }
    out.extend_from_slice(b"://");
    let original = vars.host;
    let host = spec
        .host
        .as_deref()
        .map(str::as_bytes)
        .unwrap_or_else(|| strip_port(original));
    out.extend_from_slice(host);
    match spec.port {
        Some(p) => out.extend_from_slice(format!(":{p}").as_bytes()),
        // As Envoy: the client's port stays unless the host changes, or the scheme changes and
        // the port is the old scheme's default (`http://a:80` -> `https://a`, but
        // `http://a:8443` -> `https://a:8443`).
        None if spec.host.is_none() => {
            let port = original
                .get(strip_port(original).len()..)
                .unwrap_or_default();
            let old: &[u8] = if scheme == Some(b"https") {
                b"https"
            } else {
                b"http"
            };
            let changed = spec.scheme.as_deref().is_some_and(|s| s.as_bytes() != old);
            let default: &[u8] = if old == b"https" { b":443" } else { b":80" };
            if !(changed && port == default) {
                out.extend_from_slice(port);
            }
        }
        None => {}
    }
    let path = path_only(vars.path);
    let query = if spec.strip_query {
        &b""[..]
    } else {
        vars.path.get(path.len()..).unwrap_or_default()
    };
    match (&spec.path, &spec.prefix_rewrite, &route.path) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile_json;
    use serde_json::json;

    fn engine(hosts: serde_json::Value) -> Engine {
        let doc = json!({"apiVersion": "kubectl-mesh/v1alpha1", "kind": "MeshConfig", "namespace": "digimon", "hosts": hosts});
        compile_json(&doc.to_string()).unwrap()
    }

    fn req(
        authority: Option<&str>,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
    ) -> HeaderList {
        let mut h =
            HeaderList::from_pairs([(":method", method), (":path", path), (":scheme", "http")]);
        if let Some(a) = authority {
            h.0.push((":authority".into(), a.as_bytes().to_vec()));
        }
        h.0.extend(HeaderList::from_pairs(extra.iter().copied()).0);
        h
    }

    fn digimon() -> Engine {
        engine(json!([
            {"domains": ["api.backend.com"],
             "cors": {"allowOrigins": [{"exact": "http://web.backend.com"}], "allowMethods": ["POST"], "allowCredentials": true, "maxAge": 60},
             "routes": [{"match": {"prefix": "/digimon.Digimon/"}, "grpcWeb": true, "to": {"service": "server", "port": 6000}}]},
            {"domains": ["web.backend.com"], "routes": [{"to": {"service": "web", "port": 8060}}]}
        ]))
    }

    #[test]
    fn routes_by_host_and_prefix_and_strips_spoofed_header() {
        let e = digimon();
        let mut h = req(
            Some("api.backend.com"),
            "POST",
            "/digimon.Digimon/Query",
            &[("x-mesh-upstream", "evil")],
        );
        let out = e.on_request_headers(&mut h).unwrap();
        assert!(
            matches!(out, RequestOutcome::Forward { ref cluster, .. } if cluster == "outbound|6000||server.digimon.svc.cluster.local")
        );
        assert_eq!(h.0.iter().filter(|(k, _)| k == UPSTREAM_HEADER).count(), 1);
        assert_eq!(
            h.text(UPSTREAM_HEADER).unwrap(),
            "outbound|6000||server.digimon.svc.cluster.local"
        );

        let mut h = req(Some("WEB.backend.com:80"), "GET", "/index.html", &[]);
        assert!(
            matches!(e.on_request_headers(&mut h).unwrap(), RequestOutcome::Forward { ref cluster, .. } if cluster.contains("web.digimon"))
        );
    }

    #[test]
    fn unknown_host_missing_authority_and_unmatched_path_get_404_without_upstream() {
        let e = digimon();
        for mut h in [
            req(
                Some("other.com"),
                "GET",
                "/",
                &[(
                    "x-mesh-upstream",
                    "outbound|6000||server.digimon.svc.cluster.local",
                )],
            ),
            req(None, "GET", "/", &[]),
            req(Some("api.backend.com"), "GET", "/other", &[]),
        ] {
            match e.on_request_headers(&mut h).unwrap() {
                RequestOutcome::Reply(r) => {
                    assert_eq!((r.kind, r.status), (ReplyKind::NotFound, 404))
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(h.text(UPSTREAM_HEADER), None);
        }
    }

    #[test]
    fn cors_preflight_and_actual() {
        let e = digimon();
        let origin = ("origin", "http://web.backend.com");
        let mut pre = req(
            Some("api.backend.com"),
            "OPTIONS",
            "/digimon.Digimon/Query",
            &[origin, ("access-control-request-method", "POST")],
        );
        let RequestOutcome::Reply(r) = e.on_request_headers(&mut pre).unwrap() else {
            panic!()
        };
        assert_eq!((r.kind, r.status), (ReplyKind::Preflight, 200));
        assert_eq!(
            r.headers.text("access-control-allow-origin").unwrap(),
            "http://web.backend.com"
        );
        assert_eq!(
            r.headers.text("access-control-allow-credentials").unwrap(),
            "true"
        );
        assert!(r
            .headers
            .text("access-control-allow-headers")
            .unwrap()
            .contains("x-grpc-web"));
        assert_eq!(r.headers.text("access-control-max-age").unwrap(), "60");

        let mut bad = req(
            Some("api.backend.com"),
            "OPTIONS",
            "/digimon.Digimon/Query",
            &[
                ("origin", "http://evil"),
                ("access-control-request-method", "POST"),
            ],
        );
        assert!(matches!(
            e.on_request_headers(&mut bad).unwrap(),
            RequestOutcome::Forward { .. }
        ));

        let mut actual = req(
            Some("api.backend.com"),
            "POST",
            "/digimon.Digimon/Query",
            &[origin],
        );
        let RequestOutcome::Forward { state, .. } = e.on_request_headers(&mut actual).unwrap()
        else {
            panic!()
        };
        let mut resp = HeaderList::from_pairs([(":status", "200")]);
        e.on_response_headers(&state, &mut resp).unwrap();
        assert_eq!(
            resp.text("access-control-allow-origin").unwrap(),
            "http://web.backend.com"
        );
        assert!(resp
            .text("access-control-expose-headers")
            .unwrap()
            .contains("grpc-status"));

        let mut other = req(
            Some("api.backend.com"),
            "POST",
            "/digimon.Digimon/Query",
            &[("origin", "http://evil")],
        );
        let RequestOutcome::Forward { state, .. } = e.on_request_headers(&mut other).unwrap()
        else {
            panic!()
        };
        let mut resp = HeaderList::from_pairs([(":status", "200")]);
        e.on_response_headers(&state, &mut resp).unwrap();
        assert_eq!(resp.text("access-control-allow-origin"), None);
    }

    #[test]
    fn rewrites_direct_responses_and_redirects() {
        let e = engine(json!([{"domains": ["*"], "routes": [
            {"match": {"prefix": "/old/"}, "redirect": {"prefixRewrite": "/new/", "status": 308}},
            {"match": {"path": "/health"}, "directResponse": {"status": 200, "body": "ok"}, "responseHeaders": {"set": {"x-served-by": "mesh ${route}"}}, "name": "health"},
            {"match": {"prefix": "/api/", "methods": ["GET"], "headers": [{"name": "x-env", "exact": "canary"}]},
             "to": {"cluster": "canary", "prefixRewrite": "/v2/", "hostRewrite": "internal"},
             "requestHeaders": {"set": {"x-original-host": "${host}"}, "remove": ["x-drop"]}},
            {"match": {"regex": "/api/[0-9]+"}, "to": {"service": "api.other", "port": 80}}
        ]}]));
        let mut h = req(Some("a.com:8080"), "GET", "/old/x?q=1", &[]);
        let RequestOutcome::Reply(r) = e.on_request_headers(&mut h).unwrap() else {
            panic!()
        };
        assert_eq!(
            (r.status, r.headers.text("location").unwrap()),
            (308, "http://a.com:8080/new/x?q=1".to_string())
        );

        let mut h = req(Some("a.com"), "GET", "/health", &[]);
        let RequestOutcome::Reply(r) = e.on_request_headers(&mut h).unwrap() else {
            panic!()
        };
        assert_eq!(
            (
                r.status,
                r.body.as_slice(),
                r.headers.text("x-served-by").unwrap()
            ),
            (200, &b"ok"[..], "mesh health".into())
        );

        let mut h = req(
            Some("a.com"),
            "GET",
            "/api/users?x",
            &[("x-env", "canary"), ("x-drop", "1")],
        );
        let RequestOutcome::Forward { cluster, .. } = e.on_request_headers(&mut h).unwrap() else {
            panic!()
        };
        assert_eq!(cluster, "canary");
        assert_eq!(h.text(":path").unwrap(), "/v2/users?x");
        assert_eq!(h.text(":authority").unwrap(), "internal");
        assert_eq!(h.text("x-original-host").unwrap(), "a.com");
        assert_eq!(h.text("x-drop"), None);

        let mut h = req(Some("a.com"), "GET", "/api/123", &[]);
        let RequestOutcome::Forward { cluster, .. } = e.on_request_headers(&mut h).unwrap() else {
            panic!()
        };
        assert_eq!(cluster, "outbound|80||api.other.svc.cluster.local");
        let mut h = req(Some("a.com"), "GET", "/api/12x", &[]);
        assert!(matches!(
            e.on_request_headers(&mut h).unwrap(),
            RequestOutcome::Reply(_)
        ));
    }

    /// The port rule of Envoy 1.40's redirects, measured on native Envoy (the import suite's
    /// handmade config found it): a scheme change drops only the old scheme's default port.
    #[test]
    fn redirect_ports_follow_envoy() {
        let e = engine(json!([{"domains": ["*"], "routes": [
            {"match": {"path": "/https"}, "redirect": {"scheme": "https"}},
            {"match": {"path": "/http"}, "redirect": {"scheme": "http"}},
            {"match": {"path": "/host"}, "redirect": {"host": "new.example"}},
            {"match": {"path": "/path"}, "redirect": {"path": "/p"}},
            {"match": {"path": "/port"}, "redirect": {"port": 7000}}
        ]}]));
        let loc = |host: &str, path: &str| {
            let mut h = req(Some(host), "GET", path, &[]);
            let RequestOutcome::Reply(r) = e.on_request_headers(&mut h).unwrap() else {
                panic!()
            };
            r.headers.text("location").unwrap()
        };
        for (host, path, want) in [
            ("a.example", "/https", "https://a.example/https"),
            ("a.example:80", "/https", "https://a.example/https"),
            ("a.example:443", "/https", "https://a.example:443/https"),
            ("a.example:8443", "/https", "https://a.example:8443/https"),
            ("a.example:80", "/http", "http://a.example:80/http"),
            ("a.example:8443", "/host", "http://new.example/host"),
            ("a.example:8443", "/path", "http://a.example:8443/p"),
            ("a.example:8443", "/port", "http://a.example:7000/port"),
        ] {
            assert_eq!(loc(host, path), want, "{host}{path}");
        }
    }

    #[test]
    fn preflights_match_envoy_expose_and_star_echo() {
        let e = engine(json!([{"domains": ["a.test"], "routes": [
            {"match": {"prefix": "/star/"}, "to": {"cluster": "c"},
             "cors": {"allowOrigins": [{"exact": "https://o"}], "allowMethods": ["*"], "allowHeaders": ["*"], "exposeHeaders": ["x-e"]}},
            {"match": {"prefix": "/"}, "to": {"cluster": "c"},
             "cors": {"allowOrigins": [{"exact": "https://o"}], "allowMethods": ["GET"], "exposeHeaders": ["x-e"]}}
        ]}]));
        let pre = |path: &str, extra: &[(&str, &str)]| {
            let mut all = vec![
                ("origin", "https://o"),
                ("access-control-request-method", "PATCH"),
            ];
            all.extend_from_slice(extra);
            let mut h = req(Some("a.test"), "OPTIONS", path, &all);
            match e.on_request_headers(&mut h).unwrap() {
                RequestOutcome::Reply(r) => r.headers,
                other => panic!("{other:?}"),
            }
        };
        let h = pre("/x", &[]);
        assert_eq!(
            h.text("access-control-expose-headers").as_deref(),
            Some("x-e")
        );
        assert_eq!(
            h.text("access-control-allow-methods").as_deref(),
            Some("GET")
        );
        let h = pre("/star/x", &[("access-control-request-headers", "x-a, x-b")]);
        assert_eq!(
            h.text("access-control-allow-methods").as_deref(),
            Some("PATCH")
        );
        assert_eq!(
            h.text("access-control-allow-headers").as_deref(),
            Some("x-a, x-b")
        );
        // Envoy sends the echo even when the request has no headers to echo.
        let h = pre("/star/x", &[]);
        assert_eq!(h.text("access-control-allow-headers").as_deref(), Some(""));
        // OPTIONS with an empty request method is not a preflight: forwarded, CORS on the answer.
        let mut h = req(
            Some("a.test"),
            "OPTIONS",
            "/x",
            &[
                ("origin", "https://o"),
                ("access-control-request-method", ""),
            ],
        );
        let RequestOutcome::Forward { state, .. } = e.on_request_headers(&mut h).unwrap() else {
            panic!()
        };
        let mut resp = HeaderList::default();
        e.on_response_headers(&state, &mut resp).unwrap();
        assert_eq!(
            resp.text("access-control-allow-origin").as_deref(),
            Some("https://o")
        );
    }

    #[test]
    fn direct_responses_and_redirects_get_no_cors_like_envoy() {
        let e = engine(json!([{"domains": ["a.test"],
        "cors": {"allowOrigins": [{"any": true}], "exposeHeaders": ["x-e"]},
        "routes": [
            {"match": {"path": "/direct"}, "directResponse": {"status": 200, "body": "ok"}},
            {"match": {"prefix": "/old/"}, "redirect": {"prefixRewrite": "/new/"}}
        ]}]));
        for (method, path) in [
            ("GET", "/direct"),
            ("OPTIONS", "/direct"),
            ("OPTIONS", "/old/x"),
        ] {
            let mut h = req(
                Some("a.test"),
                method,
                path,
                &[
                    ("origin", "https://o"),
                    ("access-control-request-method", "GET"),
                ],
            );
            let RequestOutcome::Reply(r) = e.on_request_headers(&mut h).unwrap() else {
                panic!()
            };
            assert_ne!(r.kind, ReplyKind::Preflight, "{method} {path}");
            assert_eq!(r.headers.text("access-control-allow-origin"), None);
        }
    }

    #[test]
    fn header_rules_skip_empty_values_and_see_the_forwarded_request_on_responses() {
        let e = engine(json!([{"domains": ["a.test"], "routes": [{
            "match": {"prefix": "/api/"},
            "to": {"cluster": "c", "prefixRewrite": "/v2/", "hostRewrite": "internal"},
            "requestHeaders": {"set": {"x-route": "${route}", "x-empty": "", "x-host": "${host}"}},
            "responseHeaders": {"set": {"x-resp": "${host}${path}"}, "add": {"x-route": "${route}"}}
        }]}]));
        let mut h = req(
            Some("a.test"),
            "GET",
            "/api/x?q",
            &[
                ("x-route", "client"),
                ("x-empty", "client"),
                ("x-envoy-original-path", "/spoof"),
            ],
        );
        let RequestOutcome::Forward { state, .. } = e.on_request_headers(&mut h).unwrap() else {
            panic!()
        };
        // An empty value sets nothing, so the client's value stays (Envoy's keep_empty_value).
        assert_eq!(h.text("x-route").as_deref(), Some("client"));
        assert_eq!(h.text("x-empty").as_deref(), Some("client"));
        assert_eq!(h.text("x-host").as_deref(), Some("a.test"));
        assert_eq!(h.text("x-envoy-original-path").as_deref(), Some("/api/x?q"));
        assert_eq!(h.text("x-envoy-original-host").as_deref(), Some("a.test"));
        let mut resp = HeaderList::default();
        e.on_response_headers(&state, &mut resp).unwrap();
        assert_eq!(resp.text("x-resp").as_deref(), Some("internal/v2/x?q"));
        assert_eq!(resp.text("x-route"), None);
    }

    #[test]
    fn invalid_configs_name_the_field() {
        let cases = [
            (
                json!({"apiVersion": "v0", "kind": "MeshConfig", "hosts": []}),
                "apiVersion",
            ),
            (
                json!({"apiVersion": "kubectl-mesh/v1alpha1", "kind": "MeshConfig", "hosts": [{"domains": ["a"], "routes": [{"match": {"regex": "("}, "to": {"cluster": "c"}}]}]}),
                "hosts[0].routes[0].match.regex",
            ),
            (
                json!({"apiVersion": "kubectl-mesh/v1alpha1", "kind": "MeshConfig", "hosts": [{"domains": ["a"], "routes": [{"to": {"service": "s"}}]}]}),
                "hosts[0].routes[0].to.port",
            ),
            (
                json!({"apiVersion": "kubectl-mesh/v1alpha1", "kind": "MeshConfig", "hosts": [{"domains": ["a"], "routes": [{"to": {"service": "s", "port": 1}, "typo": 1}]}]}),
                "hosts[0].routes[0].typo",
            ),
            (
                json!({"apiVersion": "kubectl-mesh/v1alpha1", "kind": "MeshConfig", "hosts": [{"domains": ["a"], "cors": {"allowOrigins": [{"any": true}], "allowCredentials": true}, "routes": [{"to": {"cluster": "c"}}]}]}),
                "hosts[0].cors",
            ),
            (
                json!({"apiVersion": "kubectl-mesh/v1alpha1", "kind": "MeshConfig", "hosts": [{"domains": ["a"], "routes": [{"to": {"cluster": "c"}, "requestHeaders": {"set": {"x": "a\nb"}}}]}]}),
                "hosts[0].routes[0].requestHeaders",
            ),
        ];
        for (doc, path) in cases {
            let err = compile_json(&doc.to_string()).unwrap_err();
            assert_eq!(err.path(), path, "{err}");
        }
    }
}
