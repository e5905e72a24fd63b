package speaker

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Trim is an informer transform that keeps only what the speaker reads:
// Services are copied into fresh small objects (so nothing else of the
// decoded one stays reachable), EndpointSlices become readyEndpoints, and
// Nodes lose their bulk. With 10,000 Services and their slices the caches
// then hold about 10 MiB. Trim is idempotent, as informers require.
func Trim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Service:
		return trimService(o), nil
	case *discoveryv1.EndpointSlice:
		return trimSlice(o), nil
	case *corev1.Node:
		o.ManagedFields = nil
		o.Annotations = nil
		o.Status.Images = nil
		o.Status.VolumesInUse, o.Status.VolumesAttached = nil, nil
	}
	return obj, nil
}

// trimMeta keeps what the informer's store needs: the key, and the
// resource version by which it skips updates that change nothing.
func trimMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, ResourceVersion: m.ResourceVersion, Generation: m.Generation}
}

func trimService(s *corev1.Service) *corev1.Service {
	out := &corev1.Service{ObjectMeta: trimMeta(s.ObjectMeta)}
	out.Spec.Type = s.Spec.Type
	out.Spec.LoadBalancerClass = s.Spec.LoadBalancerClass
	out.Spec.ExternalTrafficPolicy = s.Spec.ExternalTrafficPolicy
	if n := len(s.Status.LoadBalancer.Ingress); n > 0 {
		out.Status.LoadBalancer.Ingress = make([]corev1.LoadBalancerIngress, n)
		for i, in := range s.Status.LoadBalancer.Ingress {
			out.Status.LoadBalancer.Ingress[i].IP = in.IP
		}
	}
	return out
}

// readyEndpoints is what the speaker keeps of an EndpointSlice, a third of
// the smallest trimmed slice: its Service and the nodes of its ready
// endpoints. The embedded ObjectMeta gives the informer's store its key.
type readyEndpoints struct {
	metav1.ObjectMeta
	service string   // the kubernetes.io/service-name label; "" for none
	nodes   []string // sorted, without duplicates
}

func trimSlice(es *discoveryv1.EndpointSlice) *readyEndpoints {
	return &readyEndpoints{ObjectMeta: trimMeta(es.ObjectMeta), service: es.Labels[discoveryv1.LabelServiceName], nodes: ReadyNodes(es)}
}

// ReadyNodes lists the nodes with a ready endpoint in es, sorted, without
// duplicates: what the speakers count as "a ready endpoint on the node".
func ReadyNodes(es *discoveryv1.EndpointSlice) []string {
	var nodes []string
	for _, e := range es.Endpoints {
		if e.NodeName != nil && e.Conditions.Ready != nil && *e.Conditions.Ready && !slices.Contains(nodes, *e.NodeName) {
			nodes = append(nodes, *e.NodeName)
		}
	}
	slices.Sort(nodes)
	return nodes
}

// sameForSpeaker reports whether an update changes nothing the speaker
// decides on: a Service whose conditions or annotations changed (the
// controller writes Announced conditions for every address a takeover
// moved), an EndpointSlice whose ready nodes stayed, a Node's heartbeat.
// Without this, a takeover of 1,000 addresses made every speaker decide
// again for each of the 1,000 status writes it caused.
func sameForSpeaker(old, cur any) bool {
	switch o := old.(type) {
	case *corev1.Service:
		c, ok := cur.(*corev1.Service)
		return ok && sameService(o, c)
	case *readyEndpoints:
		c, ok := cur.(*readyEndpoints)
		return ok && o.service == c.service && slices.Equal(o.nodes, c.nodes)
	case *corev1.Node:
		c, ok := cur.(*corev1.Node)
		return ok && sameNode(o, c)
	}
	return false
}

func sameService(a, b *corev1.Service) bool {
	if a.Spec.Type != b.Spec.Type || a.Spec.ExternalTrafficPolicy != b.Spec.ExternalTrafficPolicy ||
		!equalPtr(a.Spec.LoadBalancerClass, b.Spec.LoadBalancerClass) ||
		len(a.Status.LoadBalancer.Ingress) != len(b.Status.LoadBalancer.Ingress) {
		return false
	}
	for i, in := range a.Status.LoadBalancer.Ingress {
		if in.IP != b.Status.LoadBalancer.Ingress[i].IP {
			return false
		}
	}
	return true
}

func sameNode(a, b *corev1.Node) bool {
	if !maps.Equal(a.Labels, b.Labels) || networkUnavailable(a) != networkUnavailable(b) ||
		len(a.Status.Addresses) != len(b.Status.Addresses) {
		return false
	}
	for i, ad := range a.Status.Addresses {
		if ad != b.Status.Addresses[i] {
			return false
		}
	}
	return true
}

func networkUnavailable(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeNetworkUnavailable {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func equalPtr(a, b *string) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}
