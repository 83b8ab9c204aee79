//! A child process (`kubectl mesh run`, the demo driver) with its stdout and stderr collected.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A started process whose output lines land in one shared string, in arrival order.
pub struct Captured {
    /// The process (tests signal and reap it).
    pub child: Child,
    output: Arc<Mutex<String>>,
}

impl Captured {
    /// Starts `cmd` with stdin closed and both output streams collected.
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Captured> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let output = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&output);
        read_lines(&mut child, move |line| {
            let mut o = sink.lock().unwrap_or_else(|e| e.into_inner());
            o.push_str(line);
            o.push('\n');
        });
        Ok(Captured { child, output })
    }

    /// Everything printed so far.
    pub fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until the output contains `needle`; false if the process exits without printing
    /// it or `timeout` passes.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.output().contains(needle) {
                return true;
            }
            if !matches!(self.child.try_wait(), Ok(None)) {
                // Gone: let the reader threads drain what it printed last.
                std::thread::sleep(Duration::from_millis(200));
                return self.output().contains(needle);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The exit code once the process has exited, waiting at most `timeout`; `None` if it
    /// still runs (or was killed by a signal).
    pub fn exit_code(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    std::thread::sleep(Duration::from_millis(100));
                    return status.code();
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => return None,
            }
        }
        None
    }
}

/// Hands every line `child` prints on stdout or stderr (whichever were piped) to `on_line`,
/// from one reader thread per stream, until the stream closes.
pub fn read_lines(child: &mut Child, on_line: impl Fn(&str) + Clone + Send + 'static) {
    let streams: Vec<Box<dyn Read + Send>> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect();
    for stream in streams {
        let on_line = on_line.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                on_line(&line);
            }
        });
    }
}
