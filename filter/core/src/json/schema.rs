//! The config schema read from JSON, type by type: each struct reader takes the members its
//! serde derive takes (same names, defaults and required fields, unknown ones refused), and
//! words every error as serde does.

use super::read::{Reader, Token};
use super::Fail;
use crate::config::{
    CorsConfig, Delivery, DirectResponse, HeaderMatch, HeaderRules, HostConfig, HostMatching,
    MeshConfig, NotFoundHosts, OriginMatch, Redirect, RouteConfig, RouteMatch, Target,
};
use std::collections::BTreeMap;

type Result<T> = std::result::Result<T, Fail>;

// Field names in serde's order (the derive's `FIELDS`; a test compares them).
pub(super) const MESH_CONFIG: &[&str] = &[
    "apiVersion",
    "kind",
    "namespace",
    "clusterDomain",
    "hosts",
    "hostMatching",
    "notFound",
    "notFoundHosts",
];
pub(super) const HOST_MATCHING: &[&str] = &["ignorePort", "ignoreTrailingDot"];
pub(super) const HOST_CONFIG: &[&str] = &[
    "name",
    "domains",
    "cors",
    "requestHeaders",
    "responseHeaders",
    "routes",
];
pub(super) const ROUTE_CONFIG: &[&str] = &[
    "name",
    "match",
    "grpcWeb",
    "cors",
    "requestHeaders",
    "responseHeaders",
    "to",
    "directResponse",
    "redirect",
];
pub(super) const ROUTE_MATCH: &[&str] = &["prefix", "path", "regex", "methods", "headers"];
pub(super) const HEADER_MATCH: &[&str] = &["name", "exact", "prefix", "regex", "present", "invert"];
pub(super) const TARGET: &[&str] = &[
    "service",
    "port",
    "cluster",
    "prefixRewrite",
    "hostRewrite",
    "http2",
];
pub(super) const DIRECT_RESPONSE: &[&str] = &["status", "body", "contentType"];
pub(super) const REDIRECT: &[&str] = &[
    "scheme",
    "host",
    "port",
    "path",
    "prefixRewrite",
    "status",
    "stripQuery",
];
pub(super) const CORS_CONFIG: &[&str] = &[
    "enabled",
    "allowOrigins",
    "allowMethods",
    "allowHeaders",
    "exposeHeaders",
    "maxAge",
    "allowCredentials",
];
pub(super) const ORIGIN_MATCH: &[&str] = &["exact", "prefix", "suffix", "regex", "any"];
pub(super) const HEADER_RULES: &[&str] = &["set", "add", "remove"];
pub(super) const DELIVERY: &[&str] = &["upstream", "local"];
pub(super) const NOT_FOUND_HOSTS: &[&str] = &["all", "listed"];

// --- serde's wording ---------------------------------------------------------------------

/// `invalid type: <what the value is>, expected <expected>`.
fn invalid_type(t: &Token<'_>, expected: &str) -> Fail {
    let got = match t {
        Token::Str(s) => format!("string {s:?}"),
        Token::Object => "map".to_owned(),
        Token::Array => "sequence".to_owned(),
        Token::Bool(b) => format!("boolean `{b}`"),
        Token::Null => "null".to_owned(),
        Token::U64(n) => format!("integer `{n}`"),
        Token::I64(n) => format!("integer `{n}`"),
        Token::Float(n) => format!("floating point `{n}`"),
    };
    Fail::new(format!("invalid type: {got}, expected {expected}"))
}

/// serde's list of alternatives: "`a`", "`a` or `b`", "one of `a`, `b`, `c`".
fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [a] => format!("`{a}`"),
        [a, b] => format!("`{a}` or `{b}`"),
        more => format!(
            "one of {}",
            more.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn unknown_field(key: &str, fields: &[&str]) -> Fail {
    Fail::new(format!(
        "unknown field `{key}`, expected {}",
        one_of(fields)
    ))
}

fn missing(field: &str) -> Fail {
    Fail::new(format!("missing field `{field}`"))
}

/// Stores a member's value, refusing a member given twice (before reading it, as serde does).
fn once<'a, T>(
    slot: &mut Option<T>,
    key: &str,
    r: &mut Reader<'a>,
    read: impl FnOnce(&mut Reader<'a>) -> Result<T>,
) -> Result<()> {
    if slot.is_some() {
        return Err(Fail::new(format!("duplicate field `{key}`")));
    }
    *slot = Some(read(r)?);
    Ok(())
}

// --- values -------------------------------------------------------------------------------

pub(super) fn string(r: &mut Reader<'_>) -> Result<String> {
    match r.token()? {
        Token::Str(s) => Ok(s.into_owned()),
        t => Err(invalid_type(&t, "a string")),
    }
}

fn boolean(r: &mut Reader<'_>) -> Result<bool> {
    match r.token()? {
        Token::Bool(b) => Ok(b),
        t => Err(invalid_type(&t, "a boolean")),
    }
}

/// An unsigned integer of at most `max`, named `ty` in errors (`u16`).
fn unsigned(r: &mut Reader<'_>, max: u64, ty: &str) -> Result<u64> {
    match r.token()? {
        Token::U64(n) if n <= max => Ok(n),
        Token::U64(n) => Err(Fail::new(format!(
            "invalid value: integer `{n}`, expected {ty}"
        ))),
        Token::I64(n) => Err(Fail::new(format!(
            "invalid value: integer `{n}`, expected {ty}"
        ))),
        t => Err(invalid_type(&t, ty)),
    }
}

fn u16(r: &mut Reader<'_>) -> Result<u16> {
    unsigned(r, u64::from(u16::MAX), "u16").map(|n| n as u16)
}

fn u32(r: &mut Reader<'_>) -> Result<u32> {
    unsigned(r, u64::from(u32::MAX), "u32").map(|n| n as u32)
}

/// `null` is `None`, anything else is read by `read`.
fn opt<'a, T>(
    r: &mut Reader<'a>,
    read: impl FnOnce(&mut Reader<'a>) -> Result<T>,
) -> Result<Option<T>> {
    if r.null()? {
        return Ok(None);
    }
    read(r).map(Some)
}

fn seq<'a, T>(
    r: &mut Reader<'a>,
    mut read: impl FnMut(&mut Reader<'a>) -> Result<T>,
) -> Result<Vec<T>> {
    match r.token()? {
        Token::Array => {
            let mut out = Vec::new();
            r.elements(&mut |r| {
                out.push(read(r)?);
                Ok(())
            })?;
            Ok(out)
        }
        t => Err(invalid_type(&t, "a sequence")),
    }
}

/// A JSON object of strings (a repeated key keeps the last value, as serde's map does).
#[inline(never)]
fn string_map(r: &mut Reader<'_>) -> Result<BTreeMap<String, String>> {
    match r.token()? {
        Token::Object => {
            let mut out = BTreeMap::new();
            r.members(&mut |r, key| {
                out.insert(key.to_owned(), string(r)?);
                Ok(())
            })?;
            Ok(out)
        }
        t => Err(invalid_type(&t, "a map")),
    }
}

/// The members of an object for `struct NAME`.
fn object<'a>(
    r: &mut Reader<'a>,
    expected: &str,
    mut member: impl FnMut(&mut Reader<'a>, &str) -> Result<()>,
) -> Result<()> {
    match r.token()? {
        Token::Object => r.members(&mut member),
        t => Err(invalid_type(&t, expected)),
    }
}

// --- the schema ---------------------------------------------------------------------------

#[inline(never)]
pub(super) fn delivery(r: &mut Reader<'_>) -> Result<Delivery> {
    match r.token()? {
        Token::Str(s) => match &*s {
            "upstream" => Ok(Delivery::Upstream),
            "local" => Ok(Delivery::Local),
            other => Err(Fail::new(format!(
                "unknown variant `{other}`, expected {}",
                one_of(DELIVERY)
            ))),
        },
        t => Err(invalid_type(&t, "enum Delivery")),
    }
}

fn not_found_scope(r: &mut Reader<'_>) -> Result<NotFoundHosts> {
    match r.token()? {
        Token::Str(s) => match &*s {
            "all" => Ok(NotFoundHosts::All),
            "listed" => Ok(NotFoundHosts::Listed),
            other => Err(Fail::new(format!(
                "unknown variant `{other}`, expected {}",
                one_of(NOT_FOUND_HOSTS)
            ))),
        },
        t => Err(invalid_type(&t, "enum NotFoundHosts")),
    }
}

#[inline(never)]
pub(super) fn mesh_config(r: &mut Reader<'_>) -> Result<MeshConfig> {
    let (mut api_version, mut kind, mut namespace, mut cluster_domain) = (None, None, None, None);
    let (mut hosts, mut host_matching, mut not_found, mut not_found_hosts) =
        (None, None, None, None);
    object(r, "struct MeshConfig", |r, key| match key {
        "apiVersion" => once(&mut api_version, key, r, string),
        "kind" => once(&mut kind, key, r, string),
        "namespace" => once(&mut namespace, key, r, string),
        "clusterDomain" => once(&mut cluster_domain, key, r, string),
        "hosts" => once(&mut hosts, key, r, |r| seq(r, host_config)),
        "hostMatching" => once(&mut host_matching, key, r, matching),
        "notFound" => once(&mut not_found, key, r, |r| opt(r, direct_response)),
        "notFoundHosts" => once(&mut not_found_hosts, key, r, not_found_scope),
        _ => Err(unknown_field(key, MESH_CONFIG)),
    })?;
    Ok(MeshConfig {
        api_version: api_version.ok_or_else(|| missing("apiVersion"))?,
        kind: kind.ok_or_else(|| missing("kind"))?,
        namespace: namespace.unwrap_or_else(|| "default".to_owned()),
        cluster_domain: cluster_domain.unwrap_or_else(|| "cluster.local".to_owned()),
        hosts: hosts.unwrap_or_default(),
        host_matching: host_matching.unwrap_or_default(),
        not_found: not_found.flatten(),
        not_found_hosts: not_found_hosts.unwrap_or_default(),
    })
}

#[inline(never)]
fn matching(r: &mut Reader<'_>) -> Result<HostMatching> {
    let (mut ignore_port, mut ignore_trailing_dot) = (None, None);
    object(r, "struct HostMatching", |r, key| match key {
        "ignorePort" => once(&mut ignore_port, key, r, boolean),
        "ignoreTrailingDot" => once(&mut ignore_trailing_dot, key, r, boolean),
        _ => Err(unknown_field(key, HOST_MATCHING)),
    })?;
    Ok(HostMatching {
        ignore_port: ignore_port.unwrap_or(true),
        ignore_trailing_dot: ignore_trailing_dot.unwrap_or(true),
    })
}

#[inline(never)]
fn host_config(r: &mut Reader<'_>) -> Result<HostConfig> {
    let (mut name, mut domains, mut cors) = (None, None, None);
    let (mut request_headers, mut response_headers, mut routes) = (None, None, None);
    object(r, "struct HostConfig", |r, key| match key {
        "name" => once(&mut name, key, r, |r| opt(r, string)),
        "domains" => once(&mut domains, key, r, |r| seq(r, string)),
        "cors" => once(&mut cors, key, r, |r| opt(r, cors_config)),
        "requestHeaders" => once(&mut request_headers, key, r, header_rules),
        "responseHeaders" => once(&mut response_headers, key, r, header_rules),
        "routes" => once(&mut routes, key, r, |r| seq(r, route_config)),
        _ => Err(unknown_field(key, HOST_CONFIG)),
    })?;
    Ok(HostConfig {
        name: name.flatten(),
        domains: domains.ok_or_else(|| missing("domains"))?,
        cors: cors.flatten(),
        request_headers: request_headers.unwrap_or_default(),
        response_headers: response_headers.unwrap_or_default(),
        routes: routes.ok_or_else(|| missing("routes"))?,
    })
}

#[inline(never)]
fn route_config(r: &mut Reader<'_>) -> Result<RouteConfig> {
    let (mut name, mut matches, mut grpc_web, mut cors) = (None, None, None, None);
    let (mut request_headers, mut response_headers) = (None, None);
    let (mut to, mut direct, mut redirect_) = (None, None, None);
    object(r, "struct RouteConfig", |r, key| match key {
        "name" => once(&mut name, key, r, |r| opt(r, string)),
        "match" => once(&mut matches, key, r, route_match),
        "grpcWeb" => once(&mut grpc_web, key, r, boolean),
        "cors" => once(&mut cors, key, r, |r| opt(r, cors_config)),
        "requestHeaders" => once(&mut request_headers, key, r, header_rules),
        "responseHeaders" => once(&mut response_headers, key, r, header_rules),
        "to" => once(&mut to, key, r, |r| opt(r, target)),
        "directResponse" => once(&mut direct, key, r, |r| opt(r, direct_response)),
        "redirect" => once(&mut redirect_, key, r, |r| opt(r, redirect)),
        _ => Err(unknown_field(key, ROUTE_CONFIG)),
    })?;
    Ok(RouteConfig {
        name: name.flatten(),
        matches: matches.unwrap_or_default(),
        grpc_web: grpc_web.unwrap_or(false),
        cors: cors.flatten(),
        request_headers: request_headers.unwrap_or_default(),
        response_headers: response_headers.unwrap_or_default(),
        to: to.flatten(),
        direct_response: direct.flatten(),
        redirect: redirect_.flatten(),
    })
}

#[inline(never)]
fn route_match(r: &mut Reader<'_>) -> Result<RouteMatch> {
    let (mut prefix, mut path, mut regex) = (None, None, None);
    let (mut methods, mut headers) = (None, None);
    object(r, "struct RouteMatch", |r, key| match key {
        "prefix" => once(&mut prefix, key, r, |r| opt(r, string)),
        "path" => once(&mut path, key, r, |r| opt(r, string)),
        "regex" => once(&mut regex, key, r, |r| opt(r, string)),
        "methods" => once(&mut methods, key, r, |r| seq(r, string)),
        "headers" => once(&mut headers, key, r, |r| seq(r, header_match)),
        _ => Err(unknown_field(key, ROUTE_MATCH)),
    })?;
    Ok(RouteMatch {
        prefix: prefix.flatten(),
        path: path.flatten(),
        regex: regex.flatten(),
        methods: methods.unwrap_or_default(),
        headers: headers.unwrap_or_default(),
    })
}

#[inline(never)]
fn header_match(r: &mut Reader<'_>) -> Result<HeaderMatch> {
    let (mut name, mut exact, mut prefix) = (None, None, None);
    let (mut regex, mut present, mut invert) = (None, None, None);
    object(r, "struct HeaderMatch", |r, key| match key {
        "name" => once(&mut name, key, r, string),
        "exact" => once(&mut exact, key, r, |r| opt(r, string)),
        "prefix" => once(&mut prefix, key, r, |r| opt(r, string)),
        "regex" => once(&mut regex, key, r, |r| opt(r, string)),
        "present" => once(&mut present, key, r, |r| opt(r, boolean)),
        "invert" => once(&mut invert, key, r, boolean),
        _ => Err(unknown_field(key, HEADER_MATCH)),
    })?;
    Ok(HeaderMatch {
        name: name.ok_or_else(|| missing("name"))?,
        exact: exact.flatten(),
        prefix: prefix.flatten(),
        regex: regex.flatten(),
        present: present.flatten(),
        invert: invert.unwrap_or(false),
    })
}

#[inline(never)]
fn target(r: &mut Reader<'_>) -> Result<Target> {
    let (mut service, mut port, mut cluster) = (None, None, None);
    let (mut prefix_rewrite, mut host_rewrite, mut http2) = (None, None, None);
    object(r, "struct Target", |r, key| match key {
        "service" => once(&mut service, key, r, |r| opt(r, string)),
        "port" => once(&mut port, key, r, |r| opt(r, u16)),
        "cluster" => once(&mut cluster, key, r, |r| opt(r, string)),
        "prefixRewrite" => once(&mut prefix_rewrite, key, r, |r| opt(r, string)),
        "hostRewrite" => once(&mut host_rewrite, key, r, |r| opt(r, string)),
        "http2" => once(&mut http2, key, r, |r| opt(r, boolean)),
        _ => Err(unknown_field(key, TARGET)),
    })?;
    Ok(Target {
        service: service.flatten(),
        port: port.flatten(),
        cluster: cluster.flatten(),
        prefix_rewrite: prefix_rewrite.flatten(),
        host_rewrite: host_rewrite.flatten(),
        http2: http2.flatten(),
    })
}

#[inline(never)]
fn direct_response(r: &mut Reader<'_>) -> Result<DirectResponse> {
    let (mut status, mut body, mut content_type) = (None, None, None);
    object(r, "struct DirectResponse", |r, key| match key {
        "status" => once(&mut status, key, r, u16),
        "body" => once(&mut body, key, r, string),
        "contentType" => once(&mut content_type, key, r, |r| opt(r, string)),
        _ => Err(unknown_field(key, DIRECT_RESPONSE)),
    })?;
    Ok(DirectResponse {
        status: status.ok_or_else(|| missing("status"))?,
        body: body.unwrap_or_default(),
        content_type: content_type.flatten(),
    })
}

#[inline(never)]
fn redirect(r: &mut Reader<'_>) -> Result<Redirect> {
    let (mut scheme, mut host, mut port, mut path) = (None, None, None, None);
    let (mut prefix_rewrite, mut status, mut strip_query) = (None, None, None);
    object(r, "struct Redirect", |r, key| match key {
        "scheme" => once(&mut scheme, key, r, |r| opt(r, string)),
        "host" => once(&mut host, key, r, |r| opt(r, string)),
        "port" => once(&mut port, key, r, |r| opt(r, u16)),
        "path" => once(&mut path, key, r, |r| opt(r, string)),
        "prefixRewrite" => once(&mut prefix_rewrite, key, r, |r| opt(r, string)),
        "status" => once(&mut status, key, r, |r| opt(r, u16)),
        "stripQuery" => once(&mut strip_query, key, r, boolean),
        _ => Err(unknown_field(key, REDIRECT)),
    })?;
    Ok(Redirect {
        scheme: scheme.flatten(),
        host: host.flatten(),
        port: port.flatten(),
        path: path.flatten(),
        prefix_rewrite: prefix_rewrite.flatten(),
        status: status.flatten(),
        strip_query: strip_query.unwrap_or(false),
    })
}

#[inline(never)]
fn cors_config(r: &mut Reader<'_>) -> Result<CorsConfig> {
    let (mut enabled, mut allow_origins, mut allow_methods) = (None, None, None);
    let (mut allow_headers, mut expose_headers) = (None, None);
    let (mut max_age, mut allow_credentials) = (None, None);
    object(r, "struct CorsConfig", |r, key| match key {
        "enabled" => once(&mut enabled, key, r, |r| opt(r, boolean)),
        "allowOrigins" => once(&mut allow_origins, key, r, |r| seq(r, origin_match)),
        "allowMethods" => once(&mut allow_methods, key, r, |r| seq(r, string)),
        "allowHeaders" => once(&mut allow_headers, key, r, |r| seq(r, string)),
        "exposeHeaders" => once(&mut expose_headers, key, r, |r| seq(r, string)),
        "maxAge" => once(&mut max_age, key, r, |r| opt(r, u32)),
        "allowCredentials" => once(&mut allow_credentials, key, r, |r| opt(r, boolean)),
        _ => Err(unknown_field(key, CORS_CONFIG)),
    })?;
    Ok(CorsConfig {
        enabled: enabled.flatten(),
        allow_origins: allow_origins.unwrap_or_default(),
        allow_methods: allow_methods.unwrap_or_default(),
        allow_headers: allow_headers.unwrap_or_default(),
        expose_headers: expose_headers.unwrap_or_default(),
        max_age: max_age.flatten(),
        allow_credentials: allow_credentials.flatten(),
    })
}

#[inline(never)]
fn origin_match(r: &mut Reader<'_>) -> Result<OriginMatch> {
    let (mut exact, mut prefix, mut suffix) = (None, None, None);
    let (mut regex, mut any) = (None, None);
    object(r, "struct OriginMatch", |r, key| match key {
        "exact" => once(&mut exact, key, r, |r| opt(r, string)),
        "prefix" => once(&mut prefix, key, r, |r| opt(r, string)),
        "suffix" => once(&mut suffix, key, r, |r| opt(r, string)),
        "regex" => once(&mut regex, key, r, |r| opt(r, string)),
        "any" => once(&mut any, key, r, boolean),
        _ => Err(unknown_field(key, ORIGIN_MATCH)),
    })?;
    Ok(OriginMatch {
        exact: exact.flatten(),
        prefix: prefix.flatten(),
        suffix: suffix.flatten(),
        regex: regex.flatten(),
        any: any.unwrap_or(false),
    })
}

#[inline(never)]
fn header_rules(r: &mut Reader<'_>) -> Result<HeaderRules> {
    let (mut set, mut add, mut remove) = (None, None, None);
    object(r, "struct HeaderRules", |r, key| match key {
        "set" => once(&mut set, key, r, string_map),
        "add" => once(&mut add, key, r, string_map),
        "remove" => once(&mut remove, key, r, |r| seq(r, string)),
        _ => Err(unknown_field(key, HEADER_RULES)),
    })?;
    Ok(HeaderRules {
        set: set.unwrap_or_default(),
        add: add.unwrap_or_default(),
        remove: remove.unwrap_or_default(),
    })
}
