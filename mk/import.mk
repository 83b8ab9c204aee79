# The differential "import" mode (tests/import): each Envoy config in tests/import/configs runs
# natively and, as `kubectl mesh import-envoy` imports it, through the filter; every generated
# request is compared. IMPORT_ONLY=name runs only the matching configs.
.PHONY: test-import
test-import: wasm envoy
	$(LOGGED) $(TEST_LOG_DIR)/import.log $(CARGO) test -p mesh-tests --test import -- --nocapture

TEST_TARGETS += test-import
