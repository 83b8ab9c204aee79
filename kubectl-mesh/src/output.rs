//! The command's standard output with every write checked: the first failure (a full disk, a
//! closed pipe) is kept, later writes are refused, and `main` reports it and exits non-zero.

use serde::Serialize;
use serde_json::Value;
use std::io::{self, Write};

/// Something kubectl-mesh built could not be serialized. Values and derived structs with string
/// keys always serialize, so this is a bug; it is reported, never printed as empty output.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot serialize {what}\n  this is a bug in kubectl-mesh: please report it with the command"
)]
pub struct SerializeError {
    /// What was being serialized.
    pub what: &'static str,
    /// serde's error.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// `v` as a YAML document.
pub fn yaml(what: &'static str, v: &impl Serialize) -> Result<String, SerializeError> {
    serde_yaml_ng::to_string(v).map_err(|e| SerializeError {
        what,
        source: e.into(),
    })
}

/// `v` as a JSON value.
pub fn value(what: &'static str, v: &impl Serialize) -> Result<Value, SerializeError> {
    serde_json::to_value(v).map_err(|e| SerializeError {
        what,
        source: e.into(),
    })
}

/// A writer that remembers its first error. Commands write through `let _ = writeln!(...)`
/// where a failed line must not stop the work (an `enable` half done); the failure is not lost:
/// [`Checked::finish`] returns it.
pub struct Checked<W: Write> {
    inner: W,
    failed: Option<io::Error>,
}

impl<W: Write> Checked<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Checked {
            inner,
            failed: None,
        }
    }

    /// Flushes, then the first write error, if any.
    pub fn finish(mut self) -> io::Result<()> {
        if self.failed.is_none() {
            if let Err(e) = self.inner.flush() {
                self.failed = Some(e);
            }
        }
        match self.failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn note<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r {
            if self.failed.is_none() {
                self.failed = Some(io::Error::new(e.kind(), e.to_string()));
            }
        }
        r
    }

    fn refuse(&self) -> io::Result<()> {
        match &self.failed {
            Some(e) => Err(io::Error::new(e.kind(), e.to_string())),
            None => Ok(()),
        }
    }
}

impl<W: Write> Write for Checked<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.refuse()?;
        let r = self.inner.write(buf);
        self.note(r)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.refuse()?;
        let r = self.inner.flush();
        self.note(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts `room` bytes, then fails as a full disk does.
    struct Full {
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::from_raw_os_error(28));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_first_failure_is_kept_and_later_writes_refused() {
        let mut out = Checked::new(Full { room: 4 });
        let _ = writeln!(out, "ab");
        assert!(writeln!(out, "cdef").is_err());
        assert!(writeln!(out, "g").is_err());
        let e = out.finish().unwrap_err();
        assert_eq!(e.raw_os_error(), None, "kept as its message: {e}");
        assert!(e.to_string().contains("No space left"), "{e}");
    }

    #[test]
    fn a_writer_that_never_failed_finishes_ok() {
        let mut out = Checked::new(Vec::new());
        writeln!(out, "fine").unwrap();
        assert!(out.finish().is_ok());
    }
}
