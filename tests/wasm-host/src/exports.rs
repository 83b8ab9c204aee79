//! The module's exports the harness calls, found as proxy-wasm-cpp-host finds them.

use crate::HostState;
use wasmtime::{Instance, Store, TypedFunc};

/// The filter's exports the harness calls. As in proxy-wasm-cpp-host (Envoy's host), only
/// memory, configure and the header callbacks are required: a callback the module does not
/// export is skipped (bodies and trailers continue, `on_done` counts as done).
pub(crate) struct Exports {
    pub(crate) context_create: Option<TypedFunc<(u32, u32), ()>>,
    pub(crate) vm_start: Option<TypedFunc<(u32, u32), u32>>,
    pub(crate) configure: TypedFunc<(u32, u32), u32>,
    pub(crate) tick: Option<TypedFunc<u32, ()>>,
    pub(crate) request_headers: TypedFunc<(u32, u32, u32), u32>,
    pub(crate) request_body: Option<TypedFunc<(u32, u32, u32), u32>>,
    pub(crate) request_trailers: Option<TypedFunc<(u32, u32), u32>>,
    pub(crate) response_headers: TypedFunc<(u32, u32, u32), u32>,
    pub(crate) response_body: Option<TypedFunc<(u32, u32, u32), u32>>,
    pub(crate) response_trailers: Option<TypedFunc<(u32, u32), u32>>,
    pub(crate) done: Option<TypedFunc<u32, u32>>,
    pub(crate) log: Option<TypedFunc<u32, ()>>,
    pub(crate) delete: Option<TypedFunc<u32, ()>>,
}

impl Exports {
    pub(crate) fn get(instance: &Instance, store: &mut Store<HostState>) -> anyhow::Result<Self> {
        macro_rules! f {
            ($name:literal) => {
                instance
                    .get_typed_func(&mut *store, $name)
                    .map_err(|e| anyhow::Error::from(e).context(format!("export `{}`", $name)))?
            };
        }
        // Optional, but when exported it must have the ABI's signature.
        macro_rules! opt {
            ($name:literal) => {
                match instance.get_export(&mut *store, $name) {
                    None => None,
                    Some(_) => Some(f!($name)),
                }
            };
        }
        Ok(Exports {
            context_create: opt!("proxy_on_context_create"),
            vm_start: opt!("proxy_on_vm_start"),
            configure: f!("proxy_on_configure"),
            tick: opt!("proxy_on_tick"),
            request_headers: f!("proxy_on_request_headers"),
            request_body: opt!("proxy_on_request_body"),
            request_trailers: opt!("proxy_on_request_trailers"),
            response_headers: f!("proxy_on_response_headers"),
            response_body: opt!("proxy_on_response_body"),
            response_trailers: opt!("proxy_on_response_trailers"),
            done: opt!("proxy_on_done"),
            log: opt!("proxy_on_log"),
            delete: opt!("proxy_on_delete"),
        })
    }

    /// The names of the callbacks the module exports, in the ABI's order.
    pub(crate) fn names(&self) -> Vec<&'static str> {
        [
            ("proxy_on_context_create", self.context_create.is_some()),
            ("proxy_on_vm_start", self.vm_start.is_some()),
            ("proxy_on_configure", true),
            ("proxy_on_tick", self.tick.is_some()),
            ("proxy_on_request_headers", true),
            ("proxy_on_request_body", self.request_body.is_some()),
            ("proxy_on_request_trailers", self.request_trailers.is_some()),
            ("proxy_on_response_headers", true),
            ("proxy_on_response_body", self.response_body.is_some()),
            (
                "proxy_on_response_trailers",
                self.response_trailers.is_some(),
            ),
            ("proxy_on_done", self.done.is_some()),
            ("proxy_on_log", self.log.is_some()),
            ("proxy_on_delete", self.delete.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, present)| present.then_some(n))
        .collect()
    }
}
