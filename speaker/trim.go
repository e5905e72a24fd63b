package speaker

import (
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
