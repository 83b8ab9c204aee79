# istiod's own config generation as a tool (tools/istiod-gen, its own Go module; README there):
# `make istiod-gen` builds target/istiod-gen/istiod-gen, which prints one proxy's config as
# Envoy's /config_dump from Kubernetes and Istio YAML. `test-istiod-gen` runs its Go tests.
.PHONY: istiod-gen test-istiod-gen

GO ?= go
ISTIOD_GEN_DIR := $(CURDIR)/tools/istiod-gen
ISTIOD_GEN := $(CURDIR)/target/istiod-gen/istiod-gen
export MESH_ISTIOD_GEN := $(ISTIOD_GEN)
# Relinked only when the tool's sources or module files change. The build and the tests use the
# same compile flags, so they share Go's build cache (-buildvcs=false: no git stamping inside
# worktrees); -s -w leaves out the debug tables (200 MB -> about half, and a faster link).
ISTIOD_GEN_SRC := $(filter-out %_test.go,$(wildcard $(ISTIOD_GEN_DIR)/*.go)) $(ISTIOD_GEN_DIR)/go.mod $(ISTIOD_GEN_DIR)/go.sum
GO_FLAGS := -buildvcs=false

$(ISTIOD_GEN): $(ISTIOD_GEN_SRC)
	@mkdir -p $(dir $@)
	cd $(ISTIOD_GEN_DIR) && $(GO) build $(GO_FLAGS) -ldflags="-s -w" -o $@ .

istiod-gen: $(ISTIOD_GEN)

test-istiod-gen:
	@cd $(ISTIOD_GEN_DIR) && unformatted=$$(gofmt -l .) && [ -z "$$unformatted" ] || { echo "gofmt -w these: $$unformatted"; exit 1; }
	cd $(ISTIOD_GEN_DIR) && $(GO) vet $(GO_FLAGS) . && \
	  $(LOGGED) $(TEST_LOG_DIR)/istiod-gen.log $(GO) test $(GO_FLAGS) -v .

TEST_TARGETS += test-istiod-gen
