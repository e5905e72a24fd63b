package report

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/speaker/state"
)

// Names of Herald's objects in its namespace, as manifests/ installs them.
const (
	// ConfigName is the user's ConfigMap (key config.Key).
	ConfigName = "herald"
	// LeaseName is the controller's leader Lease (herald-controller's
	// default --leader-elect Lease name).
	LeaseName = "herald-controller"
	// ControllerSelector and SpeakerSelector select the pods of
	// manifests/controller.yaml and manifests/speaker.yaml.
	ControllerSelector = "app=herald-controller"
	SpeakerSelector    = "app=herald-speaker"
	// KubeProxyConfigMap is where kubeadm keeps kube-proxy's configuration
	// (namespace kube-system, key KubeProxyConfigKey).
	KubeProxyConfigMap = "kube-proxy"
	KubeProxyConfigKey = "config.conf"
)

// Cluster is what `kubectl herald status` and `explain` read from the API:
// a snapshot, so that both are pure functions of it. Absent objects are nil.
type Cluster struct {
	Namespace string    // Herald's
	Now       time.Time // when it was read: ages are relative to it

	ConfigMap, Record *corev1.ConfigMap
	Lease             *coordinationv1.Lease
	ControllerPods    []corev1.Pod
	SpeakerPods       []corev1.Pod
	Nodes             []corev1.Node
	Namespaces        []corev1.Namespace
	Services          []corev1.Service
	// Speakers are the SpeakerStates; SpeakersMissing says why there are
	// none to read ("" when they were read, even if there are none).
	Speakers        []state.SpeakerState
	SpeakersMissing string

	// Read for explain only: the EndpointSlices of the Service explained and
	// of the Services sharing its addresses, the Service's Events, and
	// kube-proxy's ConfigMap (nil: the cluster keeps none).
	EndpointSlices []discoveryv1.EndpointSlice
	Events         []corev1.Event
	KubeProxy      *corev1.ConfigMap
}

// ReadCluster reads the snapshot status needs from the cluster; with
// explain set (namespace/name of a Service) also what explaining it needs.
// It only reads.
func ReadCluster(ctx context.Context, kube kubernetes.Interface, dyn dynamic.Interface, namespace, explain string) (*Cluster, error) {
	c := &Cluster{Namespace: namespace, Now: time.Now()}
	cms := kube.CoreV1().ConfigMaps(namespace)
	var err error
	if c.ConfigMap, err = optional(cms.Get(ctx, ConfigName, metav1.GetOptions{})); err != nil {
		return nil, fmt.Errorf("read ConfigMap %s/%s: %w", namespace, ConfigName, err)
	}
	if c.Record, err = optional(cms.Get(ctx, config.RecordName(ConfigName), metav1.GetOptions{})); err != nil {
		return nil, fmt.Errorf("read ConfigMap %s/%s: %w", namespace, config.RecordName(ConfigName), err)
	}
	if c.Lease, err = optional(kube.CoordinationV1().Leases(namespace).Get(ctx, LeaseName, metav1.GetOptions{})); err != nil {
		return nil, fmt.Errorf("read Lease %s/%s: %w", namespace, LeaseName, err)
	}
	for sel, into := range map[string]*[]corev1.Pod{ControllerSelector: &c.ControllerPods, SpeakerSelector: &c.SpeakerPods} {
		pods, err := kube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return nil, fmt.Errorf("list pods %s in %s: %w", sel, namespace, err)
		}
		*into = pods.Items
	}
	nodes, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list Nodes: %w", err)
	}
	c.Nodes = nodes.Items
	nss, err := kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list Namespaces: %w", err)
	}
	c.Namespaces = nss.Items
	svcs, err := kube.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list Services: %w", err)
	}
	c.Services = svcs.Items
	list, err := dyn.Resource(state.GVR).Namespace(namespace).List(ctx, metav1.ListOptions{})
	switch {
	case apierrors.IsNotFound(err):
		c.SpeakersMissing = "the cluster has no " + state.Resource + "." + state.Group + " resource (speakers publish no state)"
	case err != nil:
		c.SpeakersMissing = fmt.Sprintf("%s not readable: %v", state.Resource, err)
	default:
		for i := range list.Items {
			s, err := state.FromUnstructured(&list.Items[i])
			if err != nil {
				return nil, err
			}
			c.Speakers = append(c.Speakers, *s)
		}
	}
	if explain == "" {
		return c, nil
	}
	return c, c.readForExplain(ctx, kube, explain)
}

func (c *Cluster) readForExplain(ctx context.Context, kube kubernetes.Interface, key string) error {
	ns, name, _ := strings.Cut(key, "/")
	target := c.Service(ns, name)
	if target == nil {
		return fmt.Errorf("service %s not found", key)
	}
	for _, svc := range append([]*corev1.Service{target}, c.sharers(target)...) {
		slices, err := kube.DiscoveryV1().EndpointSlices(svc.Namespace).List(ctx, metav1.ListOptions{
			LabelSelector: discoveryv1.LabelServiceName + "=" + svc.Name,
		})
		if err != nil {
			return fmt.Errorf("list EndpointSlices of %s/%s: %w", svc.Namespace, svc.Name, err)
		}
		c.EndpointSlices = append(c.EndpointSlices, slices.Items...)
	}
	events, err := kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.Set{
		"involvedObject.kind": "Service", "involvedObject.name": name,
	}.String()})
	if err != nil {
		return fmt.Errorf("list Events of %s: %w", key, err)
	}
	c.Events = events.Items
	c.KubeProxy, err = optional(kube.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, KubeProxyConfigMap, metav1.GetOptions{}))
	if err != nil && !apierrors.IsForbidden(err) {
		return fmt.Errorf("read ConfigMap %s/%s: %w", metav1.NamespaceSystem, KubeProxyConfigMap, err)
	}
	return nil
}

// optional turns a NotFound answer into nil.
func optional[T any](obj *T, err error) (*T, error) {
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return obj, nil
}

// Service returns the Service namespace/name, or nil.
func (c *Cluster) Service(namespace, name string) *corev1.Service {
	for i := range c.Services {
		if s := &c.Services[i]; s.Namespace == namespace && s.Name == name {
			return s
		}
	}
	return nil
}

// sharers are the other Services showing one of svc's addresses.
func (c *Cluster) sharers(svc *corev1.Service) []*corev1.Service {
	mine := ingressAddrs(svc)
	var out []*corev1.Service
	for i := range c.Services {
		o := &c.Services[i]
		if o == svc || (o.Namespace == svc.Namespace && o.Name == svc.Name) {
			continue
		}
		if slices.ContainsFunc(ingressAddrs(o), func(a netip.Addr) bool { return slices.Contains(mine, a) }) {
			out = append(out, o)
		}
	}
	return out
}

// lbClass is the spec.loadBalancerClass Herald serves, from the
// controller's --lb-class flag ("" when it serves Services without one).
func (c *Cluster) lbClass() string {
	for _, p := range c.ControllerPods {
		for _, ctr := range p.Spec.Containers {
			for _, a := range append(slices.Clone(ctr.Command), ctr.Args...) {
				if v, ok := strings.CutPrefix(a, "--lb-class="); ok {
					return v
				}
			}
		}
	}
	return ""
}

// serves reports whether Herald serves svc: a LoadBalancer of its class,
// or one it has marked as allocated.
func (c *Cluster) serves(svc *corev1.Service) bool {
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer && cmp.Or(ptrValue(svc.Spec.LoadBalancerClass), "") == c.lbClass() {
		return true
	}
	return svc.Annotations[annotationAllocatedFrom] != ""
}

func ptrValue[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// ingressAddrs are the addresses in a Service's status.
func ingressAddrs(svc *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(in.IP); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// loadConfig reads the configuration the way the controller and every
// speaker do.
func (c *Cluster) loadConfig() config.State {
	var l config.Loader
	return l.Load(c.ConfigMap, c.Record)
}

// membership says which nodes the speakers see alive: a node is alive when
// more than half of the joined speakers count it among their members.
// voters is how many joined speakers had a say; 0 means no speaker
// publishes its state, and then alive is nil.
func (c *Cluster) membership() (alive map[string]bool, seen map[string]int, voters int) {
	seen = map[string]int{}
	for _, s := range c.Speakers {
		if !s.Status.Joined {
			continue
		}
		voters++
		for _, m := range s.Status.Members {
			seen[m]++
		}
	}
	if voters == 0 {
		return nil, seen, 0
	}
	alive = map[string]bool{}
	for n, k := range seen {
		alive[n] = 2*k > voters
	}
	return alive, seen, voters
}

// speakerPodReady reports whether node runs a ready speaker pod.
func (c *Cluster) speakerPodReady(node string) bool {
	return slices.ContainsFunc(c.SpeakerPods, func(p corev1.Pod) bool { return p.Spec.NodeName == node && podReady(p) })
}

func (c *Cluster) speakerState(node string) *state.SpeakerState {
	for i := range c.Speakers {
		if c.Speakers[i].Name == node {
			return &c.Speakers[i]
		}
	}
	return nil
}

func podReady(p corev1.Pod) bool {
	if p.DeletionTimestamp != nil {
		return false
	}
	return slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
		return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
	})
}

// nodeNames lists the nodes, from Node objects and speaker states, sorted.
func (c *Cluster) nodeNames() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Name)
	}
	for _, s := range c.Speakers {
		out = append(out, s.Name)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
