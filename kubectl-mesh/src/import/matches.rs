//! Route conditions and local answers: Envoy's `RouteMatch` (paths, headers, gRPC), redirects
//! and direct responses in MeshConfig's terms, or the reason they have none.

use super::cors;
use super::notes::{At, Notes, Scope};
use super::strings::{escape, regex_of, string_matcher, StringMatch};
use mesh_core::config::{DirectResponse, HeaderMatch, Redirect, RouteMatch};

/// Converts a `RouteMatch`.
pub(super) fn route_match(
    m: &At<'_>,
    scope: &Scope,
    notes: &mut Notes,
) -> Result<RouteMatch, String> {
    let mut out = RouteMatch::default();
    let case_sensitive = m.get("case_sensitive").bool().unwrap_or(true);
    let ci = if case_sensitive { "" } else { "(?i)" };
    for key in m.keys() {
        match key {
            "prefix" | "path" | "safe_regex" | "regex" | "path_separated_prefix" | "case_sensitive" | "headers" | "grpc" => {}
            "runtime_fraction" => match cors::fraction(&m.get(key)) {
                Some(f) if f >= 1.0 => notes.add(&m.get(key), Scope::Unobservable, "matches 100% by default; a runtime override is not carried"),
                _ => return Err("runtime_fraction: matching a share of requests is not a MeshConfig feature".into()),
            },
            "query_parameters" => return Err("query parameter conditions are not a MeshConfig feature (in Istio: VirtualService `queryParams`)".into()),
            other => return Err(format!("`{other}` conditions are not a MeshConfig feature")),
        }
    }
    if let Some(p) = m.get("prefix").str() {
        if p.is_empty() || (p == "/" && case_sensitive) {
            // Every path: no condition.
        } else if !p.starts_with('/') {
            return Err(format!(
                "prefix `{p}` cannot match a path starting with `/`"
            ));
        } else if case_sensitive {
            out.prefix = Some(p.to_owned());
        } else {
            out.regex = Some(format!("{ci}{}.*", escape(p)));
        }
    } else if let Some(p) = m.get("path").str() {
        if !p.starts_with('/') {
            return Err(format!("path `{p}` cannot match a path starting with `/`"));
        }
        out.path = (case_sensitive).then(|| p.to_owned());
        if !case_sensitive {
            out.regex = Some(format!("{ci}{}", escape(p)));
        }
    } else if let Some(p) = m.get("path_separated_prefix").str() {
        out.regex = Some(format!("{ci}{}(/.*)?", escape(p)));
    } else if let Some(re) = regex_of(m) {
        if m.get("safe_regex").is_null() {
            notes.add(
                &m.get("regex"),
                Scope::Unobservable,
                "v2 ECMAScript path regex read as RE2 (the same for ordinary patterns)",
            );
        }
        out.regex = Some(re);
    } else {
        return Err("no prefix, path or regex condition".into());
    }
    if !m.get("grpc").is_null() {
        out.headers.push(HeaderMatch {
            name: "content-type".into(),
            exact: None,
            prefix: None,
            regex: Some(r"application/grpc([+;].*)?".into()),
            present: None,
            invert: false,
        });
    }
    for (_, h) in m.get("headers").items() {
        let hm = header_match(&h).map_err(|why| format!("header condition {}: {why}", h.path()))?;
        out.headers.push(hm);
    }
    let _ = scope;
    Ok(out)
}

/// Converts a `HeaderMatcher` (v2 and v3 fields).
fn header_match(h: &At<'_>) -> Result<HeaderMatch, String> {
    let name = h.get("name").str().ok_or("no name")?.to_ascii_lowercase();
    let mut out = HeaderMatch {
        name,
        exact: None,
        prefix: None,
        regex: None,
        present: None,
        invert: h.get("invert_match").bool().unwrap_or(false),
    };
    if h.get("treat_missing_header_as_empty").bool() == Some(true) {
        return Err("treat_missing_header_as_empty is not a MeshConfig feature".into());
    }
    let sm = if !h.get("string_match").is_null() {
        Some(string_matcher(&h.get("string_match"))?)
    } else if let Some(s) = h.get("exact_match").str() {
        Some(StringMatch::Exact(s.to_owned()))
    } else if let Some(s) = h.get("prefix_match").str() {
        Some(StringMatch::Prefix(s.to_owned()))
    } else if let Some(s) = h.get("suffix_match").str() {
        Some(StringMatch::Suffix(s.to_owned()))
    } else if let Some(s) = h.get("contains_match").str() {
        Some(StringMatch::Regex(format!(".*{}.*", escape(s))))
    } else if let Some(r) = h
        .get("safe_regex_match")
        .get("regex")
        .str()
        .or(h.get("regex_match").str())
    {
        Some(StringMatch::Regex(r.to_owned()))
    } else if !h.get("range_match").is_null() {
        return Err("range_match is not a MeshConfig feature".into());
    } else {
        None
    };
    match sm {
        Some(StringMatch::Exact(s)) => out.exact = Some(s),
        Some(StringMatch::Prefix(s)) => out.prefix = Some(s),
        Some(StringMatch::Suffix(s)) => out.regex = Some(format!(".*{}", escape(&s))),
        Some(StringMatch::Regex(s)) => out.regex = Some(s),
        None => out.present = Some(h.get("present_match").bool().unwrap_or(true)),
    }
    Ok(out)
}

pub(super) fn redirect(at: &At<'_>) -> Result<Redirect, String> {
    for key in at.keys() {
        if ![
            "https_redirect",
            "scheme_redirect",
            "host_redirect",
            "port_redirect",
            "path_redirect",
            "prefix_rewrite",
            "response_code",
            "strip_query",
        ]
        .contains(&key)
        {
            return Err(format!("redirect `{key}` is not a MeshConfig feature"));
        }
    }
    let scheme = if at.get("https_redirect").bool() == Some(true) {
        Some("https".to_owned())
    } else {
        at.get("scheme_redirect").str().map(str::to_owned)
    };
    let status = match at.get("response_code").v {
        serde_json::Value::Null => None,
        v => Some(match v.as_str().unwrap_or_default() {
            "MOVED_PERMANENTLY" => 301,
            "FOUND" => 302,
            "SEE_OTHER" => 303,
            "TEMPORARY_REDIRECT" => 307,
            "PERMANENT_REDIRECT" => 308,
            _ => match v.as_u64() {
                Some(0) => 301,
                Some(1) => 302,
                Some(2) => 303,
                Some(3) => 307,
                Some(4) => 308,
                _ => return Err(format!("redirect response_code `{v}` is unknown")),
            },
        }),
    };
    let port = match at.get("port_redirect").uint() {
        Some(p) => Some(u16::try_from(p).map_err(|_| format!("port_redirect {p} is not a port"))?),
        None => None,
    };
    Ok(Redirect {
        scheme,
        host: at.get("host_redirect").str().map(str::to_owned),
        port,
        path: at.get("path_redirect").str().map(str::to_owned),
        prefix_rewrite: at.get("prefix_rewrite").str().map(str::to_owned),
        status,
        strip_query: at.get("strip_query").bool().unwrap_or(false),
    })
}

pub(super) fn direct_response(at: &At<'_>) -> Result<DirectResponse, String> {
    for key in at.keys() {
        if !["status", "body"].contains(&key) {
            return Err(format!(
                "direct response `{key}` is not a MeshConfig feature"
            ));
        }
    }
    let status = at
        .get("status")
        .uint()
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (200..=599).contains(s))
        .ok_or("direct response status must be 200-599 in MeshConfig")?;
    let body = at.get("body");
    let text = if body.is_null() {
        String::new()
    } else if let Some(s) = body.get("inline_string").str() {
        s.to_owned()
    } else if let Some(b) = body.get("inline_bytes").str() {
        let bytes = base64_decode(b).ok_or("inline_bytes is not base64")?;
        String::from_utf8(bytes)
            .map_err(|_| "inline_bytes is not UTF-8 text, which MeshConfig bodies are")?
    } else {
        return Err(
            "a direct response body from a file or environment variable is not read".into(),
        );
    };
    Ok(DirectResponse {
        status,
        body: text,
        content_type: None,
    })
}

/// Standard base64 (with or without padding).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let clean: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= val(*c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches() {
        let m = |v: serde_json::Value| {
            route_match(
                &At::root(&v, "m"),
                &Scope::Unobservable,
                &mut Notes::default(),
            )
        };
        assert_eq!(m(json!({"prefix": "/"})).unwrap(), RouteMatch::default());
        assert_eq!(
            m(json!({"prefix": "/a", "case_sensitive": false}))
                .unwrap()
                .regex
                .as_deref(),
            Some("(?i)/a.*")
        );
        assert_eq!(
            m(json!({"path_separated_prefix": "/api"}))
                .unwrap()
                .regex
                .as_deref(),
            Some("/api(/.*)?")
        );
        let h = m(json!({"prefix": "/", "headers": [{"name": ":method", "exact_match": "GET"}, {"name": "x-a"}, {"name": "x-b", "string_match": {"suffix": ".x"}, "invert_match": true}]})).unwrap();
        assert_eq!(h.headers[0].exact.as_deref(), Some("GET"));
        assert_eq!(h.headers[1].present, Some(true));
        assert_eq!(
            (h.headers[2].regex.as_deref(), h.headers[2].invert),
            (Some(r".*\.x"), true)
        );
        assert!(m(json!({"prefix": "/", "query_parameters": [{"name": "a"}]})).is_err());
        assert!(m(json!({"prefix": "/", "headers": [{"name": "x", "range_match": {"start": 1, "end": 2}}]})).is_err());
    }

    #[test]
    fn redirects_and_direct_responses() {
        let rd = redirect(&At::root(
            &json!({"https_redirect": true, "response_code": "PERMANENT_REDIRECT"}),
            "",
        ))
        .unwrap();
        assert_eq!(
            (rd.scheme.as_deref(), rd.status),
            (Some("https"), Some(308))
        );
        assert!(redirect(&At::root(&json!({"regex_rewrite": {}}), "")).is_err());
        let d = direct_response(&At::root(
            &json!({"status": 200, "body": {"inline_bytes": "aGk="}}),
            "",
        ))
        .unwrap();
        assert_eq!(d.body, "hi");
        assert!(direct_response(&At::root(
            &json!({"status": 200, "body": {"filename": "/x"}}),
            ""
        ))
        .is_err());
    }
}
