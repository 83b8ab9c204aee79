//! `make demo`: the digimon app's routing, CORS and gRPC-Web setup running in real Envoy through
//! the mesh filter, with a table of what each request did.

use mesh_tests::client::{Request, Response};
use mesh_tests::MeshFixture;
use std::path::PathBuf;

struct Step {
    what: &'static str,
    req: Request,
}

fn steps() -> Vec<Step> {
    let web = "http://web.backend.com";
    vec![
        Step {
            what: "browser loads the web app",
            req: Request::get("web.backend.com", "/"),
        },
        Step {
            what: "web app asset, host in upper case with port",
            req: Request::get("WEB.backend.com:80", "/static/js/main.js"),
        },
        Step {
            what: "gRPC-Web CORS preflight from the web app",
            req: Request::new("OPTIONS", "api.backend.com", "/digimon.Digimon/Query")
                .header("origin", web)
                .header("access-control-request-method", "POST")
                .header(
                    "access-control-request-headers",
                    "content-type,x-grpc-web,x-user-agent",
                ),
        },
        Step {
            what: "gRPC-Web call from the web app",
            req: Request::new("POST", "api.backend.com", "/digimon.Digimon/Query")
                .header("origin", web)
                .header("content-type", "application/grpc-web-text")
                .header("x-grpc-web", "1")
                .body("AAAAAAYKBEFndW1vbg=="),
        },
        Step {
            what: "same call from a foreign origin (no CORS grant)",
            req: Request::new("POST", "api.backend.com", "/digimon.Digimon/Query")
                .header("origin", "http://evil.example"),
        },
        Step {
            what: "API host, path outside the gRPC service",
            req: Request::get("api.backend.com", "/admin"),
        },
        Step {
            what: "unknown host",
            req: Request::get("other.example", "/"),
        },
        Step {
            what: "client tries to pick the upstream itself",
            req: Request::get("other.example", "/").header(
                mesh_core::UPSTREAM_HEADER,
                "outbound|6000||server.digimon.svc.cluster.local",
            ),
        },
    ]
}

fn describe(r: &Response) -> (String, String) {
    let upstream = match r.received() {
        Some(g) => format!("{} {}", g.upstream, g.path),
        None => "(answered by the filter)".to_owned(),
    };
    let mut notes = Vec::new();
    if let Some(o) = r.header("access-control-allow-origin") {
        notes.push(format!("allow-origin={o}"));
    }
    if let Some(m) = r.header("access-control-allow-methods") {
        notes.push(format!("allow-methods={m}"));
    }
    if let Some(e) = r.header("access-control-expose-headers") {
        notes.push(format!("expose={e}"));
    }
    if r.received().is_none() && !r.body.is_empty() && r.status >= 400 {
        notes.push(String::from_utf8_lossy(&r.body).trim().to_owned());
    }
    (upstream, notes.join(" "))
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let config = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "examples/digimon/mesh.yaml".into()),
    );
    let serve = args.any(|a| a == "--serve");

    println!(
        "kubectl-mesh demo: {} in real Envoy ({})",
        config.display(),
        mesh_tests::envoy::envoy_binary().display()
    );
    let f = MeshFixture::start(&config)?;
    println!(
        "Envoy listens on 127.0.0.1:{}; upstreams stand in for the Kubernetes services:",
        f.envoy.port
    );
    for (cluster, up) in &f.upstreams {
        println!(
            "  {cluster:<52} -> echo server '{}' on 127.0.0.1:{}",
            up.name, up.port
        );
    }
    println!();
    println!(
        "{:<48} {:<46} {:>6}  {:<40} notes",
        "what", "request", "status", "reached"
    );
    let mut failures = 0;
    for s in steps() {
        let r = f.envoy.send(&s.req);
        let (upstream, notes) = describe(&r);
        let target = format!(
            "{} {}{}",
            s.req.method,
            s.req.host.as_deref().unwrap_or(""),
            s.req.path
        );
        println!(
            "{:<48} {:<46} {:>6}  {:<40} {}",
            s.what, target, r.status, upstream, notes
        );
        if r.status >= 500 {
            failures += 1;
        }
    }
    println!();
    println!(
        "filter counters: routed={} preflight={} not_found={}",
        f.envoy.stat("wasmcustom.mesh_filter_routed").unwrap_or(0),
        f.envoy
            .stat("wasmcustom.mesh_filter_cors_preflight")
            .unwrap_or(0),
        f.envoy
            .stat("wasmcustom.mesh_filter_not_found")
            .unwrap_or(0)
    );
    if serve {
        println!(
            "\nServing until Ctrl-C; try: curl -H 'Host: web.backend.com' http://127.0.0.1:{}/",
            f.envoy.port
        );
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    anyhow::ensure!(
        failures == 0,
        "{failures} requests failed with 5xx; see Envoy's log above"
    );
    Ok(())
}
