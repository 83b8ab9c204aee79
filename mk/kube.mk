# A real Kubernetes API server for the tests (tools/kube-apiserver: embedded etcd and
# kube-apiserver v1.37 in one binary, built from the Go module proxy), with Istio's and the
# Gateway API's CRDs. `make kube-apiserver` builds it if needed, starts it on loopback in the
# background (or reuses a live one) and writes target/kube/kubeconfig (admin, system:masters)
# and target/kube/kubeconfig-limited (user `limited`, no rights); `make kube-apiserver-stop`
# stops it. No kubelet, scheduler or controllers but the namespace and service-account ones
# (tools/kube-apiserver/controllers.go): a Deployment makes no Pods, nothing runs.
.PHONY: kube-apiserver kube-apiserver-stop test-kube-apiserver

GO ?= go
KUBE_DIR := $(CURDIR)/target/kube
KUBE_TOOL := $(CURDIR)/tools/kube-apiserver
KUBE_APISERVER := $(KUBE_DIR)/kube-apiserver
export MESH_KUBECONFIG := $(KUBE_DIR)/kubeconfig
export MESH_KUBECONFIG_LIMITED := $(KUBE_DIR)/kubeconfig-limited

# Istio's CRDs come from the istio.io/istio module: this version must match tools/istiod-gen/go.mod
# (the istiod test tool), so the CRDs the API server validates against are the ones istiod reads.
ISTIO_VERSION := v0.0.0-20260827124520-eed52ebb66ad
# What that Istio version requires. The standard channel: what Istio reads by default
# (Gateway, HTTPRoute, GRPCRoute, GatewayClass, ReferenceGrant...), enough for WasmPlugin
# targetRefs; the experimental channel's extra kinds are off in Istio unless asked for.
GATEWAY_API_VERSION := v1.6.0

# Relinked only when its sources change (a Make prerequisite, not `go build` every time: the
# link alone takes tens of seconds).
$(KUBE_APISERVER): $(KUBE_TOOL)/go.mod $(KUBE_TOOL)/go.sum $(wildcard $(KUBE_TOOL)/*.go)
	@mkdir -p $(KUBE_DIR)
	cd $(KUBE_TOOL) && $(GO) build -o $@ .

# The modules' directories in the module cache (downloaded on first use).
module_dir = $(shell cd $(KUBE_TOOL) && $(GO) mod download -json $(1) | sed -n 's/^.*"Dir": "\(.*\)",*$$/\1/p')

kube-apiserver: $(KUBE_APISERVER)
	@istio=$(call module_dir,istio.io/istio@$(ISTIO_VERSION)); \
	gw=$(call module_dir,sigs.k8s.io/gateway-api@$(GATEWAY_API_VERSION)); \
	test -f "$$istio/manifests/charts/base/files/crd-all.gen.yaml" && test -d "$$gw/config/crd/standard" \
	  || { echo "kube-apiserver: CRD modules not found ($$istio, $$gw)" >&2; exit 1; }; \
	scripts/kube-apiserver start $(KUBE_APISERVER) $(KUBE_DIR) \
	  $$istio/manifests/charts/base/files/crd-all.gen.yaml \
	  $$(ls $$gw/config/crd/standard/*.yaml | grep -v kustomization.yaml)

kube-apiserver-stop:
	@scripts/kube-apiserver stop $(KUBE_DIR)

# The real server does what the emulator only claimed (kubectl-mesh/tests/apiserver.rs).
test-kube-apiserver: wasm kube-apiserver
	$(LOGGED) $(TEST_LOG_DIR)/kube-apiserver.log $(CARGO) test -p kubectl-mesh --test apiserver

TEST_TARGETS += test-kube-apiserver
