# kubectl-mesh plugin: unit tests, golden files, CRD schema checks, real-Envoy validation, and the
# binary against the real API server (mk/kube.mk) and, for what only it can fake, the API
# emulator (kubectl-mesh/tests/README.md says which). Needs the module (embedded and loaded by
# Envoy), Envoy itself and the API server. `UPDATE_GOLDEN=1 make test-plugin` rewrites the golden files.
.PHONY: test-plugin
# Every test target but apiserver.rs, which `make test-kube-apiserver` runs (counted once).
PLUGIN_TESTS := $(patsubst kubectl-mesh/tests/%.rs,--test %,$(filter-out %/apiserver.rs,$(wildcard kubectl-mesh/tests/*.rs)))
test-plugin: wasm envoy kube-apiserver
	$(LOGGED) $(TEST_LOG_DIR)/plugin.log $(CARGO) test -p kubectl-mesh --lib --bins $(PLUGIN_TESTS)

TEST_TARGETS += test-plugin
