//! Echo upstreams: tiny HTTP/1.1 servers that answer with who they are and the request they got
//! (the upstreams of `verify`'s runs and of every test harness).

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

/// What an upstream received, as it reports it (JSON body of its answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    /// The upstream's name (e.g. `server:6000`).
    pub upstream: String,
    /// Request method.
    pub method: String,
    /// Request target (path and query).
    pub path: String,
    /// Headers in arrival order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body length.
    pub body_len: usize,
}

impl Received {
    /// First value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A running echo server; it lives as long as the process (threads are detached).
#[derive(Debug, Clone)]
pub struct EchoUpstream {
    /// Name reported in answers.
    pub name: String,
    /// Loopback port.
    pub port: u16,
    /// Everything received so far.
    pub log: Arc<Mutex<Vec<Received>>>,
}

impl EchoUpstream {
    /// Starts a server named `name` on a free loopback port.
    pub fn start(name: &str) -> std::io::Result<EchoUpstream> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let up = EchoUpstream {
            name: name.to_owned(),
            port,
            log: Arc::default(),
        };
        let me = up.clone();
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let me = me.clone();
                thread::spawn(move || me.serve(conn));
            }
        });
        Ok(up)
    }

    /// Number of requests received.
    pub fn count(&self) -> usize {
        self.log.lock().map(|l| l.len()).unwrap_or(0)
    }

    fn serve(&self, conn: TcpStream) {
        let _ = conn.set_nodelay(true);
        let Ok(read_half) = conn.try_clone() else {
            return;
        };
        let mut reader = BufReader::new(read_half);
        let mut conn = conn;
        loop {
            // Header bytes may be any octets (tests send non-UTF-8): read bytes, decode lossily.
            let mut raw = Vec::new();
            if reader.read_until(b'\n', &mut raw).unwrap_or(0) == 0 {
                return;
            }
            let line = String::from_utf8_lossy(&raw).into_owned();
            let mut parts = line.trim_end().splitn(3, ' ');
            let method = parts.next().unwrap_or_default().to_owned();
            let path = parts.next().unwrap_or_default().to_owned();
            let Ok(headers) = super::http::read_headers(&mut reader) else {
                return;
            };
            let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            let mut body_len = 0;
            if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                body_len = len;
            } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
                body_len = super::http::read_chunked(&mut reader)
                    .map(|b| b.len())
                    .unwrap_or(0);
            }
            let got = Received {
                upstream: self.name.clone(),
                method,
                path,
                headers,
                body_len,
            };
            if let Ok(mut l) = self.log.lock() {
                l.push(got.clone());
            }
            // Strings and numbers only: it serializes; if it ever did not, the test sees a 500.
            let Ok(body) = serde_json::to_vec(&got) else {
                let _ = conn
                    .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n");
                return;
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-upstream: {}\r\ncontent-length: {}\r\n\r\n",
                self.name,
                body.len()
            );
            if conn
                .write_all(head.as_bytes())
                .and_then(|_| conn.write_all(&body))
                .is_err()
            {
                return;
            }
        }
    }
}
