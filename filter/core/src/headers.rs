//! Header rules: validated names, injection-proof values, `${var}` templates, and their application.

use crate::config::HeaderRules;
use crate::upstream::RESERVED_HEADERS;

/// Why a header rule is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Not an RFC 9110 token, or empty.
    #[error("header name `{0}` is not a valid token; use letters, digits and `-` (like `x-request-source`)")]
    BadName(String),
    /// A pseudo-header, `host` or the filter's own routing header.
    #[error("header `{0}` cannot be changed by header rules; use `to.hostRewrite`/`to.prefixRewrite` for host and path")]
    Reserved(String),
    /// CR, LF or NUL would let a value inject headers.
    #[error(
        "value of header `{0}` contains CR, LF or NUL, which could inject headers; remove them"
    )]
    BadValue(String),
    /// `${...}` names no known variable, or is not closed.
    #[error("value of header `{name}` uses unknown variable `{var}`; known: ${{host}}, ${{path}}, ${{method}}, ${{route}}, ${{cluster}} (write $$ for a literal $)")]
    UnknownVariable {
        /// Header name.
        name: String,
        /// The bad variable text.
        var: String,
    },
}

/// A value a template can refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    /// Envoy's `%REQ(:authority)%`: in request rules the Host/`:authority` as received; in
    /// response rules the one sent upstream (after `hostRewrite`).
    Host,
    /// Envoy's `%REQ(:path)%` (with query): in request rules the path as received; in response
    /// rules the one sent upstream (after `prefixRewrite`).
    Path,
    /// The request's `:method` (`%REQ(:method)%`).
    Method,
    /// The matched route's name, empty if unnamed (`%ROUTE_NAME%`).
    Route,
    /// The chosen upstream cluster, empty for local answers (`%UPSTREAM_CLUSTER%`).
    Cluster,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Lit(Vec<u8>),
    Var(Var),
}

/// A header value: literal text with `${var}` holes, parsed once. A value that renders empty
/// is not written at all (Envoy drops empty values unless `keep_empty_value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Segment>);

/// The values a template is rendered with.
#[derive(Debug, Clone, Copy, Default)]
pub struct Vars<'a> {
    /// Original authority.
    pub host: &'a [u8],
    /// Original path.
    pub path: &'a [u8],
    /// Method.
    pub method: &'a [u8],
    /// Route name.
    pub route: &'a str,
    /// Cluster name.
    pub cluster: &'a str,
}

impl Template {
    /// Parses `value` for the header `name`.
    pub fn parse(name: &str, value: &str) -> Result<Self, HeaderError> {
        if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(HeaderError::BadValue(name.to_owned()));
        }
        let mut segs = Vec::new();
        let mut lit = Vec::new();
        let mut rest = value;
        while let Some(at) = rest.find('$') {
            lit.extend_from_slice(rest.get(..at).unwrap_or_default().as_bytes());
            let after = rest.get(at + 1..).unwrap_or_default();
            if let Some(r) = after.strip_prefix('$') {
                lit.push(b'$');
                rest = r;
                continue;
            }
            let unknown = || HeaderError::UnknownVariable {
                name: name.to_owned(),
                var: rest.get(at..).unwrap_or_default().to_owned(),
            };
            let body = after.strip_prefix('{').ok_or_else(unknown)?;
            let end = body.find('}').ok_or_else(unknown)?;
            let var = match body.get(..end).unwrap_or_default() {
                "host" => Var::Host,
                "path" => Var::Path,
                "method" => Var::Method,
                "route" => Var::Route,
                "cluster" => Var::Cluster,
                other => {
                    return Err(HeaderError::UnknownVariable {
                        name: name.to_owned(),
                        var: format!("${{{other}}}"),
                    })
                }
            };
            if !lit.is_empty() {
                segs.push(Segment::Lit(std::mem::take(&mut lit)));
            }
            segs.push(Segment::Var(var));
            rest = body.get(end + 1..).unwrap_or_default();
        }
        lit.extend_from_slice(rest.as_bytes());
        if !lit.is_empty() || segs.is_empty() {
            segs.push(Segment::Lit(lit));
        }
        Ok(Template(segs))
    }

    /// The value when it has no variables (rendering it then costs nothing).
    pub fn literal(&self) -> Option<&[u8]> {
        match self.0.as_slice() {
            [Segment::Lit(l)] => Some(l),
            _ => None,
        }
    }

    /// True if rendering reads the request's host, path or method.
    pub fn uses_request(&self) -> bool {
        self.0
            .iter()
            .any(|s| matches!(s, Segment::Var(Var::Host | Var::Path | Var::Method)))
    }

    /// Renders into `out` (cleared first). Request-derived bytes that would break the header
    /// (CR, LF, NUL) are dropped.
    pub fn render(&self, vars: &Vars<'_>, out: &mut Vec<u8>) {
        out.clear();
        for s in &self.0 {
            let bytes: &[u8] = match s {
                Segment::Lit(l) => l,
                Segment::Var(Var::Host) => vars.host,
                Segment::Var(Var::Path) => vars.path,
                Segment::Var(Var::Method) => vars.method,
                Segment::Var(Var::Route) => vars.route.as_bytes(),
                Segment::Var(Var::Cluster) => vars.cluster.as_bytes(),
            };
            out.extend(bytes.iter().filter(|b| !matches!(b, b'\r' | b'\n' | 0)));
        }
    }
}

/// Compiled header rules: remove, then set, then add.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderOps {
    /// Lower-case names to remove.
    pub remove: Vec<String>,
    /// Lower-case name and value, replacing existing values.
    pub set: Vec<(String, Template)>,
    /// Lower-case name and value, appended.
    pub add: Vec<(String, Template)>,
}

impl HeaderOps {
    /// Validates and compiles config rules.
    pub fn compile(rules: &HeaderRules) -> Result<Self, HeaderError> {
        if rules.is_empty() {
            return Ok(HeaderOps::default());
        }
        let name = |n: &str| -> Result<String, HeaderError> {
            if n.is_empty() || !n.bytes().all(is_tchar) {
                return Err(HeaderError::BadName(n.to_owned()));
            }
            let lower = n.to_ascii_lowercase();
            if lower == "host" || RESERVED_HEADERS.contains(&lower.as_str()) {
                return Err(HeaderError::Reserved(n.to_owned()));
            }
            Ok(lower)
        };
        let pairs = |m: &std::collections::BTreeMap<String, String>| -> Result<Vec<(String, Template)>, HeaderError> {
            m.iter().map(|(k, v)| Ok((name(k)?, Template::parse(k, v)?))).collect()
        };
        Ok(HeaderOps {
            remove: rules
                .remove
                .iter()
                .map(|n| name(n))
                .collect::<Result<_, _>>()?,
            set: pairs(&rules.set)?,
            add: pairs(&rules.add)?,
        })
    }

    /// True when nothing is changed.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.add.is_empty()
    }

    /// True if any value reads the request's host, path or method.
    pub fn uses_request(&self) -> bool {
        self.set
            .iter()
            .chain(&self.add)
            .any(|(_, t)| t.uses_request())
    }
}

/// RFC 9110 `tchar`. Pseudo-headers (`:path`) are not tokens, so they are rejected too.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let t = Template::parse("x", "h=${host} p=${path} $$5").unwrap();
        let mut out = Vec::new();
        t.render(
            &Vars {
                host: b"a.com",
                path: b"/x?y",
                ..Default::default()
            },
            &mut out,
        );
        assert_eq!(out, b"h=a.com p=/x?y $5");
        assert_eq!(
            Template::parse("x", "plain").unwrap().literal(),
            Some(&b"plain"[..])
        );
        assert_eq!(Template::parse("x", "").unwrap().literal(), Some(&b""[..]));
        assert!(matches!(
            Template::parse("x", "${nope}"),
            Err(HeaderError::UnknownVariable { .. })
        ));
        assert!(matches!(
            Template::parse("x", "${host"),
            Err(HeaderError::UnknownVariable { .. })
        ));
        assert!(matches!(
            Template::parse("x", "$host"),
            Err(HeaderError::UnknownVariable { .. })
        ));
    }

    #[test]
    fn injection_is_impossible() {
        assert_eq!(
            Template::parse("x", "a\r\nevil: 1"),
            Err(HeaderError::BadValue("x".into()))
        );
        let t = Template::parse("x", "${host}").unwrap();
        let mut out = Vec::new();
        t.render(
            &Vars {
                host: b"a\r\nevil: 1",
                ..Default::default()
            },
            &mut out,
        );
        assert_eq!(out, b"aevil: 1");
    }

    #[test]
    fn names_are_validated() {
        let mut r = HeaderRules::default();
        r.remove.push("X-Ok".into());
        assert_eq!(
            HeaderOps::compile(&r).unwrap().remove,
            vec!["x-ok".to_string()]
        );
        for bad in ["", "a b", ":path", "x\n"] {
            let mut r = HeaderRules::default();
            r.remove.push(bad.into());
            assert!(
                matches!(HeaderOps::compile(&r), Err(HeaderError::BadName(_))),
                "{bad:?}"
            );
        }
        for reserved in ["Host", "x-mesh-upstream"] {
            let mut r = HeaderRules::default();
            r.set.insert(reserved.into(), "v".into());
            assert!(matches!(
                HeaderOps::compile(&r),
                Err(HeaderError::Reserved(_))
            ));
        }
    }
}
