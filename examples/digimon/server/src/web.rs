//! The `web` service: serves the built page (index.html, app.js) from one directory over HTTP/1.1.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Why the web server stopped.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The directory to serve has no index.html.
    #[error("{dir}/index.html does not exist; build the page first (`make digimon-web`)")]
    NoIndex {
        /// The directory.
        dir: String,
    },
    /// Accepting a connection failed.
    #[error("web server: accepting a connection failed: {0}")]
    Accept(#[source] std::io::Error),
}

/// The file `path` (a request path) names under `root`, or None if it tries to leave it.
pub fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() || rel.ends_with('/') {
        format!("{rel}index.html")
    } else {
        rel.to_owned()
    };
    let rel = Path::new(&rel);
    // Only plain names: no `..`, no absolute parts, no `.`.
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(root.join(rel))
}

/// The Content-Type for a file name.
pub fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") | Some("map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn answer(root: &Path, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    let Some(file) = resolve(root, req.uri().path()) else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    match tokio::fs::read(&file).await {
        Ok(bytes) => {
            let mut r = Response::new(Full::new(if req.method() == Method::HEAD {
                Bytes::new()
            } else {
                Bytes::from(bytes)
            }));
            let headers = r.headers_mut();
            headers.insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(content_type(&file)),
            );
            // The page is rebuilt often while trying the demo.
            headers.insert(
                hyper::header::CACHE_CONTROL,
                hyper::header::HeaderValue::from_static("no-cache"),
            );
            r
        }
        Err(_) => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Checks that `root` holds a page to serve.
pub fn check_root(root: &Path) -> Result<(), WebError> {
    if root.join("index.html").is_file() {
        Ok(())
    } else {
        Err(WebError::NoIndex {
            dir: root.display().to_string(),
        })
    }
}

/// Serves `root` on `listener` until the process ends, printing one line per request.
pub async fn serve(listener: tokio::net::TcpListener, root: PathBuf) -> Result<(), WebError> {
    check_root(&root)?;
    let root = Arc::new(root);
    loop {
        let (stream, _) = listener.accept().await.map_err(WebError::Accept)?;
        let root = Arc::clone(&root);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let root = Arc::clone(&root);
                async move {
                    let r = answer(&root, &req).await;
                    println!(
                        "{} {} (host {}) -> {}",
                        req.method(),
                        req.uri().path(),
                        req.headers()
                            .get(hyper::header::HOST)
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or("-"),
                        r.status().as_u16()
                    );
                    Ok::<_, Infallible>(r)
                }
            });
            // A client that hangs up mid-request is not the server's problem.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn paths_stay_inside_the_root() {
        let root = Path::new("/srv/web");
        assert_eq!(resolve(root, "/").unwrap(), root.join("index.html"));
        assert_eq!(resolve(root, "/?x=1").unwrap(), root.join("index.html"));
        assert_eq!(resolve(root, "/app.js").unwrap(), root.join("app.js"));
        assert_eq!(
            resolve(root, "/assets/").unwrap(),
            root.join("assets/index.html")
        );
        for bad in ["/../etc/passwd", "/a/../../x", "/./app.js", "//etc/passwd"] {
            let r = resolve(root, bad);
            assert!(
                r.as_ref().is_none_or(|p| p.starts_with(root)),
                "{bad} -> {r:?}"
            );
        }
        assert!(resolve(root, "/../etc/passwd").is_none());
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(
            content_type(Path::new("index.html")),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("app.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("blob")), "application/octet-stream");
    }
}
