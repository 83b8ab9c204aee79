# `make bench` (Makefile) and its pieces: the no-op floor module, the load tools, and the smoke
# run in `make test` (the whole harness on tiny numbers: it must run, nothing is timed).
NOOP_WASM := $(CURDIR)/target/wasm32-wasip1/release/mesh_noop_filter.wasm
export MESH_NOOP_WASM := $(NOOP_WASM)
PROBE_WASM := $(CURDIR)/target/wasm32-wasip1/release/mesh_probe_filter.wasm
export MESH_PROBE_WASM := $(PROBE_WASM)

.PHONY: noop-wasm probe-wasm bench-tools bench-load-tools bench-install test-bench-smoke
# Built and shrunk like the mesh filter, so the floor is the same kind of module.
noop-wasm: wasm-target wasm-opt
	$(CARGO) build --release -p mesh-noop-filter --target wasm32-wasip1
	@raw=$(dir $(NOOP_WASM))deps/mesh_noop_filter.wasm; if cmp -s $$raw $(NOOP_WASM); then \
	  wasm-opt $(WASM_OPT_FLAGS) $$raw -o $(NOOP_WASM).tmp && mv $(NOOP_WASM).tmp $(NOOP_WASM); fi

# The mesh filter's host calls without its logic (bench/probe-filter), built the same way.
probe-wasm: wasm-target wasm-opt
	$(CARGO) build --release -p mesh-probe-filter --target wasm32-wasip1
	@raw=$(dir $(PROBE_WASM))deps/mesh_probe_filter.wasm; if cmp -s $$raw $(PROBE_WASM); then \
	  wasm-opt $(WASM_OPT_FLAGS) $$raw -o $(PROBE_WASM).tmp && mv $(PROBE_WASM).tmp $(PROBE_WASM); fi

# wrk drives the concurrent runs and taskset pins (the smoke run needs these); valgrind counts
# instructions and perf samples Envoy (the full run only). All Debian packages.
BENCH_TOOLS := wrk:wrk taskset:util-linux
bench-tools:
	@$(MAKE) --no-print-directory bench-install TOOLS="$(BENCH_TOOLS) valgrind:valgrind perf:linux-perf"
bench-load-tools:
	@$(MAKE) --no-print-directory bench-install TOOLS="$(BENCH_TOOLS)"
bench-install:
	@missing=""; for t in $(TOOLS); do \
	  command -v $${t%%:*} >/dev/null || missing="$$missing $${t#*:}"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

test-bench-smoke: wasm noop-wasm probe-wasm envoy bench-load-tools
	$(LOGGED) $(TEST_LOG_DIR)/bench-smoke.log $(CARGO) test -p mesh-bench

TEST_TARGETS += test-bench-smoke
