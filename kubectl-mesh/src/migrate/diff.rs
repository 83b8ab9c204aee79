//! `migrate --check`: the unified diff of what a migration would change, one file at a time.

use similar::TextDiff;

/// Lines of context around each change (as `diff -u`).
const CONTEXT: usize = 3;

/// A unified diff from `old` to `new` for `file`, with `--- FILE` / `+++ FILE` headers so that
/// `patch -p0 < diff` applies it from the directory `migrate` ran in. Empty when equal.
pub fn unified(file: &str, old: &str, new: &str) -> String {
    if old == new {
        return String::new();
    }
    TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(CONTEXT)
        .missing_newline_hint(true)
        .header(file, file)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_has_headers_hunks_and_only_changed_lines_marked() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let new = "a\nb\nc\nd\nE\nf\ng\nh\n";
        let d = unified("x.yaml", old, new);
        assert!(
            d.starts_with("--- x.yaml\n+++ x.yaml\n@@ -2,7 +2,7 @@\n"),
            "{d}"
        );
        assert!(d.contains("\n-e\n+E\n"), "{d}");
        assert_eq!(unified("x.yaml", old, old), "");
    }
}
