//! `mesh-filter`: the proxy-wasm entry points. Configuration is compiled once in `on_configure`;
//! the HTTP context methods only hand headers to `mesh_core::Engine` and act on its answer.

mod abi;
pub mod host;
pub mod metrics;

use host::{HostError, HostHeaders};
use mesh_core::{Engine, Pairs, RequestOutcome, RequestState};
use metrics::Metrics;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, MapType};
use std::rc::Rc;

/// The VM entry point (`_initialize`), registering the root context.
mod entry {
    use super::*;
    proxy_wasm::main! {{
        // Log lines go straight to proxy_log (no `log` crate or SDK logger in the module);
        // a panic (denied by lints, and fatal with panic = abort) still says why.
        std::panic::set_hook(Box::new(|info| abi::log(abi::CRITICAL, &info.to_string())));
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(MeshRoot::default()) });
    }}
}

/// One per plugin configuration: holds the compiled engine.
#[derive(Default)]
pub struct MeshRoot {
    engine: Option<Rc<Engine>>,
    metrics: Option<Metrics>,
}

impl Context for MeshRoot {}

impl RootContext for MeshRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let metrics = *self.metrics.get_or_insert_with(Metrics::define);
        let bytes = match host::plugin_configuration() {
            Ok(b) => b,
            Err(e) => {
                abi::log(abi::ERROR, &format!("mesh-filter: {e}"));
                metrics.error();
                metrics.configured(false);
                return false;
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        match mesh_core::compile_json(&text) {
            Ok(engine) => {
                let (hosts, routes) = engine.size();
                abi::log(
                    abi::INFO,
                    &format!("mesh-filter: configured {hosts} hosts, {routes} routes"),
                );
                metrics.revision(engine.revision());
                self.engine = Some(Rc::new(engine));
                metrics.configured(true);
                true
            }
            Err(e) => {
                abi::log(
                    abi::ERROR,
                    &format!("mesh-filter: invalid configuration: {e}"),
                );
                metrics.configured(false);
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let engine = self.engine.clone()?;
        Some(Box::new(MeshHttp {
            engine,
            metrics: self.metrics.unwrap_or_default(),
            state: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One per HTTP stream.
pub struct MeshHttp {
    engine: Rc<Engine>,
    metrics: Metrics,
    state: Option<RequestState>,
}

impl MeshHttp {
    fn fail(&self, e: HostError) -> Action {
        abi::log(abi::ERROR, &format!("mesh-filter: {e}"));
        self.metrics.error();
        // Fail closed: never forward a request whose routing header may be stale.
        let reply = mesh_core::LocalReply {
            kind: mesh_core::ReplyKind::Direct,
            status: 500,
            headers: mesh_core::HeaderList::default(),
            body: b"mesh-filter: internal error\n".to_vec(),
        };
        let _ = host::send_reply(&reply);
        Action::Pause
    }
}

impl Context for MeshHttp {}

impl MeshHttp {
    /// The request phase: one host call reads every header, the engine decides, its changes go
    /// back as single header calls.
    fn request(&self) -> Result<RequestOutcome, HostError> {
        let mut map = HostHeaders(MapType::HttpRequestHeaders);
        let bytes = map.pairs()?;
        let pairs = Pairs::parse(&bytes).map_err(|_| HostError::Malformed)?;
        self.engine.on_request_headers(&pairs, &mut map)
    }
}

impl HttpContext for MeshHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match self.request() {
            Ok(RequestOutcome::PassThrough) => {
                self.metrics.passed();
                Action::Continue
            }
            Ok(RequestOutcome::Forward(state)) => {
                self.metrics.routed();
                self.state = Some(state).filter(RequestState::needs_response);
                Action::Continue
            }
            Ok(RequestOutcome::Reply(reply)) => {
                self.metrics.reply(reply.kind);
                match host::send_reply(&reply) {
                    Ok(()) => Action::Pause,
                    Err(e) => self.fail(e),
                }
            }
            Err(e) => self.fail(e),
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(state) = &self.state {
            if let Err(e) = self
                .engine
                .on_response_headers(state, &mut HostHeaders(MapType::HttpResponseHeaders))
            {
                abi::log(abi::ERROR, &format!("mesh-filter: {e}"));
                self.metrics.error();
            }
        }
        Action::Continue
    }
}
