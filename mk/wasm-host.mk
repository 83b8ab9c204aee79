# The filter in wasmtime (tests/wasm-host): `test-wasm-host` drives the real mesh_filter.wasm
# ($(MESH_WASM)) through a proxy-wasm host of our own; `test-wasm32` runs mesh-core's tests,
# unit and property, compiled for wasm32-wasip1 inside wasmtime (runner: .cargo/config.toml);
# `test-properties` runs the property tests natively too.
.PHONY: test-wasm-host test-wasm32 test-properties
# --show-output: the memory test's page counts and the module's imports go into the log.
test-wasm-host: wasm
	$(LOGGED) $(TEST_LOG_DIR)/wasm-host.log $(CARGO) test -p mesh-wasm-host -- --show-output

test-wasm32: wasm-target
	$(LOGGED) $(TEST_LOG_DIR)/wasm32.log $(CARGO) test -p mesh-core --target wasm32-wasip1

test-properties:
	$(LOGGED) $(TEST_LOG_DIR)/properties.log $(CARGO) test -p mesh-core --test properties

TEST_TARGETS += test-wasm-host test-wasm32 test-properties
