//! What a test sees of the filter: headers, mutations, results, logs, metrics and errors.

use crate::abi::{self, Action, LogLevel};

/// An ordered header multimap, as a proxy-wasm host keeps one. Names are stored lower-case.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(Vec<u8>, Vec<u8>)>);

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.to_text()).finish()
    }
}

impl Headers {
    /// Builds a map from pairs; names are lower-cased as Envoy does.
    pub fn from_pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Self {
        Headers(
            pairs
                .iter()
                .map(|(k, v)| (k.as_ref().to_ascii_lowercase(), v.as_ref().to_vec()))
                .collect(),
        )
    }
    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
    }
    /// The first value of `name` as text (lossy).
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&[u8]> {
        self.0
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
            .collect()
    }
    /// How many values `name` has.
    pub fn count(&self, name: &str) -> usize {
        self.all(name).len()
    }
    /// Names and values as text (lossy), for readable assertions.
    pub fn to_text(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }
    /// What changed from `self` to `after`, as multisets of pairs: `(removed, added)`, each in
    /// map order. A replaced value shows as one removal and one addition.
    pub fn changes(&self, after: &Headers) -> Mutations {
        let minus = |a: &Headers, b: &Headers| {
            let mut left: Vec<Option<&(Vec<u8>, Vec<u8>)>> = b.0.iter().map(Some).collect();
            let mut out = Vec::new();
            for pair in &a.0 {
                match left.iter_mut().find(|p| **p == Some(pair)) {
                    Some(slot) => *slot = None,
                    None => out.push(pair.clone()),
                }
            }
            Headers(out)
        };
        Mutations {
            removed: minus(self, after),
            added: minus(after, self),
        }
    }

    /// The map in the proxy-wasm pair serialization (count, lengths, NUL-terminated data).
    pub fn serialize(&self) -> Vec<u8> {
        abi::serialize_map(&self.0)
    }
}

/// Header changes a filter made: pairs that went away and pairs that appeared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mutations {
    /// Pairs in the map before but not after.
    pub removed: Headers,
    /// Pairs in the map after but not before.
    pub added: Headers,
}

/// A local response the filter sent with `proxy_send_local_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    /// HTTP status.
    pub status: u32,
    /// Status-code details (Envoy's `response_code_details`).
    pub details: Vec<u8>,
    /// Response headers.
    pub headers: Headers,
    /// Response body.
    pub body: Vec<u8>,
    /// gRPC status, -1 for none.
    pub grpc_status: i32,
}

impl LocalResponse {
    /// The body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the filter did with request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestResult {
    /// The action `proxy_on_request_headers` returned.
    pub action: Action,
    /// The request headers as sent to the filter.
    pub headers_before: Headers,
    /// The request headers after the filter's changes (what Envoy would route on).
    pub headers_after: Headers,
    /// The local response, if the filter sent one.
    pub local_response: Option<LocalResponse>,
}

impl RequestResult {
    /// Every change the filter made to the request headers.
    pub fn mutations(&self) -> Mutations {
        self.headers_before.changes(&self.headers_after)
    }
}

/// What the filter did with response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseResult {
    /// The action `proxy_on_response_headers` returned.
    pub action: Action,
    /// The response headers as sent to the filter.
    pub headers_before: Headers,
    /// The response headers after the filter's changes.
    pub headers_after: Headers,
}

impl ResponseResult {
    /// Every change the filter made to the response headers.
    pub fn mutations(&self) -> Mutations {
        self.headers_before.changes(&self.headers_after)
    }
}

/// One `proxy_log` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Level.
    pub level: LogLevel,
    /// Message (lossy UTF-8).
    pub message: String,
}

/// Why the harness could not do what a test asked.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// `proxy_on_configure` returned false; the logs say why.
    #[error("on_configure rejected the configuration; logs: {logs:?}")]
    Rejected {
        /// Everything the filter logged while loading.
        logs: Vec<LogEntry>,
    },
    /// The module trapped (a panic aborts, an unimplemented host call traps).
    #[error("the filter trapped in {call}: {message}\nlast logs: {last_logs:?}\nguest output: {output}\nhost-call failures: {failures:?}")]
    Trap {
        /// The last lines the filter logged (the SDK logs a panic's message at critical level).
        last_logs: Vec<LogEntry>,
        /// The entry point that trapped.
        call: String,
        /// wasmtime's error chain, with the wasm backtrace.
        message: String,
        /// What the guest wrote to stdout/stderr (a panic message).
        output: String,
        /// Host calls that failed.
        failures: Vec<String>,
    },
    /// The guest made host calls the harness flags as wrong without trapping.
    #[error("host-call failures during {call}: {failures:?}")]
    HostCalls {
        /// The entry point.
        call: String,
        /// What went wrong.
        failures: Vec<String>,
    },
    /// Anything else (missing module, bad return value, ...).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<wasmtime::Error> for HarnessError {
    fn from(e: wasmtime::Error) -> Self {
        HarnessError::Other(anyhow::Error::from(e))
    }
}

/// A registered metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    /// Name given to `proxy_define_metric`.
    pub name: String,
    /// 0 counter, 1 gauge, 2 histogram.
    pub kind: u32,
    /// Current value (histograms: last recorded value).
    pub value: u64,
}
