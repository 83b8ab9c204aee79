//! The proxy-wasm ABI 0.2.1 entry points, and nothing else: the host skips the VM for every
//! callback a module does not export (proxy-wasm-cpp-host checks each one), so request and
//! response bodies, trailers, `on_done` and `on_log` cost a stream nothing. A dispatcher that
//! exports every callback (the Rust SDK's) makes Envoy enter the VM eight times per request;
//! this one, four: create, request headers, response headers, delete.
//!
//! Each export only hands its arguments to [`crate::vm`]; `#[no_mangle]` is why this module
//! allows unsafe code.
#![allow(unsafe_code)]

use crate::vm;

/// The ABI version marker the host looks for.
#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

extern "C" {
    fn __wasm_call_ctors();
}

/// Module start (a WASI reactor): static constructors, then the panic hook.
#[no_mangle]
pub extern "C" fn _initialize() {
    // SAFETY: the linker's constructor list, run once before anything else, as WASI requires.
    unsafe { __wasm_call_ctors() };
    // Panics are denied by lints and fatal with panic = abort; the log line still says why.
    std::panic::set_hook(Box::new(|info| {
        crate::abi::log(crate::abi::CRITICAL, &info.to_string())
    }));
}

/// The allocator the host uses to hand data over (header maps, the configuration): exactly
/// `size` bytes, which [`crate::abi`] takes back as a `Vec` of that capacity.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    Box::into_raw(Box::<[u8]>::new_uninit_slice(size)).cast::<u8>()
}

/// A root context (`parent` 0, one per plugin configuration) or an HTTP stream.
#[no_mangle]
pub extern "C" fn proxy_on_context_create(context: u32, parent: u32) {
    vm::with(|vm| vm.create(context, parent));
}

/// A (new) plugin configuration for root context `root`.
#[no_mangle]
pub extern "C" fn proxy_on_configure(root: u32, _size: usize) -> bool {
    vm::with(|vm| vm.configure(root))
}

/// The root's timer: flushes the counters.
#[no_mangle]
pub extern "C" fn proxy_on_tick(_root: u32) {
    vm::with(|vm| vm.tick());
}

/// Request headers of stream `context`.
#[no_mangle]
pub extern "C" fn proxy_on_request_headers(context: u32, _headers: usize, _eos: bool) -> u32 {
    vm::with(|vm| vm.request_headers(context))
}

/// Response headers of stream `context`.
#[no_mangle]
pub extern "C" fn proxy_on_response_headers(context: u32, _headers: usize, _eos: bool) -> u32 {
    vm::with(|vm| vm.response_headers(context))
}

/// A stream (or root context) is gone.
#[no_mangle]
pub extern "C" fn proxy_on_delete(context: u32) {
    vm::with(|vm| vm.delete(context));
}
