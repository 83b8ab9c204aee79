// Input loading: YAML/JSON files into what istiod would find in a cluster: Kubernetes objects (read
// through the Kubernetes client, as istiod does) and Istio configs (the config store).
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"istio.io/istio/pilot/pkg/config/kube/crd"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/schema/collections"
	"istio.io/istio/pkg/config/schema/resource"
	kubelib "istio.io/istio/pkg/kube"
)

// Inputs is the cluster as istiod would see it, plus what the proxy setup needs.
type Inputs struct {
	// Kube holds objects istiod reads through its Kubernetes client (Services, Pods, Gateway API...).
	Kube []runtime.Object
	// Configs holds Istio networking/extensions/security objects (istiod's config store).
	Configs []config.Config
	// Workloads are pod templates of Deployments and the like, turned into Pods by the proxy setup.
	Workloads []Workload
	// Notes are told on stderr: objects skipped or converted, objects synthesized.
	Notes []string
}

// Workload is a controller's pod template: istiod watches Pods, never Deployments.
type Workload struct {
	Kind, Name, Namespace string
	Template              corev1.PodTemplateSpec
	Origin                string
}

// object is one YAML document with where it came from, for error messages.
type object struct {
	u      *unstructured.Unstructured
	raw    []byte
	origin string // file (document N)
}

func (o object) String() string {
	name := o.u.GetName()
	if ns := o.u.GetNamespace(); ns != "" {
		name = ns + "/" + name
	}
	return fmt.Sprintf("%s %s (%s, %s)", o.u.GetKind(), name, o.u.GetAPIVersion(), o.origin)
}

// kubeKinds are core Kubernetes kinds istiod reads; true = namespaced.
var kubeKinds = map[schema.GroupKind]bool{
	{Kind: "Namespace"}: false, {Kind: "Service"}: true, {Kind: "Pod"}: true, {Kind: "Endpoints"}: true,
	{Kind: "ConfigMap"}: true, {Kind: "Secret"}: true, {Kind: "Node"}: false,
	{Group: "discovery.k8s.io", Kind: "EndpointSlice"}: true,
	{Group: "networking.k8s.io", Kind: "Ingress"}:      true,
	{Group: "networking.k8s.io", Kind: "IngressClass"}: false,
}

// workloadKinds own pod templates; old groups (extensions/v1beta1, apps/v1beta*) are accepted too,
// so manifests from before Kubernetes 1.16 load as they are.
var workloadKinds = map[string]bool{"Deployment": true, "StatefulSet": true, "DaemonSet": true, "ReplicaSet": true}

// ignoredKinds are kinds istiod builds no proxy config from: skipped with a note.
var ignoredKinds = map[string]bool{
	"ServiceAccount": true, "Role": true, "RoleBinding": true, "ClusterRole": true, "ClusterRoleBinding": true,
	"CustomResourceDefinition": true, "HorizontalPodAutoscaler": true, "PodDisruptionBudget": true,
	"NetworkPolicy": true, "PersistentVolumeClaim": true, "Job": true, "CronJob": true, "LimitRange": true,
	"ResourceQuota": true, "PriorityClass": true,
}

// LoadFiles reads every file (a directory: its *.yaml, *.yml and *.json files, not recursive, like
// kubectl apply -f) and sorts the documents into Inputs. Namespaced objects without a namespace get
// defaultNS.
func LoadFiles(paths []string, defaultNS string) (*Inputs, error) {
	in := &Inputs{}
	// One creation time for all: istiod orders same-host VirtualServices by it, then by name.
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, p := range paths {
		files, err := expand(p)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			objs, err := readObjects(f)
			if err != nil {
				return nil, err
			}
			for _, o := range objs {
				if err := in.add(o, defaultNS, created); err != nil {
					return nil, err
				}
			}
		}
	}
	return in, nil
}

func expand(p string) ([]string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("input %s: %w", p, err)
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		return nil, fmt.Errorf("input directory %s: %w", p, err)
	}
	var out []string
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
			out = append(out, filepath.Join(p, e.Name()))
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return nil, fmt.Errorf("input directory %s has no .yaml, .yml or .json file", p)
	}
	return out, nil
}

// readObjects splits a multi-document file; a `kind: List` contributes its items.
func readObjects(file string) ([]object, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("input %s: %w", file, err)
	}
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []object
	for doc := 1; ; doc++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s (document %d): %w", file, doc, err)
		}
		origin := fmt.Sprintf("%s, document %d", file, doc)
		js, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: not YAML: %w", origin, err)
		}
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue // only comments or ---
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(js); err != nil {
			return nil, fmt.Errorf("%s: not a Kubernetes object (apiVersion and kind are required): %w", origin, err)
		}
		if u.IsList() {
			list, _ := u.ToList()
			for i := range list.Items {
				item := &list.Items[i]
				b, err := item.MarshalJSON()
				if err != nil {
					return nil, fmt.Errorf("%s, item %d: %w", origin, i, err)
				}
				out = append(out, object{u: item, raw: b, origin: fmt.Sprintf("%s, item %d", origin, i)})
			}
			continue
		}
		out = append(out, object{u: u, raw: js, origin: origin})
	}
}

func (in *Inputs) add(o object, defaultNS string, created time.Time) error {
	gvk := o.u.GroupVersionKind()
	if o.u.GetName() == "" {
		return fmt.Errorf("%s: metadata.name is required", o)
	}
	// Istio and Gateway API kinds, as istiod's schemas know them.
	if s, ok := collections.PilotGatewayAPI().FindByGroupVersionAliasesKind(config.FromKubernetesGVK(gvk)); ok {
		if !s.IsClusterScoped() && o.u.GetNamespace() == "" {
			o = o.withNamespace(defaultNS)
		}
		if s.Group() == "gateway.networking.k8s.io" || strings.HasSuffix(s.Group(), ".x-k8s.io") {
			// istiod's Gateway API controller reads these through the Kubernetes client.
			return in.addKube(o)
		}
		return in.addConfig(o, s, created)
	}
	gk := gvk.GroupKind()
	if namespaced, ok := kubeKinds[gk]; ok {
		if namespaced && o.u.GetNamespace() == "" {
			o = o.withNamespace(defaultNS)
		}
		return in.addKube(o)
	}
	switch {
	case workloadKinds[gk.Kind] && (gk.Group == "apps" || gk.Group == "extensions"):
		if o.u.GetNamespace() == "" {
			o = o.withNamespace(defaultNS)
		}
		return in.addWorkload(o)
	case gk.Kind == "Ingress" && (gk.Group == "extensions" || gk.Group == "networking.k8s.io"):
		in.note("skipped %s: Kubernetes 1.22+ does not serve this Ingress API, so istiod never sees it (kubectl mesh migrate converts it)", o)
		return nil
	case ignoredKinds[gk.Kind]:
		in.note("skipped %s: istiod builds no proxy config from this kind", o)
		return nil
	}
	return fmt.Errorf("%s: istiod-gen does not know this kind; give Kubernetes (Service, Pod, Deployment...), Istio or Gateway API objects", o)
}

func (o object) withNamespace(ns string) object {
	o.u.SetNamespace(ns)
	b, _ := o.u.MarshalJSON() // re-encoding what was just decoded cannot fail
	o.raw = b
	return o
}

func (in *Inputs) addConfig(o object, s resource.Schema, created time.Time) error {
	var obj crd.IstioKind
	if err := yaml.Unmarshal(o.raw, &obj); err != nil {
		return fmt.Errorf("%s: %w", o, err)
	}
	cfg, err := crd.ConvertObject(s, &obj, "cluster.local")
	if err != nil {
		return fmt.Errorf("%s: spec does not fit the %s schema: %w", o, s.Kind(), err)
	}
	if cfg.CreationTimestamp.IsZero() {
		cfg.CreationTimestamp = created
	}
	if cfg.ResourceVersion == "" {
		cfg.ResourceVersion = "1" // else the config store stamps the time, and the dump would vary
	}
	warn, err := s.ValidateConfig(*cfg)
	if err != nil {
		return fmt.Errorf("%s: istiod rejects it: %w", o, err)
	}
	// Every EnvoyFilter gets the same warning about EnvoyFilter itself; it says nothing about this one.
	if warn != nil && !strings.Contains(warn.Error(), "EnvoyFilter exposes internal implementation details") {
		in.note("%s: istiod warns: %v", o, warn)
	}
	in.Configs = append(in.Configs, *cfg)
	return nil
}

func (in *Inputs) addKube(o object) error {
	obj, _, err := kubelib.IstioCodec.UniversalDeserializer().Decode(o.raw, nil, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", o, err)
	}
	in.Kube = append(in.Kube, obj)
	return nil
}

func (in *Inputs) addWorkload(o object) error {
	gv := o.u.GetAPIVersion()
	if _, found, _ := unstructured.NestedMap(o.u.Object, "spec", "selector"); !found && gv == "apps/v1" {
		// apps/v1 requires a selector (older groups default it to the template's labels): this
		// is a patch, like the one `kubectl mesh render` emits for a gateway Deployment.
		in.note("skipped %s: no spec.selector, so a patch rather than a Deployment", o)
		return nil
	}
	tmpl, found, err := unstructured.NestedMap(o.u.Object, "spec", "template")
	if err != nil || !found {
		return fmt.Errorf("%s: spec.template is missing", o)
	}
	w := Workload{Kind: o.u.GetKind(), Name: o.u.GetName(), Namespace: o.u.GetNamespace(), Origin: o.origin}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(tmpl, &w.Template); err != nil {
		return fmt.Errorf("%s: spec.template is not a pod template: %w", o, err)
	}
	if len(w.Template.Labels) == 0 {
		return fmt.Errorf("%s: spec.template.metadata.labels is empty; Services could not select its Pods", o)
	}
	if gv != "apps/v1" {
		in.note("read %s as apps/v1: Kubernetes 1.16+ does not serve %s (kubectl mesh migrate converts it)", o, gv)
	}
	in.Workloads = append(in.Workloads, w)
	return nil
}

func (in *Inputs) note(format string, args ...any) {
	in.Notes = append(in.Notes, fmt.Sprintf(format, args...))
}
