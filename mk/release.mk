# `make release`: kubectl-mesh for linux x86_64 and aarch64 (static, musl; the filter module
# embedded), each archived with LICENSE and README.md in target/releases/ with its .sha256, and the
# krew manifest target/releases/mesh.yaml with the real digests (scripts/release-pack).
# `test-release` installs the x86_64 archive with real krew into a temporary KREW_ROOT and runs
# `kubectl mesh version`, checks the aarch64 binary (ELF header, and under qemu-user), and
# pushes the module with the released binary to a local docker-registry and pulls it back as
# istio-agent does (tests/tests/release.rs, oci.rs); it reuses what `make release` built.
# RELEASE_URL is where the archives will be published.
.PHONY: release release-toolchain krew qemu-user docker-registry test-release

RELEASE_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' $(CURDIR)/Cargo.toml | head -n1)
RELEASE_TARGETS := x86_64-unknown-linux-musl aarch64-unknown-linux-musl
# Not target/dist: cargo keeps the dist profile's build scripts and proc macros there, and the
# recipe empties this directory (emptying that one rebuilt everything).
RELEASE_DIR := $(CURDIR)/target/releases
RELEASE_URL ?= https://github.com/kubectl-mesh/kubectl-mesh/releases/download/v$(RELEASE_VERSION)
TOOLS_DIR := $(CURDIR)/target/tools
KREW_VERSION := v0.4.3
KREW := $(TOOLS_DIR)/krew-$(KREW_VERSION)
export MESH_RELEASE_DIR := $(RELEASE_DIR)
export MESH_KREW := $(KREW)

# rustup's musl targets bring musl's libc and start files; ring's C and assembly need a C
# compiler per target: Debian's musl-gcc (x86_64) and gcc-aarch64-linux-gnu (also the linker).
RELEASE_ENV := CC_x86_64_unknown_linux_musl=musl-gcc \
  CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc \
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc

release-toolchain:
	@for t in $(RELEASE_TARGETS); do \
	  rustup target list --installed | grep -qx $$t || rustup target add $$t || exit 1; done
	@missing=""; command -v musl-gcc >/dev/null || missing="$$missing musl-tools"; \
	command -v aarch64-linux-gnu-gcc >/dev/null || missing="$$missing gcc-aarch64-linux-gnu"; \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi

# One cargo run for both targets: the build scripts are built once, both targets in parallel.
release: wasm release-toolchain
	$(RELEASE_ENV) $(CARGO) build --profile dist -p kubectl-mesh $(addprefix --target ,$(RELEASE_TARGETS))
	@rm -rf $(RELEASE_DIR)
	scripts/release-pack $(RELEASE_VERSION) $(RELEASE_URL) $(RELEASE_DIR) $(RELEASE_TARGETS)

# krew itself, built from its Go module (the Go module proxy serves it).
$(KREW):
	@mkdir -p $(TOOLS_DIR)/krew-build
	GOBIN=$(TOOLS_DIR)/krew-build go install sigs.k8s.io/krew/cmd/krew@$(KREW_VERSION)
	mv $(TOOLS_DIR)/krew-build/krew $@
krew: $(KREW)

# Runs the aarch64 binary here (Debian's qemu-user, without binfmt registration).
qemu-user:
	@command -v qemu-aarch64 >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq qemu-user >/dev/null; }

# The CNCF distribution server (Debian's docker-registry); the test starts its own on loopback.
docker-registry:
	@command -v docker-registry >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq docker-registry >/dev/null; }

test-release: release krew qemu-user docker-registry
	$(LOGGED) $(TEST_LOG_DIR)/release.log $(CARGO) test -p mesh-tests --test release --test oci

TEST_TARGETS += test-release
