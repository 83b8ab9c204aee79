# The digimon app end to end (examples/digimon/): the web page built with npm (no bundle or
# generated code committed), `test-demo` runs `make demo`'s driver and kills it mid-way (nothing
# it started may survive), `test-browser` drives the page in headless Chromium through
# `kubectl mesh run` (tests/tests/browser.rs; screenshots in target/browser/).
.PHONY: digimon-web digimon-bins chromium test-demo test-browser

DIGIMON_WEB := $(CURDIR)/examples/digimon/web
DIGIMON_WEB_OUT := $(CURDIR)/target/digimon-web
# apt-get needs root; elsewhere sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The stamp lives inside node_modules: removing node_modules removes it too. No install
# scripts: esbuild and buf find their binaries in their platform packages without them.
$(DIGIMON_WEB)/node_modules/.ok: $(DIGIMON_WEB)/package-lock.json
	cd $(DIGIMON_WEB) && npm ci --no-audit --no-fund --ignore-scripts
	touch $@

# The page: client code generated from the shared proto (buf + protoc-gen-es, no protoc),
# bundled by esbuild into target/digimon-web/ with index.html.
digimon-web: $(DIGIMON_WEB)/node_modules/.ok
	cd $(DIGIMON_WEB) && node build.mjs $(DIGIMON_WEB_OUT)

# The processes the demo and the tests start; kubectl-mesh embeds the module `wasm` built.
digimon-bins: wasm
	$(CARGO) build -p kubectl-mesh -p digimon-app -p mesh-tests --bins

# Debian's chromium, installed when missing (asks apt each time, like wasm-target).
chromium:
	@command -v chromium >/dev/null || { \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium; }
	@chromium --version 2>/dev/null

test-demo: envoy digimon-web digimon-bins
	$(LOGGED) $(TEST_LOG_DIR)/demo.log $(CARGO) test -p mesh-tests --test demo

# One browser at a time: two Chromiums and two Envoys on a 2-core machine only add noise.
test-browser: envoy chromium digimon-web digimon-bins
	$(LOGGED) $(TEST_LOG_DIR)/browser.log $(CARGO) test -p mesh-tests --test browser -- --test-threads=1

TEST_TARGETS += test-demo test-browser
