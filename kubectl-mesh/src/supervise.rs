//! Envoy as the child of `kubectl mesh run`: the ready line, the log level, signals passed on
//! and Envoy's exit status returned.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Why Envoy could not be started or watched. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    /// The listener port is taken before Envoy starts.
    #[error(
        "cannot listen on 127.0.0.1:{port}: {source}; stop what uses it or pick another --port"
    )]
    PortBusy {
        /// The `--port`.
        port: u16,
        /// Why binding failed.
        #[source]
        source: std::io::Error,
    },
    /// Envoy could not be started.
    #[error("cannot start {envoy}: {source}")]
    Start {
        /// The Envoy binary.
        envoy: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for Envoy or its signals failed.
    #[error("cannot supervise {envoy}: {source}")]
    Wait {
        /// The Envoy binary.
        envoy: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Envoy exited before its listener accepted a connection.
    #[error("{envoy} exited ({status}) before listening on 127.0.0.1:{port}; its log is above (add -v for more)")]
    EarlyExit {
        /// The Envoy binary.
        envoy: String,
        /// The listener port.
        port: u16,
        /// How it exited.
        status: std::process::ExitStatus,
    },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct EnvoyCommand {
    /// The Envoy binary.
    pub envoy: PathBuf,
    /// The bootstrap file (`-c`).
    pub bootstrap: PathBuf,
    /// The listener port on 127.0.0.1 the bootstrap configures.
    pub port: u16,
    /// Envoy logs at info level instead of warning.
    pub verbose: bool,
}

/// How often the listener is probed until it accepts a connection.
const READY_POLL: Duration = Duration::from_millis(100);

/// Runs Envoy as a child: prints `ready: listening on ADDR` once the listener accepts a
/// connection, forwards SIGINT/SIGTERM to it and returns its exit code once it exits.
pub async fn supervise(cmd: &EnvoyCommand, out: &mut impl Write) -> Result<u8, SuperviseError> {
    let name = cmd.envoy.display().to_string();
    let addr = SocketAddr::from(([127, 0, 0, 1], cmd.port));
    // Something else listening there would look ready to the probe below: refuse up front.
    drop(
        std::net::TcpListener::bind(addr).map_err(|source| SuperviseError::PortBusy {
            port: cmd.port,
            source,
        })?,
    );
    // The filter logs a rejected config as an error, so warnings still show it. Without -v,
    // Envoy's `misc` warnings go: they only say that `fail_open` is deprecated, which
    // kubectl-mesh keeps on purpose (the Envoys in older Istio releases know nothing newer).
    let (level, components) = if cmd.verbose {
        ("info", "wasm:info")
    } else {
        ("warn", "misc:error")
    };
    let mut child = tokio::process::Command::new(&cmd.envoy)
        .arg("-c")
        .arg(&cmd.bootstrap)
        .args(["--disable-hot-restart", "--log-level", level])
        .args(["--component-log-level", components])
        .stdin(std::process::Stdio::null())
        // If this process fails or is dropped before Envoy exits, Envoy goes with it.
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| SuperviseError::Start {
            envoy: name.clone(),
            source,
        })?;
    let supervise_err = |source| SuperviseError::Wait {
        envoy: name.clone(),
        source,
    };
    let mut signals = Signals::new().map_err(supervise_err)?;
    let mut ready = false;
    let mut probe = tokio::time::interval(READY_POLL);
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.map_err(supervise_err)?;
                if !ready && !signals.received {
                    return Err(SuperviseError::EarlyExit { envoy: name, port: cmd.port, status });
                }
                return Ok(exit_code(status));
            }
            sig = signals.next() => forward(&mut child, sig),
            _ = probe.tick(), if !ready => {
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    ready = true;
                    let _ = writeln!(out, "ready: listening on {addr}");
                    let _ = out.flush();
                }
            }
        }
    }
}

/// The exit code for Envoy's status: its own code, or 128 + signal as shells report it.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return u8::try_from(128 + sig).unwrap_or(u8::MAX);
        }
    }
    status
        .code()
        .map_or(1, |c| u8::try_from(c).unwrap_or(u8::MAX))
}

/// SIGINT and SIGTERM, as a stream of signals to forward to Envoy.
struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    /// Whether one arrived (Envoy exiting then is the expected outcome, not a failure).
    received: bool,
}

/// A signal to pass on.
#[derive(Debug, Clone, Copy)]
enum Forward {
    Interrupt,
    Terminate,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
                received: false,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals { received: false })
    }

    async fn next(&mut self) -> Forward {
        #[cfg(unix)]
        let sig = tokio::select! {
            _ = self.int.recv() => Forward::Interrupt,
            _ = self.term.recv() => Forward::Terminate,
        };
        #[cfg(not(unix))]
        let sig = {
            let _ = tokio::signal::ctrl_c().await;
            Forward::Interrupt
        };
        self.received = true;
        sig
    }
}

/// Sends `sig` to Envoy (a terminal's Ctrl-C reaches it directly too; twice is harmless).
#[cfg(unix)]
fn forward(child: &mut tokio::process::Child, sig: Forward) {
    use rustix::process::{kill_process, Pid, Signal};
    let signal = match sig {
        Forward::Interrupt => Signal::INT,
        Forward::Terminate => Signal::TERM,
    };
    if let Some(pid) = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(Pid::from_raw)
    {
        // It may have exited already; `wait` reports that.
        let _ = kill_process(pid, signal);
    }
}

/// Without unix signals Envoy is stopped outright.
#[cfg(not(unix))]
fn forward(child: &mut tokio::process::Child, _sig: Forward) {
    let _ = child.start_kill();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn exit_codes_follow_the_shell_convention() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(0)), 0);
        // wait(2) statuses: code 3 is 3 << 8; SIGKILL is 9 in the low bits.
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(9)), 128 + 9);
    }
}
