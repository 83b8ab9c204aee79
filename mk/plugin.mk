# kubectl-mesh plugin: unit tests, golden files, CRD schema checks, real-Envoy validation, and the
# binary against the API emulator (kubectl-mesh/tests/). Needs the module (embedded and loaded
# by Envoy) and Envoy itself. `UPDATE_GOLDEN=1 make test-plugin` rewrites the golden files.
.PHONY: test-plugin
test-plugin: wasm envoy
	@mkdir -p $(TEST_LOG_DIR)
	$(CARGO) test -p kubectl-mesh 2>&1 | tee $(TEST_LOG_DIR)/plugin.log; exit $${PIPESTATUS[0]}

TEST_TARGETS += test-plugin
