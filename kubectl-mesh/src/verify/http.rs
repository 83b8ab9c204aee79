//! A raw HTTP/1.1 client: full control over odd requests (no Host, spoofed headers, bad bytes),
//! for `verify`'s requests and every test harness.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// An HTTP response as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// First value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// The echo upstream's report, if an upstream answered.
    pub fn received(&self) -> Option<super::echo::Received> {
        self.header("x-upstream")?;
        serde_json::from_slice(&self.body).ok()
    }
}

/// A request to send. `host: None` sends no Host header at all.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method.
    pub method: String,
    /// Request target.
    pub path: String,
    /// Host header value.
    pub host: Option<String>,
    /// Other headers (raw bytes allowed).
    pub headers: Vec<(String, Vec<u8>)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Request {
    /// A GET for `host` and `path`.
    pub fn get(host: &str, path: &str) -> Request {
        Request::new("GET", host, path)
    }
    /// Any method.
    pub fn new(method: &str, host: &str, path: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            host: Some(host.into()),
            headers: vec![],
            body: vec![],
        }
    }
    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Request {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }
    /// Sets the body.
    pub fn body(mut self, body: impl AsRef<[u8]>) -> Request {
        self.body = body.as_ref().to_vec();
        self
    }
    /// Removes the Host header.
    pub fn no_host(mut self) -> Request {
        self.host = None;
        self
    }

    /// The request as HTTP/1.1 bytes; `close` asks the server to close the connection after it.
    pub fn encode(&self, close: bool) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.path).into_bytes();
        if let Some(h) = &self.host {
            out.extend_from_slice(format!("host: {h}\r\n").as_bytes());
        }
        for (k, v) in &self.headers {
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes());
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// Sends it to 127.0.0.1:`port` on a fresh connection and reads the whole answer.
    pub fn send(&self, port: u16) -> std::io::Result<Response> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(&self.encode(true))?;
        read_response(&mut BufReader::new(s))
    }
}

fn read_response<R: BufRead>(r: &mut R) -> std::io::Result<Response> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("bad status line {line:?}")))?;
    let headers = read_headers(r)?;
    let find = |n: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k == n)
            .map(|(_, v)| v.clone())
    };
    let body = if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        let mut b = vec![0; len];
        r.read_exact(&mut b)?;
        b
    } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_chunked(r)?
    } else {
        let mut b = Vec::new();
        r.read_to_end(&mut b)?;
        b
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Reads header lines up to the blank line (or EOF). Names are lower-cased; bytes may be any
/// octets (tests send non-UTF-8), decoded lossily.
pub fn read_headers<R: BufRead>(r: &mut R) -> std::io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let mut raw = Vec::new();
        if r.read_until(b'\n', &mut raw)? == 0 {
            return Ok(headers);
        }
        let h = String::from_utf8_lossy(&raw);
        let h = h.trim_end();
        if h.is_empty() {
            return Ok(headers);
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
}

/// Reads a chunked body (and its trailers).
pub fn read_chunked<R: BufRead>(r: &mut R) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        r.read_line(&mut size)?;
        let n =
            usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        if n == 0 {
            loop {
                let mut t = String::new();
                if r.read_line(&mut t)? == 0 || t.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let mut chunk = vec![0; n + 2];
        r.read_exact(&mut chunk)?;
        chunk.truncate(n);
        body.extend_from_slice(&chunk);
    }
}

/// A keep-alive connection, for benchmarks: many requests, one TCP connection.
pub struct Conn {
    stream: BufReader<TcpStream>,
}

impl Conn {
    /// Connects to 127.0.0.1:`port`.
    pub fn open(port: u16) -> std::io::Result<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Conn {
            stream: BufReader::new(s),
        })
    }

    /// Sends `req` (without `connection: close`) and reads the answer.
    pub fn send(&mut self, req: &Request) -> std::io::Result<Response> {
        self.stream.get_mut().write_all(&req.encode(false))?;
        read_response(&mut self.stream)
    }
}
