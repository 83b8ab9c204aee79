//! Host matching: normalizes a request's Host/`:authority` and picks the most specific virtual host.
//!
//! Normalization is allocation-free: lower-casing happens in a stack buffer, because this runs
//! on every request inside the Wasm VM. Lookup is flat in the number of hosts: one hash probe
//! for the exact name, then one per dot of the request's host for `*.suffix` wildcards.

use crate::config::HostMatching;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Longest host name that can match an exact or wildcard domain (DNS limit is 253).
const MAX_HOST: usize = 255;

/// Why a domain in the config is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// Empty string.
    #[error("domain is empty; use a host name such as `api.example.com`, `*.example.com` or `*`")]
    Empty,
    /// Characters outside letters, digits, `-`, `.`, `:`, `[`, `]` or a misplaced `*`.
    #[error("domain `{0}` is not a host name; allowed: `name.example.com`, `*.example.com`, `*`, `[::1]`")]
    Invalid(String),
    /// The same domain listed twice.
    #[error("domain `{0}` is listed by more than one host; each domain may appear once")]
    Duplicate(String),
    /// A port in a domain that could never match, because ports are ignored.
    #[error("domain `{0}` has a port, but hostMatching.ignorePort is true (the default), so the request's port is never compared; remove the port or set hostMatching.ignorePort: false")]
    Port(String),
}

/// FNV-1a: host names are short, and the keys come from the config (a client only picks which
/// key to probe, never how the table is laid out), so a keyed hash buys nothing here; this one
/// needs no random seed and is a few instructions per byte.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type Map = HashMap<Box<str>, usize, BuildHasherDefault<Fnv>>;

/// Virtual-host lookup table: exact names, `*.suffix` wildcards and a catch-all.
#[derive(Debug, Default, Clone)]
pub struct HostTable {
    exact: Map,
    /// ".suffix" (the wildcard without its `*`) -> host index.
    wildcards: Map,
    catch_all: Option<usize>,
    matching: HostMatching,
}

impl HostTable {
    /// An empty table comparing hosts as `matching` says.
    pub fn new(matching: HostMatching) -> Self {
        HostTable {
            matching,
            ..HostTable::default()
        }
    }

    /// Adds a domain for host `index`. Domains are stored lower-case, without a trailing dot
    /// when trailing dots are ignored.
    pub fn insert(&mut self, domain: &str, index: usize) -> Result<(), DomainError> {
        let d = match self.matching.ignore_trailing_dot {
            true => domain.trim_end_matches('.'),
            false => domain,
        }
        .to_ascii_lowercase();
        if d.is_empty() {
            return Err(DomainError::Empty);
        }
        if d == "*" {
            if self.catch_all.is_some() {
                return Err(DomainError::Duplicate(domain.to_owned()));
            }
            self.catch_all = Some(index);
            return Ok(());
        }
        let (body, wildcard) = match d.strip_prefix('*') {
            Some(rest) if rest.starts_with('.') && rest.len() > 1 => (rest, true),
            Some(_) => return Err(DomainError::Invalid(domain.to_owned())),
            None => (d.as_str(), false),
        };
        let valid = body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':' | b'[' | b']')
        });
        if !valid || body.len() > MAX_HOST {
            return Err(DomainError::Invalid(domain.to_owned()));
        }
        if self.matching.ignore_port && strip_port(body.as_bytes()).len() != body.len() {
            return Err(DomainError::Port(domain.to_owned()));
        }
        let map = match wildcard {
            true => &mut self.wildcards,
            false => &mut self.exact,
        };
        if map.insert(body.into(), index).is_some() {
            return Err(DomainError::Duplicate(domain.to_owned()));
        }
        Ok(())
    }

    /// Finds the host for a raw authority: exact beats the longest wildcard beats `*`.
    /// `None` authority (absent header) can only reach the catch-all.
    pub fn lookup(&self, authority: Option<&[u8]>) -> Option<usize> {
        let mut buf = [0u8; MAX_HOST];
        let Some(host) = authority.and_then(|a| normalize(a, self.matching, &mut buf)) else {
            return self.catch_all;
        };
        if let Some(i) = self.exact.get(host) {
            return Some(*i);
        }
        if !self.wildcards.is_empty() {
            // The longest matching wildcard is the one whose suffix starts at the leftmost dot
            // (a wildcard needs at least one byte before its dot).
            for (at, _) in host.bytes().enumerate().skip(1).filter(|(_, b)| *b == b'.') {
                if let Some(i) = host.get(at..).and_then(|s| self.wildcards.get(s)) {
                    return Some(*i);
                }
            }
        }
        self.catch_all
    }
}

/// Strips the port and a trailing dot (as `matching` says) and lower-cases into `buf`.
/// Returns `None` for an empty, over-long or non-ASCII host, which can only match the catch-all.
pub fn normalize<'b>(
    authority: &[u8],
    matching: HostMatching,
    buf: &'b mut [u8; MAX_HOST],
) -> Option<&'b str> {
    let host = match matching.ignore_port {
        true => strip_port(authority),
        false => authority,
    };
    let host = match matching.ignore_trailing_dot {
        true => host.strip_suffix(b".").unwrap_or(host),
        false => host,
    };
    if host.is_empty() || host.len() > MAX_HOST || !host.is_ascii() {
        return None;
    }
    let out = buf.get_mut(..host.len())?;
    for (o, b) in out.iter_mut().zip(host) {
        *o = b.to_ascii_lowercase();
    }
    std::str::from_utf8(out).ok()
}

/// `host:8080` -> `host`; `[::1]:8080` -> `[::1]`; an unbracketed IPv6 literal is kept whole.
pub fn strip_port(authority: &[u8]) -> &[u8] {
    if authority.first() == Some(&b'[') {
        return match authority.iter().position(|&b| b == b']') {
            Some(end) => authority.get(..=end).unwrap_or(authority),
            None => authority,
        };
    }
    match authority.iter().rposition(|&b| b == b':') {
        Some(colon) if authority.iter().filter(|&&b| b == b':').count() == 1 => {
            let port = authority.get(colon + 1..).unwrap_or_default();
            if port.iter().all(u8::is_ascii_digit) {
                authority.get(..colon).unwrap_or(authority)
            } else {
                authority
            }
        }
        _ => authority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(domains: &[&str]) -> HostTable {
        table_with(domains, HostMatching::default())
    }

    fn table_with(domains: &[&str], matching: HostMatching) -> HostTable {
        let mut t = HostTable::new(matching);
        for (i, d) in domains.iter().enumerate() {
            t.insert(d, i).unwrap();
        }
        t
    }

    #[test]
    fn most_specific_wins() {
        let t = table(&["*", "*.backend.com", "api.backend.com", "*.eu.backend.com"]);
        assert_eq!(t.lookup(Some(b"api.backend.com")), Some(2));
        assert_eq!(t.lookup(Some(b"web.backend.com")), Some(1));
        assert_eq!(t.lookup(Some(b"x.eu.backend.com")), Some(3));
        assert_eq!(t.lookup(Some(b"backend.com")), Some(0));
        assert_eq!(t.lookup(Some(b"example.org")), Some(0));
        assert_eq!(t.lookup(None), Some(0));
    }

    #[test]
    fn case_port_and_trailing_dot_are_ignored() {
        let t = table(&["api.backend.com", "[::1]"]);
        for a in [
            "API.Backend.COM",
            "api.backend.com:8080",
            "api.backend.com.",
            "Api.Backend.Com.:80",
        ] {
            assert_eq!(t.lookup(Some(a.as_bytes())), Some(0), "{a}");
        }
        assert_eq!(t.lookup(Some(b"[::1]:9000")), Some(1));
        assert_eq!(t.lookup(Some(b"[::1]")), Some(1));
    }

    #[test]
    fn exact_matching_compares_port_and_trailing_dot_like_envoy_without_stripping() {
        let exact = HostMatching {
            ignore_port: false,
            ignore_trailing_dot: false,
        };
        let t = table_with(&["grpc", "grpc:9911", "*.svc:80", "dot."], exact);
        assert_eq!(t.lookup(Some(b"grpc")), Some(0));
        assert_eq!(t.lookup(Some(b"GRPC:9911")), Some(1));
        assert_eq!(t.lookup(Some(b"grpc:9912")), None);
        assert_eq!(t.lookup(Some(b"grpc.")), None);
        assert_eq!(t.lookup(Some(b"a.svc:80")), Some(2));
        assert_eq!(t.lookup(Some(b"a.svc")), None);
        assert_eq!(t.lookup(Some(b"dot.")), Some(3));
        assert_eq!(t.lookup(Some(b"dot")), None);
        let port_only = HostMatching {
            ignore_port: false,
            ignore_trailing_dot: true,
        };
        let t = table_with(&["grpc"], port_only);
        assert_eq!(t.lookup(Some(b"grpc.")), Some(0));
        assert_eq!(t.lookup(Some(b"grpc:1")), None);
        // With ports ignored, a domain with a port could never match: refused.
        let mut t = HostTable::default();
        assert!(matches!(
            t.insert("grpc:9911", 0),
            Err(DomainError::Port(_))
        ));
    }

    #[test]
    fn odd_authorities_do_not_match_and_do_not_panic() {
        let t = table(&["api.backend.com"]);
        let long = vec![b'a'; 70_000];
        for a in [
            &b""[..],
            b":",
            b"[",
            b"]",
            b"::::",
            b"api.backend.com:x",
            b"\xff\xfe",
            &long,
        ] {
            assert_eq!(t.lookup(Some(a)), None);
        }
    }

    #[test]
    fn bad_domains_are_rejected() {
        let mut t = HostTable::default();
        assert_eq!(t.insert("", 0), Err(DomainError::Empty));
        assert!(matches!(t.insert("a b", 0), Err(DomainError::Invalid(_))));
        assert!(matches!(
            t.insert("*x.com", 0),
            Err(DomainError::Invalid(_))
        ));
        assert!(matches!(
            t.insert("a.*.com", 0),
            Err(DomainError::Invalid(_))
        ));
        t.insert("a.com", 0).unwrap();
        assert!(matches!(
            t.insert("A.com", 1),
            Err(DomainError::Duplicate(_))
        ));
    }
}
