// istiod-gen runs istiod's own config generation in-process (as Istio's tests do) on Kubernetes and
// Istio YAML, and prints one proxy's config as Envoy's admin /config_dump JSON.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"syscall"

	"istio.io/istio/pkg/log"
)

// usage is printed by -h and on flag errors.
const usage = `istiod-gen: one proxy's config as istiod generates it, printed as Envoy's /config_dump JSON.

  istiod-gen --proxy-type router|sidecar --namespace NS --labels k=v[,k=v] [--ip IP]
             [--istio-version X.Y.Z] [--env NAME=VALUE]... [--mesh FILE]
             [--default-namespace NS] [--log-level LEVEL] -f FILE_OR_DIR...

Flags:
`

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// options is the whole command line.
type options struct {
	proxy     ProxyOptions
	files     []string
	env       []string
	meshFile  string
	defaultNS string
	logLevel  string
}

func main() {
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "istiod-gen: %v\n", err)
		os.Exit(2)
	}
	if err := reexecWithEnv(opts.env); err != nil {
		fmt.Fprintf(os.Stderr, "istiod-gen: %v\n", err)
		os.Exit(2)
	}
	if err := run(opts, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "istiod-gen: %v\n", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	var labels, files, env stringList
	var proxyType string
	fs := flag.NewFlagSet("istiod-gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	fs.StringVar(&proxyType, "proxy-type", "", "router (a gateway) or sidecar")
	fs.StringVar(&o.proxy.Namespace, "namespace", "", "the proxy's namespace")
	fs.Var(&labels, "labels", "the proxy's pod labels, k=v[,k=v] (repeatable)")
	fs.StringVar(&o.proxy.IP, "ip", "", "the proxy's pod IP (default: the matching Pod's, or one assigned)")
	fs.StringVar(&o.proxy.IstioVersion, "istio-version", LibraryIstioVersion, "the proxy's ISTIO_VERSION (EnvoyFilter proxyVersion matches it)")
	fs.Var(&env, "env", "NAME=VALUE set for istiod, e.g. a PILOT_* feature flag (repeatable)")
	fs.StringVar(&o.meshFile, "mesh", "", "a MeshConfig YAML file (default: Istio's default mesh config)")
	fs.StringVar(&o.defaultNS, "default-namespace", "default", "namespace for namespaced objects that name none (like kubectl apply -n)")
	fs.StringVar(&o.logLevel, "log-level", "error", "istiod's own log level on stderr: debug, info, warn, error, none")
	fs.Var(&files, "f", "a YAML/JSON file or a directory of them (repeatable)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (input files go after -f)", fs.Arg(0))
	}
	switch proxyType {
	case "router":
		o.proxy.Router = true
	case "sidecar":
	default:
		return nil, fmt.Errorf("--proxy-type must be router or sidecar, not %q", proxyType)
	}
	if o.proxy.Namespace == "" {
		return nil, errors.New("--namespace is required")
	}
	if len(files) == 0 {
		return nil, errors.New("no input: give one or more -f FILE_OR_DIR")
	}
	var err error
	if o.proxy.Labels, err = parseLabels(labels); err != nil {
		return nil, err
	}
	if len(o.proxy.Labels) == 0 {
		return nil, errors.New("--labels is required: they select the proxy's Pod and Gateways")
	}
	for _, e := range env {
		if name, _, ok := strings.Cut(e, "="); !ok || name == "" {
			return nil, fmt.Errorf("--env %q: want NAME=VALUE", e)
		}
	}
	o.files, o.env = files, env
	return o, nil
}

func parseLabels(values []string) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range values {
		for _, kv := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("--labels %q: want k=v[,k=v]", v)
			}
			out[k] = val
		}
	}
	return out, nil
}

// reexecWithEnv restarts this program with the --env variables set, unless they already are: Istio
// reads its feature flags (pilot/pkg/features) once, at package init, before main can set anything.
func reexecWithEnv(env []string) error {
	missing := false
	for _, e := range env {
		name, value, _ := strings.Cut(e, "=")
		if cur, ok := os.LookupEnv(name); !ok || cur != value {
			missing = true
		}
	}
	if !missing {
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this program to restart it with --env set: %w", err)
	}
	err = syscall.Exec(self, os.Args, append(os.Environ(), env...))
	return fmt.Errorf("restarting %s with --env set: %w", self, err)
}

func run(o *options, stdout, stderr io.Writer) error {
	if err := quietIstio(o.logLevel); err != nil {
		return err
	}
	mesh, err := loadMesh(o.meshFile)
	if err != nil {
		return err
	}
	in, err := LoadFiles(o.files, o.defaultNS)
	if err != nil {
		return err
	}
	g, err := Generate(in, o.proxy, mesh)
	for _, n := range in.Notes {
		fmt.Fprintf(stderr, "istiod-gen: %s\n", n)
	}
	if err != nil {
		return err
	}
	return WriteDump(stdout, g)
}

// quietIstio sets every istiod log scope to level: stderr is for this tool's own notes.
func quietIstio(level string) error {
	levels := map[string]log.Level{"debug": log.DebugLevel, "info": log.InfoLevel, "warn": log.WarnLevel, "error": log.ErrorLevel, "none": log.NoneLevel}
	l, ok := levels[level]
	if !ok {
		keys := make([]string, 0, len(levels))
		for k := range levels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return fmt.Errorf("--log-level %q: want one of %s", level, strings.Join(keys, ", "))
	}
	lo := log.DefaultOptions()
	lo.OutputPaths = []string{"stderr"} // stdout is the dump's
	if err := log.Configure(lo); err != nil {
		return fmt.Errorf("configuring istiod's logging: %w", err)
	}
	for _, s := range log.Scopes() {
		s.SetOutputLevel(l)
	}
	return nil
}
