//! Golden files: what a test produced compared with the file in the repository, or written
//! there with `UPDATE_GOLDEN=1` (review the diff before committing it).

#![allow(dead_code)]

use std::path::Path;

/// Collects the golden files of one test; [`Golden::finish`] fails listing every one that
/// differs.
#[derive(Default)]
pub struct Golden {
    stale: Vec<String>,
}

impl Golden {
    /// A new collection.
    pub fn new() -> Golden {
        Golden::default()
    }

    /// Compares `text` with the file at `path` (or writes it there when updating).
    pub fn check(&mut self, path: &Path, text: &str) {
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).unwrap();
            }
            std::fs::write(path, text).unwrap();
        } else if std::fs::read_to_string(path).unwrap_or_default() != text {
            self.stale
                .push(format!("{} (got:\n{text})", path.display()));
        }
    }

    /// Fails when a file differed.
    pub fn finish(self) {
        assert!(
            self.stale.is_empty(),
            "golden files differ; review and rerun with UPDATE_GOLDEN=1:\n{}",
            self.stale.join("\n")
        );
    }
}
