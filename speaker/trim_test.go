package speaker_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/heraldlb/herald/speaker"
)

func TestTrimKeepsWhatTheSpeakerReads(t *testing.T) {
	class := "herald"
	meta := metav1.ObjectMeta{Name: "web", Namespace: "shop", ResourceVersion: "7", Generation: 2}
	for _, tc := range []struct {
		name     string
		in, want any
	}{
		{
			name: "service",
			in: &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: "u1", ResourceVersion: "7", Generation: 2,
					Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"a": "b"}},
				Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: &class, ClusterIP: "10.96.0.10",
					ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal, Ports: []corev1.ServicePort{{Port: 80}}},
				Status: corev1.ServiceStatus{
					LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "198.51.100.200", Hostname: "x"}}},
					Conditions:   []metav1.Condition{{Type: "herald.dev/IPAllocated"}, {Type: "herald.dev/Announced"}},
				},
			},
			want: &corev1.Service{
				ObjectMeta: meta,
				Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: &class,
					ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal},
				Status: corev1.ServiceStatus{
					LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "198.51.100.200"}}},
				},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := speaker.Trim(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Trim (-want +got):\n%s", diff)
			}
		})
	}
}
