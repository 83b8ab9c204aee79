//! The mesh filter's host calls for the routed gRPC-Web call with an Origin, and nothing else:
//! read every request header, set the routing header and the gRPC-Web marker, and on the
//! response set the CORS grant (three values) and add `Vary`, exporting the same callbacks as
//! the filter. What Envoy spends on it is the cost of the filter's design with no logic at all;
//! `make bench` counts it beside the floor and the filter.
//!
//! The plugin configuration is three lines: the cluster, the origin, the exposed headers; two
//! more lines may choose the calls, to price them one by one: the request's (`P` read the
//! headers, `U` the routing header, `G` the gRPC-Web marker; without the line `PUG`) and the
//! response's (`o` origin, `c` credentials, `e` exposed headers, `v` Vary; without it `ocev`). The code exists only for wasm32 (the
//! crate is empty natively, so workspace builds, lints and tests never link its imports).

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod probe {
    use std::cell::RefCell;
    use std::ptr::null_mut;

    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_get_header_map_pairs(map: u32, out: *mut *mut u8, len: *mut usize) -> u32;
        fn proxy_replace_header_map_value(
            m: u32,
            k: *const u8,
            kl: usize,
            v: *const u8,
            vl: usize,
        ) -> u32;
        fn proxy_add_header_map_value(
            m: u32,
            k: *const u8,
            kl: usize,
            v: *const u8,
            vl: usize,
        ) -> u32;
        fn proxy_get_buffer_bytes(
            b: u32,
            s: usize,
            n: usize,
            out: *mut *mut u8,
            len: *mut usize,
        ) -> u32;
    }

    thread_local! {
        /// Cluster, origin, exposed headers, request calls, response calls.
        static CONFIG: RefCell<[Vec<u8>; 5]> = RefCell::new(Default::default());
    }

    fn owned(ptr: *mut u8, len: usize) -> Vec<u8> {
        match ptr.is_null() {
            true => Vec::new(),
            // SAFETY: the host wrote `len` bytes into a buffer of exactly that size from our
            // allocator below.
            false => unsafe { Vec::from_raw_parts(ptr, len, len) },
        }
    }

    fn set(map: u32, name: &str, value: &[u8]) {
        // SAFETY: both slices are live for the call.
        unsafe {
            proxy_replace_header_map_value(
                map,
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            )
        };
    }

    fn add(map: u32, name: &str, value: &[u8]) {
        // SAFETY: both slices are live for the call.
        unsafe {
            proxy_add_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len())
        };
    }

    #[no_mangle]
    pub extern "C" fn proxy_abi_version_0_2_1() {}

    #[no_mangle]
    pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
        Box::into_raw(Box::<[u8]>::new_uninit_slice(size)).cast::<u8>()
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_context_create(_context: u32, _parent: u32) {}

    #[no_mangle]
    pub extern "C" fn proxy_on_delete(_context: u32) {}

    #[no_mangle]
    pub extern "C" fn proxy_on_configure(_root: u32, size: usize) -> bool {
        let (mut ptr, mut len) = (null_mut(), 0);
        // SAFETY: valid out-parameters; 7 is the plugin configuration.
        unsafe { proxy_get_buffer_bytes(7, 0, size, &mut ptr, &mut len) };
        let text = owned(ptr, len);
        let mut parts = text.split(|b| *b == b'\n').map(<[u8]>::to_vec);
        // An absent calls line means every call; a present one (even empty) lists them.
        let defaults: [&[u8]; 5] = [b"", b"", b"", b"PUG", b"ocev"];
        let config = defaults.map(|d| parts.next().unwrap_or_else(|| d.to_vec()));
        CONFIG.with(|c| *c.borrow_mut() = config);
        true
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_request_headers(_context: u32, _n: usize, _eos: bool) -> u32 {
        CONFIG.with(|c| {
            let c = c.borrow();
            for call in &c[3] {
                match call {
                    b'P' => {
                        let (mut ptr, mut len) = (null_mut(), 0);
                        // SAFETY: valid out-parameters; map 0 is the request headers.
                        unsafe { proxy_get_header_map_pairs(0, &mut ptr, &mut len) };
                        drop(owned(ptr, len));
                    }
                    b'U' => set(0, "x-mesh-upstream", &c[0]),
                    b'G' => set(0, "x-mesh-grpc-web", b"1"),
                    _ => {}
                }
            }
        });
        0
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_response_headers(_context: u32, _n: usize, _eos: bool) -> u32 {
        CONFIG.with(|c| {
            let c = c.borrow();
            for call in &c[4] {
                match call {
                    b'o' => set(2, "access-control-allow-origin", &c[1]),
                    b'c' => set(2, "access-control-allow-credentials", b"true"),
                    b'e' => set(2, "access-control-expose-headers", &c[2]),
                    b'v' => add(2, "vary", b"Origin"),
                    _ => {}
                }
            }
        });
        0
    }
}
