//! Envoy string matchers (`exact`, `prefix`, `suffix`, `contains`, `safe_regex`, `ignore_case`)
//! as the four forms MeshConfig has, and the regex escaping they need.

use super::notes::At;

/// A matcher in a form MeshConfig has (origins: all four; header matches: no suffix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StringMatch {
    /// Equal.
    Exact(String),
    /// Starts with.
    Prefix(String),
    /// Ends with.
    Suffix(String),
    /// The whole value matches (RE2-like syntax).
    Regex(String),
}

/// Escapes `text` for a regex (the characters Rust's `regex::escape` escapes).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The regex of a safe_regex (`{google_re2: {}, regex: ...}`) or v2 `regex` field.
pub fn regex_of(at: &At<'_>) -> Option<String> {
    let safe = at.get("safe_regex");
    if let Some(r) = safe.get("regex").str() {
        return Some(r.to_owned());
    }
    at.get("regex").str().map(str::to_owned)
}

/// Converts a `StringMatcher`. `Err` says why it cannot be carried.
pub fn string_matcher(at: &At<'_>) -> Result<StringMatch, String> {
    let ignore_case = at.get("ignore_case").bool().unwrap_or(false);
    let text = |k: &str| at.get(k).str().map(str::to_owned);
    let ci = if ignore_case { "(?i)" } else { "" };
    if let Some(s) = text("exact") {
        return Ok(match ignore_case {
            false => StringMatch::Exact(s),
            true => StringMatch::Regex(format!("{ci}{}", escape(&s))),
        });
    }
    if let Some(s) = text("prefix") {
        return Ok(match ignore_case {
            false => StringMatch::Prefix(s),
            true => StringMatch::Regex(format!("{ci}{}.*", escape(&s))),
        });
    }
    if let Some(s) = text("suffix") {
        return Ok(match ignore_case {
            false => StringMatch::Suffix(s),
            true => StringMatch::Regex(format!("{ci}.*{}", escape(&s))),
        });
    }
    if let Some(s) = text("contains") {
        return Ok(StringMatch::Regex(format!("{ci}.*{}.*", escape(&s))));
    }
    if let Some(r) = regex_of(at) {
        // Envoy ignores ignore_case for regexes.
        return Ok(StringMatch::Regex(r));
    }
    Err("only exact, prefix, suffix, contains and regex matchers are carried".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matchers() {
        let m = |v: serde_json::Value| string_matcher(&At::root(&v, ""));
        assert_eq!(
            m(json!({"prefix": "*"})),
            Ok(StringMatch::Prefix("*".into()))
        );
        assert_eq!(
            m(json!({"exact": "http://a.b", "ignore_case": true})),
            Ok(StringMatch::Regex(r"(?i)http://a\.b".into()))
        );
        assert_eq!(
            m(json!({"safe_regex": {"google_re2": {}, "regex": ".*\\.envoyproxy\\.io"}})),
            Ok(StringMatch::Regex(r".*\.envoyproxy\.io".into()))
        );
        assert_eq!(
            m(json!({"contains": "x-y"})),
            Ok(StringMatch::Regex(r".*x\-y.*".into()))
        );
        assert!(m(json!({"custom": {}})).is_err());
    }
}
