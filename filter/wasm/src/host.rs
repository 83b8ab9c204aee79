//! Host-call wrappers: proxy-wasm header maps behind mesh-core's `HeaderMap`, with typed errors.
//!
//! Everything goes through [`crate::abi`], which never panics on a host status, and uses byte
//! values, so non-UTF-8 headers are fine.

use crate::abi;
use mesh_core::{HeaderMap, LocalReply};

/// Which header map of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Map {
    /// The request headers.
    Request,
    /// The response headers.
    Response,
}

impl Map {
    fn id(self) -> u32 {
        match self {
            Map::Request => abi::REQUEST_HEADERS,
            Map::Response => abi::RESPONSE_HEADERS,
        }
    }
}

/// A host call that failed, with the proxy-wasm status code the host returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// Reading or changing a header map failed.
    #[error("header {op} on the {map:?} headers failed with status {status}")]
    Header {
        /// What was attempted.
        op: &'static str,
        /// Which map.
        map: Map,
        /// The host's status code.
        status: u32,
    },
    /// Sending a local reply failed.
    #[error("sending local reply {reply} failed with status {status}")]
    LocalReply {
        /// The reply's HTTP status.
        reply: u16,
        /// The host's status code.
        status: u32,
    },
    /// Reading the plugin configuration failed.
    #[error("reading plugin configuration failed with status {0}")]
    Configuration(u32),
    /// The host returned request headers that are not in the proxy-wasm map encoding.
    #[error("the host's request header map is malformed")]
    Malformed,
}

/// A header map of the current stream (request or response headers).
pub struct HostHeaders(pub Map);

impl HostHeaders {
    fn err(&self, op: &'static str) -> impl Fn(u32) -> HostError + '_ {
        move |status| HostError::Header {
            op,
            map: self.0,
            status,
        }
    }

    /// Every header of the map, in one host call (the engine reads the request from this).
    pub fn pairs(&self) -> Result<Vec<u8>, HostError> {
        abi::get_header_pairs(self.0.id()).map_err(self.err("get pairs"))
    }
}

impl HeaderMap for HostHeaders {
    type Error = HostError;
    fn set(&mut self, name: &str, value: &[u8]) -> Result<(), HostError> {
        abi::replace_header(self.0.id(), name, value).map_err(self.err("set"))
    }
    fn add(&mut self, name: &str, value: &[u8]) -> Result<(), HostError> {
        abi::add_header(self.0.id(), name, value).map_err(self.err("add"))
    }
    fn remove(&mut self, name: &str) -> Result<(), HostError> {
        abi::remove_header(self.0.id(), name).map_err(self.err("remove"))
    }
}

/// Sends a local reply; header values go out as bytes, exactly as the engine built them.
pub fn send_reply(reply: &LocalReply) -> Result<(), HostError> {
    abi::send_local_response(u32::from(reply.status), &reply.headers.0, &reply.body).map_err(
        |status| HostError::LocalReply {
            reply: reply.status,
            status,
        },
    )
}

/// The plugin configuration bytes (empty when none is set).
pub fn plugin_configuration() -> Result<Vec<u8>, HostError> {
    abi::get_buffer(abi::PLUGIN_CONFIGURATION).map_err(HostError::Configuration)
}
