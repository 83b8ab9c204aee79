//! `make demo`: the digimon app (gRPC server, web page) behind `kubectl mesh run` with the
//! example's mesh.yaml; real gRPC-Web calls through Envoy and the filter, with what each did.
//!
//! Usage: digimon-demo [CONFIG] [--serve] [--port N] [--web-dir DIR]. The binaries it starts
//! (kubectl-mesh, digimon-server, digimon-web) are taken from its own directory. Without
//! `--serve` it stops everything it started before exiting; with it, on Ctrl-C. Either way, a
//! signal or a failure stops all of it (one process group).

use anyhow::{bail, ensure, Context};
use mesh_tests::app::{App, AppOptions, Binaries, ProcessGroup};
use mesh_tests::client::{Request, Response};
use mesh_tests::digimon::{grpc_answer, grpc_web_call, preflight, API_HOST, WEB_ORIGIN};
use mesh_tests::grpc_web::{self, Message};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::path::PathBuf;
use std::process::ExitCode;

const WEB: &str = WEB_ORIGIN;

struct Args {
    config: PathBuf,
    serve: bool,
    port: u16,
    web_dir: PathBuf,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        config: PathBuf::from("examples/digimon/mesh.yaml"),
        serve: false,
        port: 10000,
        web_dir: mesh_tests::workspace_root().join("target/digimon-web"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--serve" => a.serve = true,
            "--port" => {
                a.port = it
                    .next()
                    .and_then(|p| p.parse().ok())
                    .context("--port needs a number")?
            }
            "--web-dir" => a.web_dir = it.next().context("--web-dir needs a directory")?.into(),
            s if s.starts_with('-') => {
                bail!("unknown flag {s}; usage: digimon-demo [CONFIG] [--serve] [--port N] [--web-dir DIR]")
            }
            s => a.config = s.into(),
        }
    }
    Ok(a)
}

/// The CORS headers of an answer, for the table.
fn cors(r: &Response) -> String {
    [
        ("access-control-allow-origin", "allow-origin"),
        ("access-control-allow-credentials", "credentials"),
        ("access-control-allow-methods", "methods"),
        ("access-control-allow-headers", "headers"),
        ("access-control-expose-headers", "expose"),
        ("access-control-max-age", "max-age"),
    ]
    .iter()
    .filter_map(|(h, short)| Some(format!("{short}={}", r.header(h)?)))
    .collect::<Vec<_>>()
    .join(" ")
}

struct Table {
    failures: Vec<String>,
}

impl Table {
    fn row(
        &mut self,
        what: &str,
        req: &Request,
        r: &Response,
        answer: &str,
        problem: Option<String>,
    ) {
        let target = format!(
            "{} {}{}",
            req.method,
            req.host.as_deref().unwrap_or(""),
            req.path
        );
        println!("{what:<34} {target:<50} {:>6}  {answer}", r.status);
        if let Some(p) = problem {
            println!("{:<34} ^ FAILED: {p}", "");
            self.failures.push(format!("{what}: {p}"));
        }
    }
}

fn send(port: u16, req: &Request) -> anyhow::Result<Response> {
    req.send(port).with_context(|| {
        format!(
            "{} {}{} failed",
            req.method,
            req.host.as_deref().unwrap_or(""),
            req.path
        )
    })
}

/// Every request of the demo, printed as a table; the failures.
fn show(app: &App) -> anyhow::Result<Vec<String>> {
    let port = app.port;
    let mut t = Table { failures: vec![] };
    println!("\n{:<34} {:<50} {:>6}  answer", "what", "request", "status");

    let req = Request::get("web.backend.com", "/");
    let r = send(port, &req)?;
    let page = String::from_utf8_lossy(&r.body);
    let ok = r.status == 200 && page.contains("<title>Digimon");
    t.row(
        "browser loads the page",
        &req,
        &r,
        &format!(
            "{} bytes of {} from web:8060",
            r.body.len(),
            r.header("content-type").unwrap_or("?")
        ),
        (!ok).then(|| "expected the digimon page".to_owned()),
    );

    let req = preflight(API_HOST, "Create", WEB);
    let r = send(port, &req)?;
    let ok = r.status == 200
        && r.header("access-control-allow-origin") == Some(WEB)
        && r.header("access-control-allow-credentials") == Some("true")
        && r.header("access-control-allow-headers")
            .is_some_and(|h| h.contains("x-grpc-web"));
    t.row(
        "CORS preflight from the page",
        &req,
        &r,
        &format!("(answered by the filter) {}", cors(&r)),
        (!ok).then(|| "expected a CORS grant for the page's origin with credentials".to_owned()),
    );

    let req = grpc_web_call(API_HOST, "Create", &Message::new().string(1, "Agumon"), WEB);
    let r = send(port, &req)?;
    let created = grpc_answer(&r, "Create", WEB).and_then(|m| {
        let fields = grpc_web::strings(m.first().context("Create: no message")?)?;
        ensure!(
            fields.get(&2).map(String::as_str) == Some("Agumon"),
            "Create: wrong name {fields:?}"
        );
        Ok(fields)
    });
    let id = created
        .as_ref()
        .ok()
        .and_then(|f| f.get(&1).cloned())
        .unwrap_or_default();
    t.row(
        "gRPC-Web Create from the page",
        &req,
        &r,
        &match &created {
            Ok(f) => format!(
                "server:6000 created id={} name={} status={}; {}",
                id,
                f.get(&2).map_or("", String::as_str),
                f.get(&3).map_or("", String::as_str),
                cors(&r)
            ),
            Err(_) => cors(&r),
        },
        created.as_ref().err().map(|e| format!("{e:#}")),
    );

    let food = Message::new().string(1, "meat");
    let req = grpc_web_call(
        API_HOST,
        "Foster",
        &Message::new().string(1, &id).message(2, &food),
        WEB,
    );
    let r = send(port, &req)?;
    let fed = grpc_answer(&r, "Foster", WEB);
    t.row(
        "gRPC-Web Foster (feed it)",
        &req,
        &r,
        "grpc-status 0",
        fed.err().map(|e| format!("{e:#}")),
    );

    let req = grpc_web_call(API_HOST, "QueryStream", &Message::new().string(1, &id), WEB);
    let r = send(port, &req)?;
    let updates = grpc_answer(&r, "QueryStream", WEB).and_then(|ms| {
        let updates = ms
            .iter()
            .map(|m| {
                let f = grpc_web::strings(m)?;
                let get = |n| f.get(&n).map_or("", String::as_str).to_owned();
                Ok(format!("{} at {} ({})", get(3), get(4), get(5)))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        ensure!(
            updates.len() >= 3,
            "QueryStream: {} updates, expected 3",
            updates.len()
        );
        Ok(updates)
    });
    t.row(
        "gRPC-Web QueryStream (streaming)",
        &req,
        &r,
        &match &updates {
            Ok(u) => format!("{} messages: {}", u.len(), u.join(", ")),
            Err(_) => String::new(),
        },
        updates.err().map(|e| format!("{e:#}")),
    );

    let req = grpc_web_call(
        API_HOST,
        "Create",
        &Message::new().string(1, "Impmon"),
        "http://evil.example",
    );
    let r = send(port, &req)?;
    let granted = r.header("access-control-allow-origin").is_some();
    t.row(
        "same call from a foreign origin",
        &req,
        &r,
        "no CORS headers: a browser hides the answer from the script",
        granted.then(|| "a foreign origin got a CORS grant".to_owned()),
    );

    let req = Request::get("other.example", "/");
    let r = send(port, &req)?;
    t.row(
        "unknown host",
        &req,
        &r,
        &match String::from_utf8_lossy(&r.body).trim() {
            // No host of the config: the filter lets it pass and Envoy finds no route.
            "" => "not routed: Envoy's own 404 (the filter leaves unknown hosts alone)".to_owned(),
            body => format!("not routed: {}", body.chars().take(80).collect::<String>()),
        },
        (r.status != 404).then(|| "expected 404".to_owned()),
    );
    Ok(t.failures)
}

fn run(args: &Args, group: &ProcessGroup) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let bins = Binaries::in_dir(exe.parent().context("the demo binary has no directory")?)?;
    ensure!(
        args.web_dir.join("index.html").is_file(),
        "{} has no page: build it with `make digimon-web`",
        args.web_dir.display()
    );
    println!(
        "kubectl-mesh demo: the digimon app behind `kubectl mesh run -f {}`",
        args.config.display()
    );
    let opts = AppOptions {
        config: args.config.clone(),
        web_dir: args.web_dir.clone(),
        port: args.port,
        step_ms: 400,
        echo: true,
    };
    let app = App::start(&bins, &opts, group.clone())?;
    if let Some(pgid) = group.id() {
        // Ctrl-C, SIGTERM and failures stop them; only a SIGKILL of this demo cannot.
        println!("  (all in process group {pgid}; should this demo be SIGKILLed: kill -- -{pgid})");
    }
    let failures = show(&app)?;
    println!(
        "\nWatch it in a browser{}:\n  chromium --host-resolver-rules=\"MAP *.backend.com 127.0.0.1:{}\" --user-data-dir=$(mktemp -d) http://web.backend.com/",
        if args.serve { "" } else { " (run `make demo DEMO_ARGS=--serve` to keep it up)" },
        app.port
    );
    if !failures.is_empty() {
        bail!(
            "{} of the demo's requests failed:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
    if args.serve {
        println!("Serving until Ctrl-C (everything started here stops then).");
        loop {
            std::thread::sleep(std::time::Duration::from_millis(500));
            if let Some((name, status)) = group.exited() {
                bail!("{name} exited ({status}) while serving");
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let group = ProcessGroup::default();
    // First thing: a signal must never leave the started processes behind.
    match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(mut signals) => {
            let group = group.clone();
            std::thread::spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    println!("\nsignal {sig}: stopping");
                    group.stop_and_exit(128 + sig);
                }
            });
        }
        Err(e) => {
            eprintln!("digimon-demo: cannot handle signals: {e}");
            return ExitCode::FAILURE;
        }
    }
    let outcome = args().and_then(|a| run(&a, &group));
    let stopped = group.stop();
    if !stopped.is_empty() {
        println!("\nstopped:");
        for line in stopped {
            println!("  {line}");
        }
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("digimon-demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
