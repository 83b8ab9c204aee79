//! CORS: per-host policies with per-route overrides, evaluated the way Envoy's CORS filter does.
//!
//! Envoy semantics kept on purpose (each checked against native Envoy by the conformance suite
//! in `tests/conformance`): a route's policy overrides the host's field by field, except
//! `enabled`, which comes from the most specific policy present; an origin rule that matches the
//! literal `*` allows every origin (so `prefix: "*"` means any); the allowed origin is echoed,
//! never `*`; methods/headers of exactly `*` echo the preflight's request headers; a preflight
//! from a disallowed origin is forwarded; routes that answer locally get no CORS at all.

use crate::bytes_regex::ByteRegex;
use crate::config::{CorsConfig, OriginMatch};
use crate::request::{HeaderList, HeaderMap};

/// Request headers a gRPC-Web client sends.
pub const GRPC_WEB_ALLOW_HEADERS: &[&str] = &[
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "x-accept-content-transfer-encoding",
    "x-accept-response-streaming",
];
/// Response headers a gRPC-Web client must be able to read.
pub const GRPC_WEB_EXPOSE_HEADERS: &[&str] = &["grpc-status", "grpc-message"];

/// Why a CORS policy is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorsError {
    /// The CORS spec forbids `Access-Control-Allow-Credentials` with a wildcard origin.
    #[error("allowCredentials: true cannot be combined with an origin rule that allows any origin (`{0}`); list the origins explicitly")]
    CredentialsWithWildcard(String),
    /// An origin rule with none or several of exact/prefix/suffix/regex/any.
    #[error(
        "each allowOrigins entry needs exactly one of exact, prefix, suffix, regex or any: true"
    )]
    OriginRuleShape,
    /// The regex does not compile.
    #[error("origin regex `{0}` is invalid: {1}")]
    BadRegex(String, String),
    /// A method or header name that is not a token.
    #[error("`{0}` is not a valid method or header name")]
    BadToken(String),
    /// Policy enabled but no origins.
    #[error("a CORS policy needs at least one allowOrigins entry (or enabled: false)")]
    NoOrigins,
}

#[derive(Debug, Clone)]
enum OriginRule {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Regex(ByteRegex),
}

impl OriginRule {
    fn matches(&self, origin: &[u8]) -> bool {
        match self {
            OriginRule::Exact(s) => origin == s.as_bytes(),
            OriginRule::Prefix(s) => origin.starts_with(s.as_bytes()),
            OriginRule::Suffix(s) => origin.ends_with(s.as_bytes()),
            OriginRule::Regex(r) => r.is_match(origin),
        }
    }
}

/// An effective (merged) policy for one route.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    origins: Vec<OriginRule>,
    any_origin: bool,
    /// `Access-Control-Allow-Methods` value, if any. Exactly `*`: the preflight's
    /// `Access-Control-Request-Method` is echoed, as Envoy does (see [`CorsPolicy::echo`]).
    pub allow_methods: Option<String>,
    /// `Access-Control-Allow-Headers` value, if any. Exactly `*`: the preflight's
    /// `Access-Control-Request-Headers` is echoed (empty if absent), as Envoy does.
    pub allow_headers: Option<String>,
    /// `Access-Control-Expose-Headers` value, if any.
    pub expose_headers: Option<String>,
    /// `Access-Control-Max-Age` value, if any.
    pub max_age: Option<String>,
    /// Send `Access-Control-Allow-Credentials: true`.
    pub credentials: bool,
}

impl CorsPolicy {
    /// Merges a route's policy over its host's (field by field) and compiles it.
    /// `Ok(None)`: no CORS handling for this route.
    pub fn compile(
        route: Option<&CorsConfig>,
        host: Option<&CorsConfig>,
        grpc_web: bool,
    ) -> Result<Option<Self>, CorsError> {
        if route.is_none() && host.is_none() {
            return Ok(None);
        }
        let pick =
            |f: &dyn Fn(&CorsConfig) -> bool| route.filter(|c| f(c)).or(host.filter(|c| f(c)));
        // Envoy takes `enabled` from the most specific policy *present*, not the most specific
        // one that sets it: a route policy without `enabled` is on even under a disabled host.
        let enabled = route.or(host).and_then(|c| c.enabled).unwrap_or(true);
        if !enabled {
            return Ok(None);
        }
        let origins_cfg = pick(&|c| !c.allow_origins.is_empty())
            .map(|c| c.allow_origins.as_slice())
            .unwrap_or(&[]);
        if origins_cfg.is_empty() {
            return Err(CorsError::NoOrigins);
        }
        let mut origins = Vec::new();
        let mut wildcard = None;
        for o in origins_cfg {
            let rule = origin_rule(o)?;
            // Envoy allows an origin when a rule matches it *or* matches the literal "*".
            if rule.matches(b"*") {
                wildcard.get_or_insert_with(|| format!("{o:?}"));
            }
            origins.push(rule);
        }
        let credentials = pick(&|c| c.allow_credentials.is_some())
            .and_then(|c| c.allow_credentials)
            .unwrap_or(false);
        if let (true, Some(w)) = (credentials, &wildcard) {
            return Err(CorsError::CredentialsWithWildcard(w.clone()));
        }
        let list = |f: &dyn Fn(&CorsConfig) -> &Vec<String>,
                    extra: &[&str]|
         -> Result<Option<String>, CorsError> {
            let mut items: Vec<String> = pick(&|c| !f(c).is_empty())
                .map(|c| f(c).clone())
                .unwrap_or_default();
            for i in &items {
                if i.is_empty()
                    || !i
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
                {
                    return Err(CorsError::BadToken(i.clone()));
                }
            }
            for e in extra {
                if !items.iter().any(|i| i.eq_ignore_ascii_case(e)) {
                    items.push((*e).to_owned());
                }
            }
            Ok((!items.is_empty()).then(|| items.join(",")))
        };
        let (gh, ge): (&[&str], &[&str]) = if grpc_web {
            (GRPC_WEB_ALLOW_HEADERS, GRPC_WEB_EXPOSE_HEADERS)
        } else {
            (&[], &[])
        };
        Ok(Some(CorsPolicy {
            origins,
            any_origin: wildcard.is_some(),
            allow_methods: list(&|c| &c.allow_methods, &[])?,
            allow_headers: list(&|c| &c.allow_headers, gh)?,
            expose_headers: list(&|c| &c.expose_headers, ge)?,
            max_age: pick(&|c| c.max_age.is_some())
                .and_then(|c| c.max_age)
                .map(|m| m.to_string()),
            credentials,
        }))
    }

    /// True when a configured list value is the wildcard `*`, which Envoy's CORS filter answers
    /// by echoing the corresponding request header instead of sending `*`.
    pub fn echo(value: &str) -> bool {
        value == "*"
    }

    /// True if `origin` may make cross-origin requests.
    pub fn allows(&self, origin: &[u8]) -> bool {
        self.any_origin || self.origins.iter().any(|r| r.matches(origin))
    }

    /// The headers of the answer to a preflight from an allowed origin, header for header what
    /// Envoy sends: its CORS filter answers the preflight and then also runs its response half
    /// on that answer, so `Access-Control-Expose-Headers` is on preflights too. `*` methods or
    /// headers echo the preflight's `Access-Control-Request-Method`/`-Headers`
    /// (`request_headers` is empty when absent).
    pub fn preflight_headers(
        &self,
        origin: &[u8],
        request_method: &[u8],
        request_headers: &[u8],
    ) -> HeaderList {
        let mut headers = HeaderList(Vec::with_capacity(7));
        headers
            .0
            .push(("access-control-allow-origin".to_owned(), origin.to_vec()));
        if self.credentials {
            headers.0.push((
                "access-control-allow-credentials".to_owned(),
                b"true".to_vec(),
            ));
        }
        for (name, value, echo) in [
            (
                "access-control-allow-methods",
                &self.allow_methods,
                request_method,
            ),
            (
                "access-control-allow-headers",
                &self.allow_headers,
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
            ("access-control-max-age", &self.max_age),
            ("access-control-expose-headers", &self.expose_headers),
        ] {
            if let Some(v) = value {
                headers.0.push((name.to_owned(), v.as_bytes().to_vec()));
            }
        }
        headers.0.push(("vary".to_owned(), b"Origin".to_vec()));
        headers
    }

    /// Adds the grant for an allowed `origin` to an actual response.
    pub fn grant<H: HeaderMap>(&self, origin: &[u8], h: &mut H) -> Result<(), H::Error> {
        h.set("access-control-allow-origin", origin)?;
        if self.credentials {
            h.set("access-control-allow-credentials", b"true")?;
        }
        if let Some(e) = &self.expose_headers {
            h.set("access-control-expose-headers", e.as_bytes())?;
        }
        // The answer depends on the Origin: caches must key on it.
        h.add("vary", b"Origin")
    }
}

fn origin_rule(o: &OriginMatch) -> Result<OriginRule, CorsError> {
    let given = [
        o.exact.is_some(),
        o.prefix.is_some(),
        o.suffix.is_some(),
        o.regex.is_some(),
        o.any,
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(CorsError::OriginRuleShape);
    }
    Ok(match o {
        OriginMatch { exact: Some(s), .. } => OriginRule::Exact(s.clone()),
        OriginMatch {
            prefix: Some(s), ..
        } => OriginRule::Prefix(s.clone()),
        OriginMatch {
            suffix: Some(s), ..
        } => OriginRule::Suffix(s.clone()),
        // Byte-wise like Envoy's RE2 on header values (checked by the conformance suite): `.`
        // is any one byte, `\w`/`\d`/`\s` and `(?i)` are ASCII-only, invalid UTF-8 can match.
        OriginMatch { regex: Some(r), .. } => OriginRule::Regex(
            ByteRegex::whole(r).map_err(|e| CorsError::BadRegex(r.clone(), e.to_string()))?,
        ),
        _ => OriginRule::Exact("*".to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(origins: Vec<OriginMatch>) -> CorsConfig {
        CorsConfig {
            allow_origins: origins,
            ..Default::default()
        }
    }
    fn exact(s: &str) -> OriginMatch {
        OriginMatch {
            exact: Some(s.into()),
            prefix: None,
            suffix: None,
            regex: None,
            any: false,
        }
    }

    #[test]
    fn prefix_star_means_any_like_envoy() {
        let p = OriginMatch {
            prefix: Some("*".into()),
            ..exact("x")
        };
        let p = OriginMatch { exact: None, ..p };
        let pol = CorsPolicy::compile(None, Some(&cfg(vec![p])), false)
            .unwrap()
            .unwrap();
        assert!(pol.allows(b"http://anything"));
        assert!(pol.allows(b"null"));
    }

    #[test]
    fn credentials_with_wildcard_rejected() {
        let mut c = cfg(vec![OriginMatch {
            any: true,
            exact: None,
            ..exact("")
        }]);
        c.allow_credentials = Some(true);
        assert!(matches!(
            CorsPolicy::compile(None, Some(&c), false),
            Err(CorsError::CredentialsWithWildcard(_))
        ));
    }

    #[test]
    fn route_overrides_host_field_by_field() {
        let mut host = cfg(vec![exact("http://a")]);
        host.max_age = Some(10);
        host.allow_methods = vec!["GET".into()];
        let route = CorsConfig {
            allow_methods: vec!["POST".into()],
            ..Default::default()
        };
        let p = CorsPolicy::compile(Some(&route), Some(&host), true)
            .unwrap()
            .unwrap();
        assert_eq!(p.allow_methods.as_deref(), Some("POST"));
        assert_eq!(p.max_age.as_deref(), Some("10"));
        assert!(p.allows(b"http://a") && !p.allows(b"http://b") && !p.allows(b"HTTP://A"));
        assert!(p
            .expose_headers
            .as_deref()
            .unwrap_or("")
            .contains("grpc-status"));
        let off = CorsConfig {
            enabled: Some(false),
            ..Default::default()
        };
        assert!(CorsPolicy::compile(Some(&off), Some(&host), false)
            .unwrap()
            .is_none());
    }

    #[test]
    fn enabled_comes_from_the_most_specific_policy_present() {
        let mut host = cfg(vec![exact("http://a")]);
        host.enabled = Some(false);
        assert!(CorsPolicy::compile(None, Some(&host), false)
            .unwrap()
            .is_none());
        // A route policy that does not mention `enabled` is on, and inherits the host's fields.
        let route = CorsConfig {
            max_age: Some(5),
            ..Default::default()
        };
        let p = CorsPolicy::compile(Some(&route), Some(&host), false)
            .unwrap()
            .unwrap();
        assert!(p.allows(b"http://a"));
        assert_eq!(p.max_age.as_deref(), Some("5"));
        let explicit = CorsConfig {
            enabled: Some(true),
            ..Default::default()
        };
        assert!(CorsPolicy::compile(Some(&explicit), Some(&host), false)
            .unwrap()
            .is_some());
    }

    #[test]
    fn origin_regexes_are_byte_wise_like_envoy() {
        let re = |r: &str| OriginMatch {
            regex: Some(r.into()),
            exact: None,
            ..exact("")
        };
        let p = |r: &str| {
            CorsPolicy::compile(None, Some(&cfg(vec![re(r)])), false)
                .unwrap()
                .unwrap()
        };
        let w = p(r"https://\w+\.example\.com");
        assert!(w.allows(b"https://ab_1.example.com"));
        assert!(!w.allows("https://é.example.com".as_bytes()));
        assert!(!p(r"https://app\d\.x").allows("https://app٣.x".as_bytes()));
        let dot = p(r"https://.\.x");
        assert!(dot.allows(b"https://\xff.x"));
        assert!(!dot.allows("https://é.x".as_bytes()));
        assert!(p("(?i)https://APP").allows(b"https://app"));
        assert!(p("https://é").allows("https://é".as_bytes()));
        assert!(p("a|b").allows(b"b") && !p("a|b").allows(b"ab"));
    }

    #[test]
    fn star_lists_are_echoed_and_only_exactly_star() {
        let mut c = cfg(vec![exact("http://a")]);
        c.allow_methods = vec!["*".into()];
        c.allow_headers = vec!["*".into()];
        let p = CorsPolicy::compile(None, Some(&c), false).unwrap().unwrap();
        assert!(CorsPolicy::echo(p.allow_methods.as_deref().unwrap()));
        assert!(CorsPolicy::echo(p.allow_headers.as_deref().unwrap()));
        // gRPC-Web defaults make the list more than `*`: Envoy sends such a list verbatim.
        let p = CorsPolicy::compile(None, Some(&c), true).unwrap().unwrap();
        assert!(!CorsPolicy::echo(p.allow_headers.as_deref().unwrap()));
    }
}
