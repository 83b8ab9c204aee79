//! Host-call wrappers: proxy-wasm header maps behind mesh-core's `HeaderMap`, with typed errors.
//!
//! The SDK's trait helpers `unwrap` host results (a panic kills the VM); these use the fallible
//! `hostcalls` functions and byte values, so non-UTF-8 headers are fine.

use mesh_core::{HeaderMap, LocalReply};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{MapType, Status};

/// A host call that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Reading or changing a header map failed.
    #[error("header {op} on {map:?} failed with status {status:?}")]
    Header {
        /// What was attempted.
        op: &'static str,
        /// Which map.
        map: MapType,
        /// The host's status.
        status: Status,
    },
    /// Sending a local reply failed.
    #[error("sending local reply {0} failed")]
    LocalReply(u16),
    /// Reading the plugin configuration failed.
    #[error("reading plugin configuration failed with status {0:?}")]
    Configuration(Status),
}

/// A header map of the current stream (request or response headers).
pub struct HostHeaders(pub MapType);

impl HeaderMap for HostHeaders {
    type Error = HostError;
    fn get(&mut self, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        hostcalls::get_map_value_bytes(self.0, name).map_err(|status| HostError::Header {
            op: "get",
            map: self.0,
            status,
        })
    }
    fn set(&mut self, name: &str, value: &[u8]) -> Result<(), HostError> {
        hostcalls::set_map_value_bytes(self.0, name, Some(value)).map_err(|status| {
            HostError::Header {
                op: "set",
                map: self.0,
                status,
            }
        })
    }
    fn add(&mut self, name: &str, value: &[u8]) -> Result<(), HostError> {
        hostcalls::add_map_value_bytes(self.0, name, value).map_err(|status| HostError::Header {
            op: "add",
            map: self.0,
            status,
        })
    }
    fn remove(&mut self, name: &str) -> Result<(), HostError> {
        hostcalls::remove_map_value(self.0, name).map_err(|status| HostError::Header {
            op: "remove",
            map: self.0,
            status,
        })
    }
}

/// Sends a local reply. Header values that are not UTF-8 (only an echoed origin can be) are
/// sent lossily, because the SDK's local-reply call takes text.
pub fn send_reply(reply: &LocalReply) -> Result<(), HostError> {
    let values: Vec<(&str, std::borrow::Cow<'_, str>)> = reply
        .headers
        .0
        .iter()
        .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v)))
        .collect();
    let headers: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_ref())).collect();
    let body = (!reply.body.is_empty()).then_some(reply.body.as_slice());
    // The SDK panics on an unexpected status from this call; a panic aborts (panic = "abort").
    hostcalls::send_http_response(u32::from(reply.status), headers, body)
        .map_err(|_| HostError::LocalReply(reply.status))
}

/// The plugin configuration bytes (empty when none is set).
pub fn plugin_configuration() -> Result<Vec<u8>, HostError> {
    hostcalls::get_buffer(
        proxy_wasm::types::BufferType::PluginConfiguration,
        0,
        usize::MAX,
    )
    .map(Option::unwrap_or_default)
    .map_err(HostError::Configuration)
}
