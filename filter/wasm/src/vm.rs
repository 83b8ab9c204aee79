//! The state of one Wasm VM: a root context per plugin configuration sharing it, each with its
//! compiled engine; the open HTTP streams; the counters. The HTTP methods only hand headers to
//! the engine and act on its answer.

use crate::abi;
use crate::host::{self, HostError, HostHeaders, Map};
use crate::metrics::{Metrics, TICK_MS};
use mesh_core::host::Fnv;
use mesh_core::{Engine, Pairs, RequestOutcome, RequestState};
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::rc::Rc;

thread_local! {
    static VM: RefCell<Vm> = RefCell::new(Vm::default());
}

/// Runs `f` on the VM's state (entry points never nest: host calls do not call back into it).
pub fn with<R>(f: impl FnOnce(&mut Vm) -> R) -> R {
    VM.with(|vm| f(&mut vm.borrow_mut()))
}

/// One HTTP stream: the engine of the configuration it started under (a reconfiguration
/// mid-stream does not change it), and what its response needs.
struct Stream {
    engine: Rc<Engine>,
    state: Option<RequestState>,
}

/// Everything the VM keeps.
#[derive(Default)]
pub struct Vm {
    /// Root contexts by id, with the engine of their last accepted configuration.
    roots: Vec<(u32, Option<Rc<Engine>>)>,
    /// Open streams by context id.
    streams: HashMap<u32, Stream, BuildHasherDefault<Fnv>>,
    /// Defined on the first configuration.
    metrics: Option<Metrics>,
}

impl Vm {
    /// `proxy_on_context_create`: a root context, or a stream of root `parent`. A stream of a
    /// root without an accepted configuration is not tracked (Envoy does not run one).
    pub fn create(&mut self, context: u32, parent: u32) {
        if parent == 0 {
            self.roots.push((context, None));
            return;
        }
        let engine = self
            .roots
            .iter()
            .find(|(id, _)| *id == parent)
            .and_then(|(_, e)| e.clone());
        if let Some(engine) = engine {
            self.streams.insert(
                context,
                Stream {
                    engine,
                    state: None,
                },
            );
        }
    }

    /// `proxy_on_configure`: compiles the plugin configuration; a refused one keeps the
    /// previous engine.
    pub fn configure(&mut self, root: u32) -> bool {
        let metrics = self.metrics.get_or_insert_with(Metrics::define);
        // The counters' flush: asked for by every root, as the host keeps a timer per root.
        if let Err(status) = abi::set_tick_period(TICK_MS) {
            abi::log(
                abi::ERROR,
                &format!("mesh-filter: setting the tick period failed with status {status}; counters are not reported"),
            );
        }
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
                let engine = Some(Rc::new(engine));
                match self.roots.iter_mut().find(|(id, _)| *id == root) {
                    Some((_, e)) => *e = engine,
                    None => self.roots.push((root, engine)),
                }
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

    /// `proxy_on_tick`: the counters go to the host.
    pub fn tick(&mut self) {
        if let Some(m) = &mut self.metrics {
            m.flush();
        }
    }

    /// `proxy_on_request_headers`: one host call reads every header, the engine decides, its
    /// changes go back as single header calls.
    pub fn request_headers(&mut self, context: u32) -> u32 {
        let Some(stream) = self.streams.get_mut(&context) else {
            return abi::CONTINUE;
        };
        let Some(metrics) = self.metrics.as_mut() else {
            return abi::CONTINUE;
        };
        let outcome = read_and_decide(&stream.engine);
        match outcome {
            Ok(RequestOutcome::PassThrough) => {
                metrics.passed();
                abi::CONTINUE
            }
            Ok(RequestOutcome::Forward(state)) => {
                metrics.routed();
                stream.state = Some(state).filter(RequestState::needs_response);
                abi::CONTINUE
            }
            Ok(RequestOutcome::Reply(reply)) => {
                metrics.reply(reply.kind);
                match host::send_reply(&reply) {
                    Ok(()) => abi::PAUSE,
                    Err(e) => fail(metrics, e),
                }
            }
            Err(e) => fail(metrics, e),
        }
    }

    /// `proxy_on_response_headers`: header rules and the CORS grant, when the request left any.
    pub fn response_headers(&mut self, context: u32) -> u32 {
        let Some(Stream {
            engine,
            state: Some(state),
        }) = self.streams.get(&context)
        else {
            return abi::CONTINUE;
        };
        if let Err(e) = engine.on_response_headers(state, &mut HostHeaders(Map::Response)) {
            abi::log(abi::ERROR, &format!("mesh-filter: {e}"));
            if let Some(m) = &self.metrics {
                m.error();
            }
        }
        abi::CONTINUE
    }

    /// `proxy_on_delete`: a stream ended, or a root context went away (its counts are flushed).
    pub fn delete(&mut self, context: u32) {
        if self.streams.remove(&context).is_some() {
            return;
        }
        if let Some(at) = self.roots.iter().position(|(id, _)| *id == context) {
            self.roots.swap_remove(at);
            self.tick();
        }
    }
}

fn read_and_decide(engine: &Engine) -> Result<RequestOutcome, HostError> {
    let mut map = HostHeaders(Map::Request);
    let bytes = map.pairs()?;
    let pairs = Pairs::parse(&bytes).map_err(|_| HostError::Malformed)?;
    engine.on_request_headers(&pairs, &mut map)
}

/// A failed host call: logged, counted, and the request answered 500 (fail closed: never
/// forward a request whose routing header may be stale).
fn fail(metrics: &Metrics, e: HostError) -> u32 {
    abi::log(abi::ERROR, &format!("mesh-filter: {e}"));
    metrics.error();
    let reply = mesh_core::LocalReply {
        kind: mesh_core::ReplyKind::Direct,
        status: 500,
        headers: mesh_core::HeaderList::default(),
        body: b"mesh-filter: internal error\n".to_vec(),
    };
    let _ = host::send_reply(&reply);
    abi::PAUSE
}
