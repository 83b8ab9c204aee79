# The Istio-shape suite (tests/istio, tests/tests/istio.rs): what `render` emits, applied with
# Istio's EnvoyFilter semantics to real Istio config dumps (../shared/fixtures/istio) and run in
# real Envoy, on the pinned and on the oldest supported Envoy.
.PHONY: test-istio test-istio-oldest
test-istio: wasm envoy
	@mkdir -p $(TEST_LOG_DIR)
	$(CARGO) test -p mesh-tests --test istio -- --nocapture 2>&1 | tee $(TEST_LOG_DIR)/istio.log; exit $${PIPESTATUS[0]}

test-istio-oldest: wasm
	$(MAKE) --no-print-directory envoy ENVOY_VERSION=$(ENVOY_OLDEST)
	@mkdir -p $(TEST_LOG_DIR)
	MESH_ENVOY=$(VENV_ROOT)/envoy-$(ENVOY_OLDEST)/bin/envoy \
	  $(CARGO) test -p mesh-tests --test istio -- --nocapture 2>&1 | tee $(TEST_LOG_DIR)/istio-oldest.log; exit $${PIPESTATUS[0]}

TEST_TARGETS += test-istio test-istio-oldest
