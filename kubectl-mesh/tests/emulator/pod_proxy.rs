//! The API server's pod proxy, forwarding to a real local listener (Envoy's stats in tests).

use super::{status, Reply, State};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use std::sync::{Arc, Mutex};

/// `(namespace, pod, port, path)` of a pod proxy request.
pub(super) fn pod_proxy_target(path: &str) -> Option<(String, String, String, String)> {
    let parts: Vec<&str> = path.splitn(8, '/').collect();
    match parts.as_slice() {
        ["api", "v1", "namespaces", ns, "pods", pod_port, "proxy", rest @ ..] => {
            let (pod, port) = pod_port.split_once(':').unwrap_or((pod_port, ""));
            Some((
                ns.to_string(),
                pod.to_string(),
                port.to_string(),
                rest.first().copied().unwrap_or_default().to_owned(),
            ))
        }
        _ => None,
    }
}

/// The API server's pod proxy: RBAC on `pods/proxy`, the pod must exist, the port must be a
/// number; then the pod's own answer (status, content type and body) is passed back, or 503
/// when nothing listens there, as the API server does.
pub(super) async fn pod_proxy(
    state: &Arc<Mutex<State>>,
    method: &Method,
    path: &str,
    (ns, pod, port, rest): (String, String, String, String),
    query: &str,
) -> Reply {
    let target = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        st.log.push(format!("{method} /{path}"));
        if st
            .forbidden
            .iter()
            .any(|(p, n)| p == "pods/proxy" && (n == "*" || *n == pod))
        {
            return status(403, "Forbidden", format!(
                "pods \"{pod}\" is forbidden: User \"dev\" cannot get resource \"pods/proxy\" in API group \"\" in the namespace \"{ns}\""
            ));
        }
        if st.get("api/v1", "pods", &ns, &pod).is_none() {
            return status(404, "NotFound", format!("pods \"{pod}\" not found"));
        }
        let Ok(port) = port.parse::<u16>() else {
            return status(400, "BadRequest", format!("invalid port {port:?} in {pod}"));
        };
        st.pod_proxies
            .get(&(ns.clone(), pod.clone(), port))
            .copied()
            .ok_or(port)
    };
    let refused = |port: u16| {
        status(
            503,
            "ServiceUnavailable",
            format!(
            "error trying to reach service: dial tcp 10.1.0.7:{port}: connect: connection refused"
        ),
        )
    };
    let addr = match target {
        Ok(addr) => addr,
        Err(port) => return refused(port),
    };
    let uri = if query.is_empty() {
        format!("/{rest}")
    } else {
        format!("/{rest}?{query}")
    };
    match forward(addr, method, &uri).await {
        Ok((code, content_type, body)) => {
            let mut r = Response::new(Full::new(body));
            *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
            if let Ok(v) = hyper::header::HeaderValue::from_str(&content_type) {
                r.headers_mut().insert("content-type", v);
            }
            r
        }
        Err(_) => refused(addr.port()),
    }
}

/// One HTTP/1.1 request to `addr`: status, content type and body of the answer.
async fn forward(
    addr: std::net::SocketAddr,
    method: &Method,
    uri: &str,
) -> Result<(u16, String, Bytes), Box<dyn std::error::Error + Send + Sync>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = Request::builder()
        .method(method.clone())
        .uri(uri)
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    let code = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/plain")
        .to_owned();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((code, content_type, body))
}
