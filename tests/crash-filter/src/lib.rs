//! A filter that marks every answer it sees (`x-crash-filter: alive`) and traps its VM when a
//! request carries `x-crash: 1`, so a test can tell in real Envoy what a fail policy does:
//! whether a dead VM comes back (`FAIL_RELOAD`) or the filter stays skipped (`fail_open`).
//!
//! The code exists only for wasm32 (the crate is empty natively).

#[cfg(target_arch = "wasm32")]
mod filter {
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType, LogLevel};

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root) });
    }}

    struct Root;

    impl Context for Root {}

    impl RootContext for Root {
        fn on_configure(&mut self, _size: usize) -> bool {
            true
        }

        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Http))
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    struct Http;

    impl Context for Http {}

    impl HttpContext for Http {
        fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
            if self.get_http_request_header("x-crash").as_deref() == Some("1") {
                // A trap, as a bug in a module would cause: the VM is dead from here on.
                core::arch::wasm32::unreachable();
            }
            Action::Continue
        }

        fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
            self.set_http_response_header("x-crash-filter", Some("alive"));
            Action::Continue
        }
    }
}
