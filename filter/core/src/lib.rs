//! kubectl-mesh's filter logic, free of proxy-wasm: the config schema, its validation, and the
//! per-request engine (host routing, CORS, header rules). The wasm adapter `mesh-filter` and
//! the `kubectl-mesh` plugin both use it, so a config the plugin accepts is one the filter runs.

pub mod compile;
pub mod config;
pub mod cors;
pub mod engine;
pub mod headers;
pub mod host;
pub mod router;
pub mod upstream;

pub use compile::{compile, compile_json, ConfigError};
pub use config::{MeshConfig, API_VERSION, KIND};
pub use engine::{
    Engine, HeaderList, HeaderMap, LocalReply, ReplyKind, RequestOutcome, RequestState,
};
pub use upstream::UPSTREAM_HEADER;
