//! Reading YAML structure from Helm template lines: indentation, keys, blocks and template actions.
//!
//! A template is not YAML until Helm renders it, so these helpers look at one line at a time and
//! treat lines that are only a `{{ ... }}` action as transparent.

pub(super) fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// A line that is only a template action, e.g. `{{- if .Values.x }}`.
pub(super) fn is_directive(line: &str) -> bool {
    let t = line.trim();
    t.starts_with("{{") && t.ends_with("}}")
}

/// Blank, comment or directive: no YAML structure of its own.
pub(super) fn is_transparent(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#') || is_directive(line)
}

/// A directive that only steers control flow (cannot produce YAML keys).
pub(super) fn is_control(line: &str) -> bool {
    let t = line
        .trim()
        .trim_start_matches("{{")
        .trim_start_matches('-')
        .trim_start();
    [
        "if ", "else", "end", "range ", "with ", "/*", "define ", "$",
    ]
    .iter()
    .any(|k| t.starts_with(k))
}

/// `key: rest` of a line (after an optional `- `); `rest` is trimmed.
pub(super) fn key_of(line: &str) -> Option<(&str, &str)> {
    let t = line.trim_start();
    let t = t.strip_prefix("- ").map_or(t, str::trim_start);
    if t.starts_with('#') || t.starts_with("{{") {
        return None;
    }
    let (k, rest) = if let Some(k) = t.strip_suffix(':') {
        (k, "")
    } else {
        let idx = t.find(": ")?;
        (&t[..idx], t[idx + 1..].trim())
    };
    let k = k.trim().trim_matches('"').trim_matches('\'');
    let rest = strip_comment(rest);
    Some((k, rest))
}

pub(super) fn strip_comment(rest: &str) -> &str {
    match rest.find(" #") {
        Some(i) if !rest.starts_with('"') && !rest.starts_with('\'') => rest[..i].trim_end(),
        _ => rest,
    }
}

pub(super) fn unquote(s: &str) -> &str {
    let s = s.trim();
    if s.len() >= 2
        && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('\'') && s.ends_with('\'')))
    {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

/// Column where a line's key starts (after `- ` for list items).
pub(super) fn key_column(line: &str) -> usize {
    let ind = indent_of(line);
    let t = &line[ind..];
    match t.strip_prefix('-') {
        Some(rest) if rest.starts_with(' ') => ind + 1 + (rest.len() - rest.trim_start().len()),
        _ => ind,
    }
}

/// End (exclusive) of the block opened by line `start` whose key sits at column `col`.
/// Trailing blank, comment and directive lines are not part of the block.
pub(super) fn block_end(lines: &[&str], start: usize, col: usize) -> usize {
    let mut end = (start + 1..lines.len())
        .find(|&i| !is_transparent(lines[i]) && indent_of(lines[i]) <= col)
        .unwrap_or(lines.len());
    while end > start + 1 && is_transparent(lines[end - 1]) {
        end -= 1;
    }
    end
}

/// Child lines with `key` directly under the block `(start, end)`.
pub(super) fn children(lines: &[&str], start: usize, end: usize, key: &str) -> Vec<usize> {
    let Some(ci) = (start + 1..end)
        .find(|&i| !is_transparent(lines[i]))
        .map(|i| indent_of(lines[i]))
    else {
        return Vec::new();
    };
    (start + 1..end)
        .filter(|&i| {
            !is_transparent(lines[i])
                && indent_of(lines[i]) == ci
                && !lines[i].trim_start().starts_with("- ")
                && key_of(lines[i]).is_some_and(|(k, _)| k == key)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parsing() {
        assert_eq!(key_of("  - backend:"), Some(("backend", "")));
        assert_eq!(key_of("  name: x # c"), Some(("name", "x")));
        assert_eq!(key_of("  {{- if .x }}"), None);
        assert_eq!(key_column("    -   path: /"), 8);
        assert!(is_control("{{- end }}") && !is_control("{{ include \"x\" . }}"));
    }
}
