//! The digimon app's real backends (the HTTP/2-only gRPC server and the web service) and the
//! calls its page makes: used by `make demo` and by the suites that put them behind a proxy,
//! so a protocol the server refuses shows up as it would in a cluster.

use crate::app::{listening_on, Binaries, Output, ProcessGroup};
use crate::client::{Request, Response};
use crate::grpc_web::{self, Message};
use anyhow::{ensure, Context};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The page's origin.
pub const WEB_ORIGIN: &str = "http://web.backend.com";
/// The API host the page calls.
pub const API_HOST: &str = "api.backend.com";

/// The gRPC server and the web service, running on free loopback ports.
#[derive(Debug)]
pub struct Backends {
    /// Where the gRPC server listens (`127.0.0.1:PORT`).
    pub server_addr: String,
    /// Where the web service listens.
    pub web_addr: String,
    /// The gRPC server's output (one line per call).
    pub server: Output,
    /// The web service's output (one line per request).
    pub web: Output,
    /// The processes (stopped on drop by the group's owner).
    pub group: ProcessGroup,
}

impl Backends {
    /// Starts both in `group` and waits until they listen; `step_ms` paces QueryStream.
    pub fn start(
        bins: &Binaries,
        web_dir: &Path,
        step_ms: u64,
        echo: bool,
        group: &ProcessGroup,
    ) -> anyhow::Result<Backends> {
        let ready = Duration::from_secs(60);
        let mut cmd = Command::new(&bins.server);
        cmd.args(["--listen", "127.0.0.1:0", "--step-ms"])
            .arg(step_ms.to_string());
        let server = group.spawn("server", cmd, echo)?;
        let server_addr = listening_on(&server.wait_line("listening on", group, ready)?)?;
        let mut cmd = Command::new(&bins.web);
        cmd.args(["--listen", "127.0.0.1:0", "--dir"]).arg(web_dir);
        let web = group.spawn("web", cmd, echo)?;
        let web_addr = listening_on(&web.wait_line("listening on", group, ready)?)?;
        Ok(Backends {
            server_addr,
            web_addr,
            server,
            web,
            group: group.clone(),
        })
    }
}

/// One gRPC-Web call as the page's script makes it: binary frames, the CORS headers of a page
/// on `origin`, to `host`.
pub fn grpc_web_call(host: &str, method: &str, message: &Message, origin: &str) -> Request {
    Request::new("POST", host, &format!("/digimon.Digimon/{method}"))
        .header("origin", origin)
        .header("content-type", grpc_web::CONTENT_TYPE)
        .header("x-grpc-web", "1")
        .header("x-user-agent", "connect-es/2.3.0")
        .body(grpc_web::frame(message.encode()))
}

/// The page's CORS preflight for `method`.
pub fn preflight(host: &str, method: &str, origin: &str) -> Request {
    Request::new("OPTIONS", host, &format!("/digimon.Digimon/{method}"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-grpc-web,x-user-agent",
        )
}

/// The gRPC-Web answer's messages, after checking the HTTP status, `grpc-status` and the CORS
/// grant for `origin` (a browser hides an answer without one).
pub fn grpc_answer(r: &Response, what: &str, origin: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    ensure!(
        r.status == 200,
        "{what}: HTTP {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    let frames = grpc_web::parse(&r.body)?;
    let status = frames
        .trailer("grpc-status")
        .or(r.header("grpc-status"))
        .unwrap_or("missing");
    ensure!(
        status == "0",
        "{what}: grpc-status {status} {}",
        frames
            .trailer("grpc-message")
            .or(r.header("grpc-message"))
            .unwrap_or("")
    );
    ensure!(
        r.header("access-control-allow-origin") == Some(origin),
        "{what}: no CORS grant for {origin} (a browser would refuse the answer)"
    );
    ensure!(
        r.header("access-control-allow-credentials") == Some("true"),
        "{what}: no access-control-allow-credentials: true"
    );
    Ok(frames.messages)
}

/// `Create` a digimon named `name` through `send`; its id.
pub fn create(
    send: &dyn Fn(&Request) -> anyhow::Result<Response>,
    name: &str,
) -> anyhow::Result<String> {
    let r = send(&grpc_web_call(
        API_HOST,
        "Create",
        &Message::new().string(1, name),
        WEB_ORIGIN,
    ))?;
    let messages = grpc_answer(&r, "Create", WEB_ORIGIN)?;
    let fields = grpc_web::strings(messages.first().context("Create: no message")?)?;
    ensure!(
        fields.get(&2).map(String::as_str) == Some(name),
        "Create: wrong name {fields:?}"
    );
    fields.get(&1).cloned().context("Create: no id")
}

/// `QueryStream` for `id` through `send`: the updates the server streamed, as text.
pub fn query_stream(
    send: &dyn Fn(&Request) -> anyhow::Result<Response>,
    id: &str,
) -> anyhow::Result<Vec<String>> {
    let r = send(&grpc_web_call(
        API_HOST,
        "QueryStream",
        &Message::new().string(1, id),
        WEB_ORIGIN,
    ))?;
    grpc_answer(&r, "QueryStream", WEB_ORIGIN)?
        .iter()
        .map(|m| {
            let f = grpc_web::strings(m)?;
            let get = |n| f.get(&n).map_or("", String::as_str).to_owned();
            Ok(format!("{} at {} ({})", get(3), get(4), get(5)))
        })
        .collect()
}
