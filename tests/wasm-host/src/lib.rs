//! A proxy-wasm (ABI 0.2.1) host on wasmtime that runs `mesh_filter.wasm` the way Envoy does.
//!
//! A test configures a [`Filter`] with JSON, sends request and response headers, and asserts
//! the returned action, every header mutation, local responses, logs and metrics. Every host
//! call the module imports but this host does not implement traps with a clear message, and a
//! guest trap is an error of the call that caused it: nothing fails silently.

pub mod abi;
mod exports;
mod host;
mod observe;
mod types;

pub use types::{
    HarnessError, Headers, LocalResponse, LogEntry, Metric, Mutations, RequestResult,
    ResponseResult,
};

/// The wasmtime this harness runs on (tests build small modules with it).
pub use wasmtime;

use abi::{Action, BufferType, LogLevel, MapType};
use anyhow::{anyhow, bail, Context as _};
use exports::Exports;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use wasmtime::{Engine, Linker, Memory, Module, Store, TypedFunc};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::WasiCtxBuilder;

/// Environment variable naming the filter module (the Makefile exports it).
pub const WASM_ENV: &str = "MESH_WASM";

/// The filter module: `$MESH_WASM`, or `<workspace>/target/wasm32-wasip1/release/mesh_filter.wasm`.
pub fn wasm_path() -> PathBuf {
    match std::env::var_os(WASM_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join("target/wasm32-wasip1/release/mesh_filter.wasm"),
    }
}

/// The cargo workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Everything the host keeps for one VM.
pub(crate) struct HostState {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) output: MemoryOutputPipe,
    pub(crate) maps: BTreeMap<u32, Headers>,
    pub(crate) buffers: BTreeMap<u32, Vec<u8>>,
    pub(crate) local_response: Option<LocalResponse>,
    pub(crate) logs: Vec<LogEntry>,
    pub(crate) log_level: LogLevel,
    pub(crate) metrics: Vec<Metric>,
    pub(crate) failures: Vec<String>,
    pub(crate) effective_context: u32,
    pub(crate) contexts: Vec<u32>,
    pub(crate) tick_period_ms: u32,
    pub(crate) done_calls: u32,
    pub(crate) host_calls: u64,
    /// Host calls by import name, in first-call order.
    pub(crate) call_counts: Vec<(&'static str, u64)>,
    /// Buffers the host asked the guest's allocator for (to hand data over).
    pub(crate) guest_allocations: u64,
    /// The guest's memory and allocator, found on first use.
    pub(crate) memory: Option<Memory>,
    pub(crate) allocator: Option<TypedFunc<u32, u32>>,
    pub(crate) inject: Option<(String, u32)>,
}

impl HostState {
    fn new() -> Self {
        let output = MemoryOutputPipe::new(1 << 20);
        let wasi = WasiCtxBuilder::new()
            .stdout(output.clone())
            .stderr(output.clone())
            .build_p1();
        HostState {
            wasi,
            output,
            maps: BTreeMap::new(),
            buffers: BTreeMap::new(),
            local_response: None,
            logs: Vec::new(),
            log_level: LogLevel::Trace,
            metrics: Vec::new(),
            failures: Vec::new(),
            effective_context: 0,
            contexts: Vec::new(),
            tick_period_ms: 0,
            done_calls: 0,
            host_calls: 0,
            call_counts: Vec::new(),
            guest_allocations: 0,
            memory: None,
            allocator: None,
            inject: None,
        }
    }
}

struct Compiled {
    engine: Engine,
    module: Module,
    path: PathBuf,
}

/// Compiles the filter module once per test process (Cranelift takes a moment).
fn compiled() -> anyhow::Result<&'static Compiled> {
    static COMPILED: OnceLock<Result<Compiled, String>> = OnceLock::new();
    COMPILED
        .get_or_init(|| {
            let path = wasm_path();
            let bytes = std::fs::read(&path).map_err(|e| {
                format!(
                    "cannot read the filter module {} ({e}); build it with `make wasm` or set {WASM_ENV}",
                    path.display()
                )
            })?;
            let engine = Engine::default();
            let module = Module::new(&engine, &bytes)
                .map_err(|e| format!("{}: not a valid module: {e:?}", path.display()))?;
            Ok(Compiled {
                engine,
                module,
                path,
            })
        })
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

/// One filter VM: one root context configured with a plugin configuration, and HTTP streams.
pub struct Filter {
    store: Store<HostState>,
    memory: Memory,
    exports: Exports,
    root: u32,
    next_id: u32,
    stream: Option<u32>,
    poisoned: Option<String>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("root", &self.root)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// Imports of the filter module (module, name) that this host does not implement.
pub fn unimplemented_imports() -> anyhow::Result<Vec<(String, String)>> {
    let c = compiled()?;
    let mut linker = Linker::new(&c.engine);
    host::add_to_linker(&mut linker).map_err(anyhow::Error::from)?;
    let mut store = Store::new(&c.engine, HostState::new());
    Ok(c.module
        .imports()
        .filter(|i| linker.get(&mut store, i.module(), i.name()).is_err())
        .map(|i| (i.module().to_owned(), i.name().to_owned()))
        .collect())
}

/// Every import of the filter module as `module.name`.
pub fn module_imports() -> anyhow::Result<Vec<String>> {
    Ok(compiled()?
        .module
        .imports()
        .map(|i| format!("{}.{}", i.module(), i.name()))
        .collect())
}

impl Filter {
    /// Loads the filter, starts the VM and configures a root context with `config_json`.
    /// `Err(HarnessError::Rejected)` when `on_configure` returns false.
    pub fn new(config_json: &str) -> Result<Filter, HarnessError> {
        Self::with_module(&compiled()?.module, config_json)
    }

    /// Like [`Filter::new`] with any module (tests of the harness itself use small ones).
    pub fn with_module(module: &Module, config_json: &str) -> Result<Filter, HarnessError> {
        let engine = module.engine();
        let mut linker = Linker::new(engine);
        host::add_to_linker(&mut linker)?;
        let mut store = Store::new(engine, HostState::new());
        // An engine with fuel metering counts every Wasm instruction the filter runs (see
        // `Filter::fuel`); without it this fails and nothing is counted.
        let _ = store.set_fuel(u64::MAX);
        host::stub_unimplemented(&mut linker, &mut store, module)?;
        let instance = linker
            .instantiate(&mut store, module)
            .map_err(|e| anyhow::Error::from(e).context("instantiating the filter module"))?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| anyhow!("the module exports no `memory`"))?;
        let exports = Exports::get(&instance, &mut store)?;
        let mut f = Filter {
            store,
            memory,
            exports,
            root: 1,
            next_id: 2,
            stream: None,
            poisoned: None,
        };
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut f.store, "_initialize") {
            f.guard("_initialize", |s| init.call(s, ()))?;
        }
        let root = f.root;
        f.store.data_mut().contexts.push(root);
        if let Some(create) = f.exports.context_create.clone() {
            f.guard("proxy_on_context_create(root)", |s| {
                create.call(s, (root, 0))
            })?;
        }
        if let Some(start) = f.exports.vm_start.clone() {
            let vm_ok = f.guard("proxy_on_vm_start", |s| start.call(s, (root, 0)))?;
            if vm_ok == 0 {
                return Err(anyhow!("proxy_on_vm_start returned false").into());
            }
        }
        if !f.configure(config_json)? {
            return Err(HarnessError::Rejected {
                logs: f.store.data().logs.clone(),
            });
        }
        Ok(f)
    }

    /// Calls `proxy_on_configure` on the root context with a new plugin configuration.
    pub fn configure(&mut self, config_json: &str) -> Result<bool, HarnessError> {
        let bytes = config_json.as_bytes().to_vec();
        let len = u32::try_from(bytes.len()).context("configuration too large")?;
        self.store
            .data_mut()
            .buffers
            .insert(BufferType::PluginConfiguration as u32, bytes);
        let (root, configure) = (self.root, self.exports.configure.clone());
        let ok = self.guard("proxy_on_configure", |s| configure.call(s, (root, len)))?;
        Ok(ok != 0)
    }

    /// Opens a new HTTP stream and sends request headers (end of stream: true).
    /// A stream still open from the previous request is finished first.
    pub fn request<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        headers: &[(K, V)],
    ) -> Result<RequestResult, HarnessError> {
        self.request_with(Headers::from_pairs(headers), true)
    }

    /// Like [`Filter::request`] with a prepared map and an explicit end-of-stream flag.
    pub fn request_with(
        &mut self,
        headers: Headers,
        end_of_stream: bool,
    ) -> Result<RequestResult, HarnessError> {
        self.finish()?;
        let headers_before = headers.clone();
        let id = self.next_id;
        self.next_id += 1;
        let n = u32::try_from(headers.0.len()).context("too many headers")?;
        {
            let st = self.store.data_mut();
            st.maps.clear();
            st.buffers
                .retain(|k, _| *k == BufferType::PluginConfiguration as u32);
            st.local_response = None;
            st.maps.insert(MapType::HttpRequestHeaders as u32, headers);
            st.contexts.push(id);
        }
        if let Some(create) = self.exports.context_create.clone() {
            let root = self.root;
            self.guard("proxy_on_context_create", |s| create.call(s, (id, root)))?;
        }
        self.stream = Some(id);
        let f = self.exports.request_headers.clone();
        let raw = self.guard("proxy_on_request_headers", |s| {
            f.call(s, (id, n, u32::from(end_of_stream)))
        })?;
        let st = self.store.data();
        Ok(RequestResult {
            action: Action::from_raw(raw)?,
            headers_before,
            headers_after: st
                .maps
                .get(&(MapType::HttpRequestHeaders as u32))
                .cloned()
                .unwrap_or_default(),
            local_response: st.local_response.clone(),
        })
    }

    /// Sends a request body chunk on the open stream; returns the action.
    pub fn request_body(
        &mut self,
        body: &[u8],
        end_of_stream: bool,
    ) -> Result<Action, HarnessError> {
        let f = self.exports.request_body.clone();
        self.body_call(
            "proxy_on_request_body",
            f,
            BufferType::HttpRequestBody,
            body,
            end_of_stream,
        )
    }

    /// Sends request trailers on the open stream; returns the action.
    pub fn request_trailers<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        trailers: &[(K, V)],
    ) -> Result<Action, HarnessError> {
        let f = self.exports.request_trailers.clone();
        self.trailers_call(
            "proxy_on_request_trailers",
            f,
            MapType::HttpRequestTrailers,
            trailers,
        )
    }

    /// Sends response headers (end of stream: true) on the open stream.
    pub fn response<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        headers: &[(K, V)],
    ) -> Result<ResponseResult, HarnessError> {
        let id = self.open_stream()?;
        let headers = Headers::from_pairs(headers);
        let headers_before = headers.clone();
        let n = u32::try_from(headers.0.len()).context("too many headers")?;
        self.store
            .data_mut()
            .maps
            .insert(MapType::HttpResponseHeaders as u32, headers);
        let f = self.exports.response_headers.clone();
        let raw = self.guard("proxy_on_response_headers", |s| f.call(s, (id, n, 1)))?;
        Ok(ResponseResult {
            action: Action::from_raw(raw)?,
            headers_before,
            headers_after: self
                .store
                .data()
                .maps
                .get(&(MapType::HttpResponseHeaders as u32))
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// Sends a response body chunk on the open stream; returns the action.
    pub fn response_body(
        &mut self,
        body: &[u8],
        end_of_stream: bool,
    ) -> Result<Action, HarnessError> {
        let f = self.exports.response_body.clone();
        self.body_call(
            "proxy_on_response_body",
            f,
            BufferType::HttpResponseBody,
            body,
            end_of_stream,
        )
    }

    /// Sends response trailers on the open stream; returns the action.
    pub fn response_trailers<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        trailers: &[(K, V)],
    ) -> Result<Action, HarnessError> {
        let f = self.exports.response_trailers.clone();
        self.trailers_call(
            "proxy_on_response_trailers",
            f,
            MapType::HttpResponseTrailers,
            trailers,
        )
    }

    /// Ends the open stream as Envoy does: `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`.
    pub fn finish(&mut self) -> Result<(), HarnessError> {
        let Some(id) = self.stream.take() else {
            return Ok(());
        };
        let (done, log, delete) = (
            self.exports.done.clone(),
            self.exports.log.clone(),
            self.exports.delete.clone(),
        );
        if let Some(done) = done {
            self.guard("proxy_on_done", |s| done.call(s, id))?;
        }
        if let Some(log) = log {
            self.guard("proxy_on_log", |s| log.call(s, id))?;
        }
        if let Some(delete) = delete {
            self.guard("proxy_on_delete", |s| delete.call(s, id))?;
        }
        self.store.data_mut().contexts.retain(|c| *c != id);
        Ok(())
    }

    /// Makes every later call of the host function `call` (e.g. `proxy_replace_header_map_value`)
    /// return `status` without doing anything, as a failing host would; `None` clears it.
    pub fn inject_status(&mut self, failure: Option<(&str, abi::Status)>) {
        self.store.data_mut().inject =
            failure.map(|(call, status)| (call.to_owned(), status as u32));
    }

    /// Forgets the open stream without ending it (no done/log/delete), as a host that leaks
    /// contexts would: the memory test uses it to show that its check can fail.
    pub fn abandon_stream(&mut self) {
        self.stream = None;
    }

    /// Fires the root context's timer once (`proxy_on_tick`), as the host does every tick
    /// period; an error when the module asked for no tick or does not export the callback.
    pub fn tick(&mut self) -> Result<(), HarnessError> {
        let Some(tick) = self.exports.tick.clone() else {
            return Err(anyhow!("the module does not export proxy_on_tick").into());
        };
        if self.tick_period_ms() == 0 {
            return Err(anyhow!("the module asked for no tick period").into());
        }
        let root = self.root;
        self.guard("proxy_on_tick", |s| tick.call(s, root))
    }

    /// The stream callbacks the module exports (the host skips the others).
    pub fn exported_callbacks(&self) -> Vec<&'static str> {
        self.exports.names()
    }

    /// Which module this filter runs (`$MESH_WASM` or the default build output).
    pub fn module_path() -> anyhow::Result<PathBuf> {
        Ok(compiled()?.path.clone())
    }

    fn open_stream(&self) -> Result<u32, HarnessError> {
        match self.stream {
            Some(id) => Ok(id),
            None => Err(anyhow!("no open stream: send request headers first").into()),
        }
    }

    fn body_call(
        &mut self,
        call: &str,
        f: Option<TypedFunc<(u32, u32, u32), u32>>,
        buffer: BufferType,
        body: &[u8],
        end_of_stream: bool,
    ) -> Result<Action, HarnessError> {
        let id = self.open_stream()?;
        let Some(f) = f else {
            return Ok(Action::Continue);
        };
        let len = u32::try_from(body.len()).context("body too large")?;
        self.store
            .data_mut()
            .buffers
            .insert(buffer as u32, body.to_vec());
        let raw = self.guard(call, |s| f.call(s, (id, len, u32::from(end_of_stream))))?;
        Ok(Action::from_raw(raw)?)
    }

    fn trailers_call<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &mut self,
        call: &str,
        f: Option<TypedFunc<(u32, u32), u32>>,
        map: MapType,
        trailers: &[(K, V)],
    ) -> Result<Action, HarnessError> {
        let id = self.open_stream()?;
        let Some(f) = f else {
            return Ok(Action::Continue);
        };
        let n = u32::try_from(trailers.len()).context("too many trailers")?;
        self.store
            .data_mut()
            .maps
            .insert(map as u32, Headers::from_pairs(trailers));
        let raw = self.guard(call, |s| f.call(s, (id, n)))?;
        Ok(Action::from_raw(raw)?)
    }

    /// Runs one guest entry point: a trap poisons the VM; host-call failures become errors.
    fn guard<R>(
        &mut self,
        call: &str,
        f: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, HarnessError> {
        if let Some(p) = &self.poisoned {
            return Err(anyhow!("the VM trapped earlier ({p}); it cannot be used").into());
        }
        self.store.data_mut().failures.clear();
        match f(&mut self.store) {
            Ok(r) => {
                let failures = std::mem::take(&mut self.store.data_mut().failures);
                if failures.is_empty() {
                    Ok(r)
                } else {
                    Err(HarnessError::HostCalls {
                        call: call.to_owned(),
                        failures,
                    })
                }
            }
            Err(e) => {
                self.poisoned = Some(call.to_owned());
                let logs = &self.store.data().logs;
                let last_logs = logs[logs.len().saturating_sub(3)..].to_vec();
                Err(HarnessError::Trap {
                    last_logs,
                    call: call.to_owned(),
                    message: format!("{e:?}"),
                    output: self.guest_output(),
                    failures: std::mem::take(&mut self.store.data_mut().failures),
                })
            }
        }
    }
}

impl Action {
    fn from_raw(raw: u32) -> anyhow::Result<Action> {
        match raw {
            0 => Ok(Action::Continue),
            1 => Ok(Action::Pause),
            other => bail!("the filter returned action {other}, which is not in the ABI"),
        }
    }
}
