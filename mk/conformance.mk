# The differential conformance suite (tests/conformance): every case through native Envoy and
# through Envoy with the filter, compared request by request. `test-conformance` uses the pinned
# Envoy; `test-conformance-oldest` installs and uses the oldest supported one (ENVOY_OLDEST).
# CONFORMANCE_ONLY=name runs only the matching cases.
.PHONY: test-conformance test-conformance-oldest
test-conformance: wasm envoy
	@mkdir -p $(TEST_LOG_DIR)
	$(CARGO) test -p mesh-tests --test conformance -- --nocapture 2>&1 | tee $(TEST_LOG_DIR)/conformance.log; exit $${PIPESTATUS[0]}

test-conformance-oldest: wasm
	$(MAKE) --no-print-directory envoy ENVOY_VERSION=$(ENVOY_OLDEST)
	@mkdir -p $(TEST_LOG_DIR)
	MESH_ENVOY=$(VENV_ROOT)/envoy-$(ENVOY_OLDEST)/bin/envoy \
	  $(CARGO) test -p mesh-tests --test conformance -- --nocapture 2>&1 | tee $(TEST_LOG_DIR)/conformance-oldest.log; exit $${PIPESTATUS[0]}

TEST_TARGETS += test-conformance test-conformance-oldest
