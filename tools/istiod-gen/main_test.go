package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestMain lets the tests run this test binary as the istiod-gen command (ISTIOD_GEN_MAIN=1):
// the command line, --env's restart and the output are tested as a user runs them.
func TestMain(m *testing.M) {
	if os.Getenv("ISTIOD_GEN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	if err := quietIstio("error"); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

// runCLI runs the command; it returns stdout, stderr and the exit code.
func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "ISTIOD_GEN_MAIN=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

// dumpSections decodes a /config_dump into its sections by short type name.
func dumpSections(t *testing.T, out string) map[string]map[string]any {
	t.Helper()
	var d struct {
		Configs []map[string]any `json:"configs"`
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("stdout is not a config dump: %v\n%s", err, out)
	}
	sections := map[string]map[string]any{}
	for _, c := range d.Configs {
		typ, _ := c["@type"].(string)
		sections[typ[strings.LastIndex(typ, ".")+1:]] = c
	}
	return sections
}

func clusterNames(t *testing.T, out string) []string {
	t.Helper()
	var names []string
	dyn, _ := dumpSections(t, out)["ClustersConfigDump"]["dynamic_active_clusters"].([]any)
	for _, c := range dyn {
		names = append(names, c.(map[string]any)["cluster"].(map[string]any)["name"].(string))
	}
	return names
}

var gatewayArgs = []string{"--proxy-type", "router", "--namespace", "istio-system", "--labels", "istio=ingressgateway",
	"-f", "testdata/app.yaml", "-f", "testdata/gateway.yaml"}

func TestDumpLooksLikeEnvoys(t *testing.T) {
	out, stderr, code := runCLI(t, append(gatewayArgs, "--istio-version", "1.20.3", "-f", "testdata/wasmplugin.yaml")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	s := dumpSections(t, out)
	for typ, key := range map[string]string{
		"BootstrapConfigDump": "bootstrap", "ClustersConfigDump": "dynamic_active_clusters",
		"ListenersConfigDump": "dynamic_listeners", "RoutesConfigDump": "dynamic_route_configs", "EcdsConfigDump": "ecds_filters",
	} {
		if _, ok := s[typ][key]; !ok {
			t.Errorf("section %s has no %s (snake_case, like a real dump)", typ, key)
		}
	}
	node := s["BootstrapConfigDump"]["bootstrap"].(map[string]any)["node"].(map[string]any)
	md := node["metadata"].(map[string]any)
	if md["ISTIO_VERSION"] != "1.20.3" || md["NAMESPACE"] != "istio-system" || md["LABELS"].(map[string]any)["istio"] != "ingressgateway" {
		t.Errorf("node metadata lacks the proxy's version, namespace or labels: %v", md)
	}
	l := s["ListenersConfigDump"]["dynamic_listeners"].([]any)[0].(map[string]any)
	if _, ok := l["active_state"].(map[string]any)["listener"]; !ok {
		t.Errorf("listener without active_state.listener: %v", l)
	}
	if !strings.Contains(out, `"config_discovery"`) {
		t.Error("no config_discovery filter in the dump, though a WasmPlugin selects the gateway")
	}
}

func TestEnvFlagSetsIstiodFeatures(t *testing.T) {
	plain, stderr, code := runCLI(t, gatewayArgs...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	filtered, stderr, code := runCLI(t, append(gatewayArgs, "--env", "PILOT_FILTER_GATEWAY_CLUSTER_CONFIG=true")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	gwCluster := "outbound|443||istio-ingressgateway.istio-system.svc.cluster.local"
	if !slices.Contains(clusterNames(t, plain), gwCluster) {
		t.Errorf("by default the gateway gets every cluster, %s too: %v", gwCluster, clusterNames(t, plain))
	}
	got := clusterNames(t, filtered)
	if slices.Contains(got, gwCluster) || !slices.Contains(got, "outbound|6000||server.digimon.svc.cluster.local") {
		t.Errorf("PILOT_FILTER_GATEWAY_CLUSTER_CONFIG=true should leave only routed clusters: %v", got)
	}
}

func TestErrorsNameTheObjectAndFile(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"testdata/bad/unknown-kind.yaml", []string{"Widget digimon/w", "example.com/v1", "unknown-kind.yaml, document 1", "does not know this kind"}},
		{"testdata/bad/invalid-vs.yaml", []string{"VirtualService digimon/broken", "invalid-vs.yaml, document 1", "istiod rejects it"}},
	} {
		_, stderr, code := runCLI(t, "--proxy-type", "sidecar", "--namespace", "digimon", "--labels", "app=server", "-f", "testdata/app.yaml", "-f", tc.file)
		if code != 1 {
			t.Errorf("%s: exit %d, want 1", tc.file, code)
		}
		for _, w := range tc.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%s: error %q does not say %q", tc.file, stderr, w)
			}
		}
	}
}

func TestSidecarWithoutItsWorkloadIsAnError(t *testing.T) {
	_, stderr, code := runCLI(t, "--proxy-type", "sidecar", "--namespace", "digimon", "--labels", "app=nothing", "-f", "testdata/app.yaml")
	if code != 1 || !strings.Contains(stderr, "no Pod or Deployment in namespace digimon has the labels app=nothing") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// TestLibraryVersion checks LibraryIstioVersion against the VERSION file of the istio.io/istio
// module go.mod names.
func TestLibraryVersion(t *testing.T) {
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/istio").Output()
	if err != nil {
		t.Fatalf("go list -m istio.io/istio: %v", err)
	}
	v, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(dir)), "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSpace(string(v)) + "."; !strings.HasPrefix(LibraryIstioVersion, want) {
		t.Errorf("LibraryIstioVersion %s, but the module's VERSION file says %s", LibraryIstioVersion, v)
	}
}
