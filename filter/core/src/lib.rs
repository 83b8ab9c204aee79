//! kubectl-mesh's filter logic, free of proxy-wasm: the config schema, its validation, and the
//! per-request engine (host routing, CORS, header rules). The wasm adapter `mesh-filter` and
//! the `kubectl-mesh` plugin both use it, so a config the plugin accepts is one the filter runs.

pub mod bytes_regex;
pub mod compile;
pub mod config;
pub mod cors;
pub mod engine;
pub mod headers;
pub mod host;
pub mod json;
pub mod request;
pub mod router;
pub mod upstream;

pub use compile::{compile, compile_for, compile_json, ConfigError};
pub use config::{Delivery, FilterConfig, HostMatching, MeshConfig, API_VERSION, KIND};
pub use engine::{revision_number, Engine, LocalReply, ReplyKind, RequestOutcome, RequestState};
pub use request::{HeaderList, HeaderMap, Pairs, RequestHeaders};
pub use upstream::{GRPC_WEB_HEADER, RESERVED_HEADERS, UPSTREAM_HEADER};
