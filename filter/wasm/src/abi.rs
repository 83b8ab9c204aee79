//! The proxy-wasm ABI 0.2.1 host calls the filter makes, returning every status, and the ABI's
//! values (map and buffer ids, actions, log levels).
//!
//! Every import returns the raw `u32` status, so a failing host call becomes an error for one
//! request, never a trap. Unsafe code lives here and in [`crate::exports`]: pointer/length pairs
//! handed to the host, and taking ownership of buffers the host allocated through the module's
//! exported allocator.
#![allow(unsafe_code)]

use std::ptr::{null, null_mut};

/// `Status::Ok`.
const OK: u32 = 0;
/// `Status::NotFound`.
const NOT_FOUND: u32 = 1;

/// `MapType::HttpRequestHeaders`.
pub const REQUEST_HEADERS: u32 = 0;
/// `MapType::HttpResponseHeaders`.
pub const RESPONSE_HEADERS: u32 = 2;
/// `BufferType::PluginConfiguration`.
pub const PLUGIN_CONFIGURATION: u32 = 7;

/// `Action::Continue`: the next filter runs.
pub const CONTINUE: u32 = 0;
/// `Action::Pause`: stop iteration (the filter answered locally).
pub const PAUSE: u32 = 1;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(map: u32, out: *mut *mut u8, out_len: *mut usize) -> u32;
    fn proxy_replace_header_map_value(
        map: u32,
        key: *const u8,
        key_len: usize,
        value: *const u8,
        value_len: usize,
    ) -> u32;
    fn proxy_add_header_map_value(
        map: u32,
        key: *const u8,
        key_len: usize,
        value: *const u8,
        value_len: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: *const u8, key_len: usize) -> u32;
    fn proxy_get_buffer_bytes(
        buffer: u32,
        start: usize,
        max: usize,
        out: *mut *mut u8,
        out_len: *mut usize,
    ) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_send_local_response(
        status_code: u32,
        details: *const u8,
        details_len: usize,
        body: *const u8,
        body_len: usize,
        headers: *const u8,
        headers_len: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_log(level: u32, message: *const u8, message_len: usize) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_len: usize, out_id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
}

/// Takes ownership of a host-allocated buffer (allocated by `proxy_on_memory_allocate`, which
/// returns a boxed slice of exactly `len` bytes; see [`crate::exports`]).
fn owned(ptr: *mut u8, len: usize) -> Vec<u8> {
    if ptr.is_null() {
        return Vec::new();
    }
    // SAFETY: the host wrote `len` bytes into memory it obtained from our allocator for this call.
    unsafe { Vec::from_raw_parts(ptr, len, len) }
}

/// The whole header map `map` in the proxy-wasm map encoding (one host call); empty when the
/// host has no such map.
pub fn get_header_pairs(map: u32) -> Result<Vec<u8>, u32> {
    let (mut ptr, mut len) = (null_mut(), 0usize);
    // SAFETY: ptr/len are valid out-parameters.
    match unsafe { proxy_get_header_map_pairs(map, &mut ptr, &mut len) } {
        OK => Ok(owned(ptr, len)),
        NOT_FOUND => Ok(Vec::new()),
        status => Err(status),
    }
}

/// Replaces all values of `key`.
pub fn replace_header(map: u32, key: &str, value: &[u8]) -> Result<(), u32> {
    // SAFETY: both slices are live for the call.
    status(unsafe {
        proxy_replace_header_map_value(map, key.as_ptr(), key.len(), value.as_ptr(), value.len())
    })
}

/// Appends a value to `key`.
pub fn add_header(map: u32, key: &str, value: &[u8]) -> Result<(), u32> {
    // SAFETY: both slices are live for the call.
    status(unsafe {
        proxy_add_header_map_value(map, key.as_ptr(), key.len(), value.as_ptr(), value.len())
    })
}

/// Removes all values of `key` (absent is fine).
pub fn remove_header(map: u32, key: &str) -> Result<(), u32> {
    // SAFETY: key is live for the call.
    match unsafe { proxy_remove_header_map_value(map, key.as_ptr(), key.len()) } {
        OK | NOT_FOUND => Ok(()),
        s => Err(s),
    }
}

/// The whole buffer `buffer` (empty when the host has none).
pub fn get_buffer(buffer: u32) -> Result<Vec<u8>, u32> {
    let (mut ptr, mut len) = (null_mut(), 0usize);
    // SAFETY: ptr/len are valid out-parameters.
    match unsafe { proxy_get_buffer_bytes(buffer, 0, usize::MAX, &mut ptr, &mut len) } {
        OK => Ok(owned(ptr, len)),
        NOT_FOUND => Ok(Vec::new()),
        s => Err(s),
    }
}

/// Sends a local reply with byte-valued headers (no lossy text conversion).
pub fn send_local_response(
    status_code: u32,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
) -> Result<(), u32> {
    let map = serialize_map(headers);
    let (body_ptr, body_len) = if body.is_empty() {
        (null(), 0)
    } else {
        (body.as_ptr(), body.len())
    };
    // SAFETY: all slices are live for the call; -1 means "not a gRPC reply".
    status(unsafe {
        proxy_send_local_response(
            status_code,
            null(),
            0,
            body_ptr,
            body_len,
            map.as_ptr(),
            map.len(),
            -1,
        )
    })
}

/// `LogLevel::Info`.
pub const INFO: u32 = 2;
/// `LogLevel::Error`.
pub const ERROR: u32 = 4;
/// `LogLevel::Critical`.
pub const CRITICAL: u32 = 5;

/// Writes a line to the proxy's log (a failure to log is ignored: there is nowhere to say it).
pub fn log(level: u32, message: &str) {
    // SAFETY: message is live for the call.
    let _ = unsafe { proxy_log(level, message.as_ptr(), message.len()) };
}

/// Defines a counter (`kind` 0) and returns its id.
pub fn define_counter(name: &str) -> Result<u32, u32> {
    define_metric(0, name)
}

/// Defines a gauge (`kind` 1) and returns its id.
pub fn define_gauge(name: &str) -> Result<u32, u32> {
    define_metric(1, name)
}

fn define_metric(kind: u32, name: &str) -> Result<u32, u32> {
    let mut id = 0u32;
    // SAFETY: name is live; id is a valid out-parameter.
    status(unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) }).map(|()| id)
}

/// Sets a gauge.
pub fn record(id: u32, value: u64) -> Result<(), u32> {
    // SAFETY: plain values.
    status(unsafe { proxy_record_metric(id, value) })
}

/// Adds `offset` to a metric.
pub fn increment(id: u32, offset: i64) -> Result<(), u32> {
    // SAFETY: plain values.
    status(unsafe { proxy_increment_metric(id, offset) })
}

/// Asks the host to call `proxy_on_tick` on the current root context every `period_ms`.
pub fn set_tick_period(period_ms: u32) -> Result<(), u32> {
    // SAFETY: a plain value.
    status(unsafe { proxy_set_tick_period_milliseconds(period_ms) })
}

fn status(s: u32) -> Result<(), u32> {
    if s == OK {
        Ok(())
    } else {
        Err(s)
    }
}

/// proxy-wasm map encoding: count, then (key len, value len) pairs, then NUL-terminated keys and values.
fn serialize_map(pairs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| k.len() + v.len() + 10)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    let len32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    out.extend_from_slice(&len32(pairs.len()));
    for (k, v) in pairs {
        out.extend_from_slice(&len32(k.len()));
        out.extend_from_slice(&len32(v.len()));
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}
