//! What the release and OCI tests share: a temporary directory removed when dropped, and a
//! finished process's status and output as one text for assertion messages.

use std::path::PathBuf;
use std::process::Output;

/// A fresh directory under the system's temp dir (named after the test and the process),
/// removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `mesh-NAME-PID`, emptied first if a crashed run left it.
    pub fn new(name: &str) -> std::io::Result<TempDir> {
        let dir = std::env::temp_dir().join(format!("mesh-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `status`, stdout and stderr of a finished process, for assertion messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
