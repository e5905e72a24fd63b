package speaker

import (
	"testing"

	"github.com/google/go-cmp/cmp"
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
