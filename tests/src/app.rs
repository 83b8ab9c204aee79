//! The digimon app behind `kubectl mesh run`: its gRPC server, its web service and the plugin
//! (which runs Envoy), started in one process group that `stop` (or drop) ends entirely.

use anyhow::{bail, Context};
use rustix::process::{kill_process_group, test_kill_process_group, Pid, Signal};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long `stop` waits for a graceful exit before SIGKILL.
const GRACE: Duration = Duration::from_secs(10);

/// The binaries the app needs, all from one cargo target directory.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `kubectl-mesh` (with the module embedded: build it after `make wasm`).
    pub kubectl_mesh: PathBuf,
    /// `digimon-server`.
    pub server: PathBuf,
    /// `digimon-web`.
    pub web: PathBuf,
}

impl Binaries {
    /// The binaries in `dir` (e.g. target/debug); an error names what is missing.
    pub fn in_dir(dir: &Path) -> anyhow::Result<Binaries> {
        let b = Binaries {
            kubectl_mesh: dir.join("kubectl-mesh"),
            server: dir.join("digimon-server"),
            web: dir.join("digimon-web"),
        };
        for p in [&b.kubectl_mesh, &b.server, &b.web] {
            if !p.is_file() {
                bail!(
                    "{} does not exist: build it with `make wasm && cargo build -p kubectl-mesh -p digimon-app` (make demo and make test-browser do)",
                    p.display()
                );
            }
        }
        Ok(b)
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct AppOptions {
    /// The mesh config given to `kubectl mesh run -f`.
    pub config: PathBuf,
    /// The built web page (index.html, app.js).
    pub web_dir: PathBuf,
    /// The mesh listener's port on 127.0.0.1 (0: a free one).
    pub port: u16,
    /// Milliseconds between QueryStream updates.
    pub step_ms: u64,
    /// Print every line the processes write, prefixed with their name.
    pub echo: bool,
}

#[derive(Debug, Default)]
struct Group {
    pgid: Option<Pid>,
    children: Vec<(String, Child)>,
    stopped: bool,
    /// What `stop` did, kept for later callers.
    report: Vec<String>,
}

/// The processes started for the app, in one process group; cloned into signal handlers.
#[derive(Debug, Clone, Default)]
pub struct ProcessGroup(Arc<Mutex<Group>>);

impl ProcessGroup {
    fn lock(&self) -> MutexGuard<'_, Group> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The group id (the first process's pid), once one was started.
    pub fn id(&self) -> Option<u32> {
        self.lock()
            .pgid
            .map(|p| p.as_raw_nonzero().get().unsigned_abs())
    }

    /// Starts `cmd` in the group, its output collected (and echoed) as `name`.
    pub(crate) fn spawn(&self, name: &str, mut cmd: Command, echo: bool) -> anyhow::Result<Output> {
        let mut group = self.lock();
        if group.stopped {
            bail!("stopping: {name} not started");
        }
        // Not the caller's group: a terminal's Ctrl-C reaches the caller, which stops them all.
        cmd.process_group(group.pgid.map_or(0, |p| p.as_raw_nonzero().get()));
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", cmd.get_program()))?;
        if group.pgid.is_none() {
            group.pgid = Pid::from_raw(i32::try_from(child.id())?);
        }
        let output = Output::default();
        let (sink, tag) = (output.clone(), name.to_owned());
        envoy_process::read_lines(&mut child, move |line| {
            if echo {
                println!("  [{tag}] {line}");
            }
            sink.push(line);
        });
        group.children.push((name.to_owned(), child));
        Ok(output)
    }

    /// The first started process that has exited, with its status.
    pub fn exited(&self) -> Option<(String, std::process::ExitStatus)> {
        let mut group = self.lock();
        group
            .children
            .iter_mut()
            .find_map(|(n, c)| Some((n.clone(), c.try_wait().ok()??)))
    }

    /// Ends every process of the group: SIGTERM (the plugin passes it to Envoy), then SIGKILL
    /// after a grace period; reaps the direct children. Idempotent; returns what it did (the
    /// same lines on every call).
    pub fn stop(&self) -> Vec<String> {
        Self::stop_locked(&mut self.lock())
    }

    /// For a signal handler: stops the group, prints what it did and exits with `code` while
    /// still holding the group, so no other thread can report the stopped processes as a
    /// failure first.
    pub fn stop_and_exit(&self, code: i32) -> ! {
        let mut group = self.lock();
        for line in Self::stop_locked(&mut group) {
            println!("  {line}");
        }
        std::process::exit(code)
    }

    fn stop_locked(group: &mut Group) -> Vec<String> {
        group.stopped = true;
        let Some(pgid) = group.pgid else {
            return Vec::new();
        };
        if group.children.is_empty() {
            return group.report.clone();
        }
        let mut done = Vec::new();
        let _ = kill_process_group(pgid, Signal::TERM);
        let deadline = Instant::now() + GRACE;
        for (name, child) in &mut group.children {
            let status = loop {
                match child.try_wait() {
                    Ok(Some(s)) => break Some(s),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => break None,
                }
            };
            match status {
                Some(s) => done.push(format!("{name} exited ({s})")),
                None => {
                    let _ = child.kill();
                    let _ = child.wait();
                    done.push(format!("{name} killed after {}s", GRACE.as_secs()));
                }
            }
        }
        // Anything left in the group (an Envoy whose parent was killed) goes too.
        if test_kill_process_group(pgid).is_ok() {
            let _ = kill_process_group(pgid, Signal::KILL);
        }
        group.children.clear();
        group.report.clone_from(&done);
        done
    }
}

/// Lines a process wrote (stdout and stderr), shared with its reader threads.
#[derive(Debug, Clone, Default)]
pub struct Output(Arc<Mutex<String>>);

impl Output {
    fn push(&self, line: &str) {
        let mut o = self.0.lock().unwrap_or_else(|p| p.into_inner());
        o.push_str(line);
        o.push('\n');
    }

    /// Everything so far.
    pub fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits for a line containing `needle` and returns it; an error if `group` reports an
    /// exit first or time runs out.
    pub(crate) fn wait_line(
        &self,
        needle: &str,
        group: &ProcessGroup,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.text().lines().find(|l| l.contains(needle)) {
                return Ok(line.to_owned());
            }
            if let Some((name, status)) = group.exited() {
                // Let the reader threads catch the last lines.
                std::thread::sleep(Duration::from_millis(200));
                bail!(
                    "{name} exited ({status}) before `{needle}`:\n{}",
                    self.text()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "no `{needle}` after {}s:\n{}",
                    timeout.as_secs(),
                    self.text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The address after `listening on ` in a ready line.
pub(crate) fn listening_on(line: &str) -> anyhow::Result<String> {
    line.split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split([' ', ',']).next())
        .map(str::to_owned)
        .with_context(|| format!("no address in `{line}`"))
}

/// The running app.
#[derive(Debug)]
pub struct App {
    /// The mesh listener's port on 127.0.0.1 (map `*.backend.com` here).
    pub port: u16,
    /// Where the gRPC server listens.
    pub server_addr: String,
    /// Where the web service listens.
    pub web_addr: String,
    /// The processes.
    pub group: ProcessGroup,
    /// The gRPC server's output (one line per call).
    pub server: Output,
    /// The web service's output (one line per request).
    pub web: Output,
    /// `kubectl mesh run`'s output (mapping, ready line, Envoy's log).
    pub mesh: Output,
}

impl App {
    /// Starts the server, the web service and `kubectl mesh run` in `group` and waits until
    /// each listens. On an error, what was started is stopped.
    pub fn start(bins: &Binaries, opts: &AppOptions, group: ProcessGroup) -> anyhow::Result<App> {
        let started = Self::start_in(bins, opts, &group);
        if started.is_err() {
            group.stop();
        }
        started
    }

    fn start_in(bins: &Binaries, opts: &AppOptions, group: &ProcessGroup) -> anyhow::Result<App> {
        let crate::digimon::Backends {
            server_addr,
            web_addr,
            server,
            web,
            ..
        } = crate::digimon::Backends::start(bins, &opts.web_dir, opts.step_ms, opts.echo, group)?;

        let port = match opts.port {
            0 => crate::free_port(),
            p => p,
        };
        let mut cmd = Command::new(&bins.kubectl_mesh);
        cmd.arg("run")
            .arg("-f")
            .arg(&opts.config)
            .arg("--upstream")
            .arg(format!("server:6000={server_addr}"))
            .arg("--upstream")
            .arg(format!("web:8060={web_addr}"))
            .arg("--port")
            .arg(port.to_string())
            .arg("--envoy")
            .arg(crate::envoy::envoy_binary());
        let mesh = group.spawn("mesh", cmd, opts.echo)?;
        // Envoy's first start compiles the module: allow for a slow machine.
        mesh.wait_line("ready: listening on", group, Duration::from_secs(120))?;
        Ok(App {
            port,
            server_addr,
            web_addr,
            group: group.clone(),
            server,
            web,
            mesh,
        })
    }

    /// Stops everything (see [`ProcessGroup::stop`]).
    pub fn stop(&self) -> Vec<String> {
        self.group.stop()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.group.stop();
    }
}

/// What /proc/PID/stat says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// `R`, `S`, `Z` (zombie: exited, not yet reaped), ...
    pub state: char,
    /// Parent.
    pub ppid: u32,
    /// Process group.
    pub pgrp: u32,
}

/// The stat of `pid`, None once it is gone.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) STATE PPID PGRP ...": COMM may hold spaces and parentheses.
    let rest = text.get(text.rfind(')')? + 2..)?;
    let mut fields = rest.split(' ');
    Some(ProcStat {
        state: fields.next()?.chars().next()?,
        ppid: fields.next()?.parse().ok()?,
        pgrp: fields.next()?.parse().ok()?,
    })
}

/// Every process id in /proc with its stat.
pub fn processes() -> Vec<(u32, ProcStat)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, proc_stat(pid)?)))
        .collect()
}

/// Ids of the processes still running in process group `pgid` (zombies excluded).
pub fn group_members(pgid: u32) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|(_, s)| s.pgrp == pgid && s.state != 'Z')
        .map(|(pid, _)| pid)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_lines_name_their_address() {
        assert_eq!(
            listening_on("digimon-server: listening on 127.0.0.1:4000 (gRPC, HTTP/2)").unwrap(),
            "127.0.0.1:4000"
        );
        assert_eq!(
            listening_on("digimon-web: listening on 127.0.0.1:81, serving x").unwrap(),
            "127.0.0.1:81"
        );
        assert_eq!(
            listening_on("ready: listening on 127.0.0.1:10000").unwrap(),
            "127.0.0.1:10000"
        );
        assert!(listening_on("starting").is_err());
    }

    #[test]
    fn a_stopped_group_ends_its_processes_and_starts_no_more() {
        let group = ProcessGroup::default();
        let mut cmd = Command::new("sh");
        // A child that ignores nothing and a grandchild in the same group.
        cmd.args(["-c", "sleep 300 & echo started; wait"]);
        let out = group.spawn("sh", cmd, false).unwrap();
        out.wait_line("started", &group, Duration::from_secs(10))
            .unwrap();
        let pgid = group.id().unwrap();
        assert_eq!(group_members(pgid).len(), 2, "sh and sleep");
        let report = group.stop();
        assert_eq!(report.len(), 1, "{report:?}");
        assert_eq!(group.stop(), report, "stop is idempotent");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !group_members(pgid).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(group_members(pgid), Vec::<u32>::new());
        assert!(group.spawn("late", Command::new("true"), false).is_err());
    }
}
