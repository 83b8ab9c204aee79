//! The floor every Rust proxy-wasm filter pays: the SDK's root and HTTP contexts, every stream
//! callback Envoy makes, and nothing else. `make bench` compares the mesh filter against it.
//!
//! The code exists only for wasm32 (the crate is empty natively, so workspace builds, lints
//! and tests never link proxy-wasm's imports).

#[cfg(target_arch = "wasm32")]
mod filter {
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{ContextType, LogLevel};

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot) });
    }}

    /// Accepts any configuration.
    struct NoopRoot;

    impl Context for NoopRoot {}

    impl RootContext for NoopRoot {
        fn on_configure(&mut self, _size: usize) -> bool {
            true
        }

        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(NoopHttp))
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    /// Every callback keeps the SDK's default: continue, change nothing.
    struct NoopHttp;

    impl Context for NoopHttp {}

    impl HttpContext for NoopHttp {}
}
