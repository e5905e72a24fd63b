package speaker

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestTrimSliceKeepsReadyNodes(t *testing.T) {
	ready, notReady := true, false
	node1, node2 := "node1", "node2"
	ep := func(node *string, r *bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{"10.244.1.5"}, NodeName: node, Conditions: discoveryv1.EndpointConditions{Ready: r}}
	}
	meta := metav1.ObjectMeta{Name: "web-abc", Namespace: "shop", UID: "u1", ResourceVersion: "7",
		Labels: map[string]string{discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: "x"}}
	kept := metav1.ObjectMeta{Name: "web-abc", Namespace: "shop", ResourceVersion: "7"}
	for _, tc := range []struct {
		name string
		in   *discoveryv1.EndpointSlice
		want *readyEndpoints
	}{
		{
			name: "ready endpoints by node, sorted, once each",
			in: &discoveryv1.EndpointSlice{ObjectMeta: meta, Endpoints: []discoveryv1.Endpoint{
				ep(&node2, &ready), ep(&node1, &notReady), ep(&node1, &ready), ep(&node2, &ready), ep(nil, &ready), ep(&node1, nil),
			}, Ports: []discoveryv1.EndpointPort{{}}},
			want: &readyEndpoints{ObjectMeta: kept, service: "web", nodes: []string{"node1", "node2"}},
		},
		{
			name: "no ready endpoint",
			in:   &discoveryv1.EndpointSlice{ObjectMeta: meta, Endpoints: []discoveryv1.Endpoint{ep(&node1, &notReady)}},
			want: &readyEndpoints{ObjectMeta: kept, service: "web"},
		},
		{
			name: "no Service",
			in:   &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "shop"}},
			want: &readyEndpoints{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "shop"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Trim(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(readyEndpoints{})); diff != "" {
				t.Errorf("Trim (-want +got):\n%s", diff)
			}
			again, _ := Trim(got)
			if again != got {
				t.Error("Trim of a trimmed slice made a new object; informers need it idempotent")
			}
		})
	}
}

func TestSameForSpeaker(t *testing.T) {
	cls := "x"
	svc := func(mut func(*corev1.Service)) *corev1.Service {
		s := &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}}
		s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.1"}}
		if mut != nil {
			mut(s)
		}
		return s
	}
	node := func(mut func(*corev1.Node)) *corev1.Node {
		n := &corev1.Node{}
		n.Labels = map[string]string{"a": "b"}
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.51.100.11"}}
		if mut != nil {
			mut(n)
		}
		return n
	}
	for _, tc := range []struct {
		name     string
		old, cur any
		same     bool
	}{
		{"service: a condition changed", svc(nil), svc(func(s *corev1.Service) { s.Status.Conditions = []metav1.Condition{{Type: "x"}} }), true},
		{"service: another address", svc(nil), svc(func(s *corev1.Service) { s.Status.LoadBalancer.Ingress[0].IP = "198.51.100.2" }), false},
		{"service: one more address", svc(nil), svc(func(s *corev1.Service) {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: "2001:db8::1"})
		}), false},
		{"service: class", svc(nil), svc(func(s *corev1.Service) { s.Spec.LoadBalancerClass = &cls }), false},
		{"service: policy", svc(nil), svc(func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal }), false},
		{"service: type", svc(nil), svc(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP }), false},
		{"slice: same nodes", &readyEndpoints{service: "a", nodes: []string{"n1"}}, &readyEndpoints{service: "a", nodes: []string{"n1"}}, true},
		{"slice: other nodes", &readyEndpoints{service: "a", nodes: []string{"n1"}}, &readyEndpoints{service: "a", nodes: []string{"n2"}}, false},
		{"node: heartbeat", node(nil), node(func(n *corev1.Node) {
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
		}), true},
		{"node: label", node(nil), node(func(n *corev1.Node) { n.Labels = map[string]string{"a": "c"} }), false},
		{"node: NetworkUnavailable", node(nil), node(func(n *corev1.Node) {
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionTrue}}
		}), false},
		{"node: address", node(nil), node(func(n *corev1.Node) { n.Status.Addresses[0].Address = "198.51.100.12" }), false},
		{"anything else", &corev1.ConfigMap{}, &corev1.ConfigMap{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sameForSpeaker(tc.old, tc.cur); got != tc.same {
				t.Errorf("sameForSpeaker = %v, want %v", got, tc.same)
			}
		})
	}
}
