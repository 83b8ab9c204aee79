// Proxy setup: the Pods, gateway Services and Namespaces a real cluster would have around the
// proxy, and the model.Proxy istiod builds from the proxy's node metadata.
package main

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	klabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"istio.io/istio/pilot/pkg/config/kube/gatewaycommon"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pkg/config/constants"
)

// LibraryIstioVersion is the ISTIO_VERSION of the istio.io/istio module in go.mod (its VERSION
// file says 1.31); TestLibraryVersion checks the two agree.
const LibraryIstioVersion = "1.31.0"

// gatewayNameLabel is the label istiod's Gateway API deployments carry.
const gatewayNameLabel = "gateway.networking.k8s.io/gateway-name"

// ProxyOptions says which proxy to generate for.
type ProxyOptions struct {
	Router       bool
	Namespace    string
	Labels       map[string]string
	IP           string
	IstioVersion string
}

func (p ProxyOptions) describe() string {
	kind := "sidecar"
	if p.Router {
		kind = "router"
	}
	return fmt.Sprintf("%s in namespace %s with labels %s", kind, p.Namespace, klabels.Set(p.Labels))
}

// cluster is the Kubernetes side of Inputs, indexed for the setup.
type cluster struct {
	in       *Inputs
	pods     []*corev1.Pod
	services []*corev1.Service
	usedIPs  map[string]bool
	nextIP   netip.Addr
}

// setupWorkloads completes the cluster around the proxy and returns the proxy's Pod: Pods get
// the status a kubelet would give them, controllers without Pods get one, and a gateway gets the
// Pod and Service its installer would create.
func (in *Inputs) setupWorkloads(p ProxyOptions) (*corev1.Pod, error) {
	c := &cluster{in: in, usedIPs: map[string]bool{}, nextIP: netip.MustParseAddr("10.244.0.10")}
	if p.IP != "" {
		if _, err := netip.ParseAddr(p.IP); err != nil {
			return nil, fmt.Errorf("--ip %q is not an IP address", p.IP)
		}
		c.usedIPs[p.IP] = true
	}
	for _, o := range in.Kube {
		switch v := o.(type) {
		case *corev1.Pod:
			c.pods = append(c.pods, v)
			if v.Status.PodIP != "" {
				c.usedIPs[v.Status.PodIP] = true
			}
		case *corev1.Service:
			c.services = append(c.services, v)
		}
	}
	proxyPod, err := c.findProxyPod(p)
	if err != nil {
		return nil, err
	}
	for _, pod := range c.pods {
		if pod.Status.PodIP == "" {
			ip := c.allocate()
			if pod == proxyPod && p.IP != "" {
				ip = p.IP
			}
			c.markRunning(pod, ip)
			in.note("gave Pod %s/%s the IP %s and a Ready status", pod.Namespace, pod.Name, ip)
		}
	}
	for _, w := range in.Workloads {
		if c.hasPodFor(w.Namespace, w.Template.Labels) {
			continue
		}
		pod := &corev1.Pod{ObjectMeta: *w.Template.ObjectMeta.DeepCopy(), Spec: *w.Template.Spec.DeepCopy()}
		pod.Name, pod.Namespace = w.Name+"-0", w.Namespace
		ip := c.allocate()
		if proxyPod == nil && pod.Namespace == p.Namespace && klabels.SelectorFromSet(p.Labels).Matches(klabels.Set(pod.Labels)) {
			proxyPod = pod
			if p.IP != "" {
				ip = p.IP
			}
		}
		c.markRunning(pod, ip)
		c.addPod(pod)
		in.note("made Pod %s/%s (IP %s) from %s %s/%s", pod.Namespace, pod.Name, ip, w.Kind, w.Namespace, w.Name)
	}
	if proxyPod == nil && p.Router {
		if proxyPod, err = c.addGatewayPod(p); err != nil {
			return nil, err
		}
	}
	if proxyPod == nil {
		return nil, fmt.Errorf("no Pod or Deployment in namespace %s has the labels %s: the %s needs one (istiod builds its inbound listeners from the Services that select it)",
			p.Namespace, klabels.Set(p.Labels), p.describe())
	}
	if p.Router {
		if err := c.addGatewayService(p, proxyPod); err != nil {
			return nil, err
		}
	}
	c.addNamespaces(p.Namespace)
	return proxyPod, nil
}

// findProxyPod picks the Pod from the input that the proxy runs in, if any.
func (c *cluster) findProxyPod(p ProxyOptions) (*corev1.Pod, error) {
	sel := klabels.SelectorFromSet(p.Labels)
	var matches []*corev1.Pod
	for _, pod := range c.pods {
		if pod.Namespace == p.Namespace && sel.Matches(klabels.Set(pod.Labels)) {
			if p.IP != "" && pod.Status.PodIP == p.IP {
				return pod, nil
			}
			matches = append(matches, pod)
		}
	}
	var free []*corev1.Pod // without an IP, so --ip can be theirs
	for _, pod := range matches {
		if pod.Status.PodIP == "" || p.IP == "" {
			free = append(free, pod)
		}
	}
	switch len(free) {
	case 0:
		return nil, nil
	case 1:
		return free[0], nil
	}
	names := make([]string, len(free))
	for i, pod := range free {
		names[i] = pod.Name
	}
	return nil, fmt.Errorf("%d Pods match the %s (%s): pass --ip with one's status.podIP", len(free), p.describe(), strings.Join(names, ", "))
}

func (c *cluster) hasPodFor(ns string, labels map[string]string) bool {
	sel := klabels.SelectorFromSet(labels)
	for _, pod := range c.pods {
		if pod.Namespace == ns && sel.Matches(klabels.Set(pod.Labels)) {
			return true
		}
	}
	return false
}

func (c *cluster) allocate() string {
	for c.usedIPs[c.nextIP.String()] {
		c.nextIP = c.nextIP.Next()
	}
	ip := c.nextIP.String()
	c.usedIPs[ip] = true
	return ip
}

// markRunning gives a Pod what a kubelet reports: istiod only indexes running, ready Pods by IP.
func (c *cluster) markRunning(pod *corev1.Pod, ip string) {
	pod.Status.PodIP = ip
	pod.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue})
}

func (c *cluster) addPod(pod *corev1.Pod) {
	c.pods = append(c.pods, pod)
	c.in.Kube = append(c.in.Kube, pod)
}

// gatewayInstall is what an installer creates for a gateway: its Pod's name and its Service.
type gatewayInstall struct {
	podName string
	service *corev1.Service
	by      string
}

// installFor names the installation the labels stand for: istioctl's default ingress gateway,
// the Helm gateway chart, or istiod's own Deployment for a Gateway API Gateway.
func (c *cluster) installFor(p ProxyOptions) (*gatewayInstall, error) {
	port := func(name string, port, target int32) corev1.ServicePort {
		return corev1.ServicePort{Name: name, Port: port, TargetPort: intstr.FromInt32(target), Protocol: corev1.ProtocolTCP}
	}
	svc := func(name string, ports ...corev1.ServicePort) *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: p.Namespace, Labels: p.Labels},
			Spec:       corev1.ServiceSpec{Selector: p.Labels, Ports: ports, Type: corev1.ServiceTypeLoadBalancer},
		}
	}
	if gwName, ok := p.Labels[gatewayNameLabel]; ok {
		gw := c.findGatewayAPI(p.Namespace, gwName)
		if gw == nil {
			return nil, fmt.Errorf("the %s names Gateway API Gateway %s/%s, which is not in the input", p.describe(), p.Namespace, gwName)
		}
		// As istiod's deployment controller does: the Service <name>-<class>, status port plus
		// one port per listener port, each to the same port.
		name := gatewaycommon.GetDefaultName(gw.Name, &gw.Spec, false)
		ports := []corev1.ServicePort{port("status-port", 15021, 15021)}
		seen := map[int32]bool{}
		for _, l := range gw.Spec.Listeners {
			if seen[l.Port] {
				continue
			}
			seen[l.Port] = true
			ap := strings.ToLower(string(l.Protocol))
			sp := port(fmt.Sprintf("%s-%d", ap, l.Port), l.Port, l.Port)
			sp.AppProtocol = &ap
			ports = append(ports, sp)
		}
		return &gatewayInstall{podName: name + "-0", service: svc(name, ports...), by: "istiod's Gateway API deployment controller"}, nil
	}
	switch p.Labels["istio"] {
	case "ingressgateway":
		// manifests/charts/gateways/istio-ingress (istioctl install's default profile).
		return &gatewayInstall{podName: "istio-ingressgateway-0", by: "istioctl install (default profile)", service: svc("istio-ingressgateway",
			port("status-port", 15021, 15021), port("http2", 80, 8080), port("https", 443, 8443))}, nil
	case "ingress":
		// manifests/charts/gateway, installed as `helm install istio-ingress istio/gateway`.
		return &gatewayInstall{podName: "istio-ingress-0", by: "the Helm gateway chart (release istio-ingress)", service: svc("istio-ingress",
			port("status-port", 15021, 15021), port("http2", 80, 80), port("https", 443, 443))}, nil
	}
	return &gatewayInstall{podName: "gateway-0"}, nil
}

func (c *cluster) findGatewayAPI(ns, name string) *gatewayv1.Gateway {
	for _, o := range c.in.Kube {
		if gw, ok := o.(*gatewayv1.Gateway); ok && gw.Namespace == ns && gw.Name == name {
			return gw
		}
	}
	return nil
}

func (c *cluster) addGatewayPod(p ProxyOptions) (*corev1.Pod, error) {
	inst, err := c.installFor(p)
	if err != nil {
		return nil, err
	}
	ip := p.IP
	if ip == "" {
		ip = c.allocate()
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: inst.podName, Namespace: p.Namespace, Labels: p.Labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "istio-proxy"}}},
	}
	c.markRunning(pod, ip)
	c.addPod(pod)
	c.in.note("made gateway Pod %s/%s (IP %s) with the proxy's labels", p.Namespace, pod.Name, ip)
	return pod, nil
}

// addGatewayService adds the installer's Service when none in the input selects the gateway:
// istiod maps Gateway server ports to the Service's target ports (80 -> 8080 for istioctl's).
func (c *cluster) addGatewayService(p ProxyOptions, pod *corev1.Pod) error {
	for _, s := range c.services {
		if s.Namespace == pod.Namespace && len(s.Spec.Selector) > 0 &&
			klabels.SelectorFromSet(s.Spec.Selector).Matches(klabels.Set(pod.Labels)) {
			return nil
		}
	}
	inst, err := c.installFor(p)
	if err != nil {
		return err
	}
	if inst.service == nil {
		c.in.note("no Service selects the gateway and its labels name no known installer: Gateway server ports are its listener ports as they are")
		return nil
	}
	for _, s := range c.services {
		if s.Namespace == p.Namespace && s.Name == inst.service.Name {
			return fmt.Errorf("Service %s/%s is in the input but does not select the gateway's labels %v (its selector is %v): give the proxy the labels its pods have (--labels), or fix the Service",
				s.Namespace, s.Name, pod.Labels, s.Spec.Selector)
		}
	}
	c.in.Kube = append(c.in.Kube, inst.service)
	c.services = append(c.services, inst.service)
	var ports []string
	for _, sp := range inst.service.Spec.Ports {
		ports = append(ports, fmt.Sprintf("%d->%s", sp.Port, sp.TargetPort.String()))
	}
	c.in.note("made gateway Service %s/%s as %s does (ports %s)", p.Namespace, inst.service.Name, inst.by, strings.Join(ports, ", "))
	return nil
}

// addNamespaces declares every namespace used but not given: istiod reads Namespace objects
// (labels, Gateway API allowedRoutes).
func (c *cluster) addNamespaces(proxyNS string) {
	declared := map[string]bool{}
	used := map[string]bool{proxyNS: true}
	for _, o := range c.in.Kube {
		m, ok := o.(metav1.Object)
		if !ok {
			continue
		}
		if _, isNS := o.(*corev1.Namespace); isNS {
			declared[m.GetName()] = true
		} else if m.GetNamespace() != "" {
			used[m.GetNamespace()] = true
		}
	}
	for _, cfg := range c.in.Configs {
		used[cfg.Namespace] = true
	}
	names := make([]string, 0, len(used))
	for ns := range used {
		if ns != "" && !declared[ns] {
			names = append(names, ns)
		}
	}
	sort.Strings(names)
	for _, ns := range names {
		c.in.Kube = append(c.in.Kube, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}
}

// newProxy is the proxy as istiod sees it after the proxy connects: node metadata as istio-agent
// sends it for this Pod.
func newProxy(p ProxyOptions, pod *corev1.Pod) *model.Proxy {
	typ := model.SidecarProxy
	if p.Router {
		typ = model.Router
	}
	ip := pod.Status.PodIP
	md := &model.NodeMetadata{
		IstioVersion: p.IstioVersion,
		Labels:       pod.Labels,
		Namespace:    pod.Namespace,
		ClusterID:    constants.DefaultClusterName,
		InstanceIPs:  []string{ip},
		WorkloadName: workloadName(pod),
		MeshID:       "cluster.local",
	}
	if !p.Router {
		md.InterceptionMode = model.InterceptionRedirect
	}
	return &model.Proxy{
		Type:            typ,
		ID:              pod.Name + "." + pod.Namespace,
		IPAddresses:     []string{ip},
		ConfigNamespace: pod.Namespace,
		DNSDomain:       pod.Namespace + ".svc.cluster.local",
		Labels:          pod.Labels,
		Metadata:        md,
		IstioVersion:    model.ParseIstioVersion(p.IstioVersion),
	}
}

// workloadName is the Pod's name without the "-0" this tool gives synthesized Pods.
func workloadName(pod *corev1.Pod) string {
	return strings.TrimSuffix(pod.Name, "-0")
}
