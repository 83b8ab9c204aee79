//! proxy-wasm ABI 0.2.1 values (as in the Rust SDK's `types.rs`) and the map serialization.

/// What a stream callback returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Go on with the next filter.
    Continue = 0,
    /// Stop iteration (the filter answered locally or waits).
    Pause = 1,
}

/// `proxy_log` levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// trace
    Trace = 0,
    /// debug
    Debug = 1,
    /// info
    Info = 2,
    /// warn
    Warn = 3,
    /// error
    Error = 4,
    /// critical
    Critical = 5,
}

impl LogLevel {
    /// The level for an ABI value.
    pub fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }
}

/// Host-call results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// No such key/value/metric.
    NotFound = 1,
    /// An argument is out of range.
    BadArgument = 2,
    /// Nothing to return.
    Empty = 7,
    /// The host failed.
    InternalFailure = 10,
}

/// Buffer ids of `proxy_get_buffer_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferType {
    /// Request body.
    HttpRequestBody = 0,
    /// Response body.
    HttpResponseBody = 1,
    /// VM configuration.
    VmConfiguration = 6,
    /// Plugin configuration (the filter's JSON).
    PluginConfiguration = 7,
}

/// Map ids of the header-map calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapType {
    /// Request headers.
    HttpRequestHeaders = 0,
    /// Request trailers.
    HttpRequestTrailers = 1,
    /// Response headers.
    HttpResponseHeaders = 2,
    /// Response trailers.
    HttpResponseTrailers = 3,
}

impl MapType {
    /// The map for an ABI value the host supports.
    pub fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            0 => MapType::HttpRequestHeaders,
            1 => MapType::HttpRequestTrailers,
            2 => MapType::HttpResponseHeaders,
            3 => MapType::HttpResponseTrailers,
            _ => return None,
        })
    }
}

/// Serializes pairs: u32 count, (u32 name length, u32 value length) per pair, then each name
/// and value followed by a NUL byte. All integers little-endian.
pub fn serialize_map(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&len32(pairs.len()).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&len32(k.len()).to_le_bytes());
        out.extend_from_slice(&len32(v.len()).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Parses [`serialize_map`]'s format; `None` when the bytes are malformed.
pub fn deserialize_map(bytes: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let word = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(b.try_into().ok()?) as usize)
    };
    let n = word(0)?;
    let mut data = 4usize.checked_add(n.checked_mul(8)?)?;
    let mut out = Vec::with_capacity(n.min(1024));
    for i in 0..n {
        let (kl, vl) = (word(4 + i * 8)?, word(8 + i * 8)?);
        let k = bytes.get(data..data.checked_add(kl)?)?.to_vec();
        data += kl;
        if bytes.get(data) != Some(&0) {
            return None;
        }
        data += 1;
        let v = bytes.get(data..data.checked_add(vl)?)?.to_vec();
        data += vl;
        if bytes.get(data) != Some(&0) {
            return None;
        }
        data += 1;
        out.push((k, v));
    }
    (data == bytes.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_round_trip_and_malformed_input() {
        let pairs = vec![
            (b":path".to_vec(), b"/".to_vec()),
            (b"x".to_vec(), vec![0xff, 0]),
            (b"e".to_vec(), Vec::new()),
        ];
        let bytes = serialize_map(&pairs);
        assert_eq!(deserialize_map(&bytes), Some(pairs));
        assert_eq!(deserialize_map(&[]), Some(vec![]));
        assert_eq!(deserialize_map(&bytes[..bytes.len() - 1]), None);
        assert_eq!(deserialize_map(&[9, 0, 0, 0]), None);
    }
}
