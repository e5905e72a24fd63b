package install_test

import (
	"context"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/heraldlb/herald/speaker/state"
)

// TestSpeakerWritesOnlyItsOwnState uses the credentials a speaker has on a
// node — its ServiceAccount's token bound to its pod, which the API server
// ties to the pod's node — and shows that they write that node's
// SpeakerState and nothing else: not another node's (the
// ValidatingAdmissionPolicy), not a Service's status (RBAC). A token bound
// to no pod names no node and writes no SpeakerState either.
func TestSpeakerWritesOnlyItsOwnState(t *testing.T) {
	if shared == nil {
		t.Skip("no lab: " + skipReason)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	admin := shared.Kube()
	for _, n := range []string{"hin-node-a", "hin-node-b"} {
		if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = admin.CoreV1().Nodes().Delete(context.Background(), n, metav1.DeleteOptions{}) })
	}
	pod, err := admin.CoreV1().Pods(heraldNamespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hin-speaker-a"},
		Spec: corev1.PodSpec{ServiceAccountName: "herald-speaker", NodeName: "hin-node-a",
			Containers: []corev1.Container{{Name: "speaker", Image: "herald-speaker:never-run"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.CoreV1().Pods(heraldNamespace).Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	})
	svc, err := admin.CoreV1().Services(otherNamespace).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "hin-web"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.CoreV1().Services(otherNamespace).Delete(context.Background(), svc.Name, metav1.DeleteOptions{})
	})

	onNode := tokenConfig(t, ctx, &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID})
	unbound := tokenConfig(t, ctx, nil)
	apply := func(rc *rest.Config, node string) error {
		u, err := state.ToUnstructured(&state.SpeakerState{ObjectMeta: metav1.ObjectMeta{Name: node}, Status: state.Status{Joined: true}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = dynClient(t, rc).Resource(state.GVR).Namespace(heraldNamespace).
			Apply(ctx, node, u, metav1.ApplyOptions{FieldManager: "herald-speaker", Force: true})
		return err
	}
	// The CRD may need a moment to be served after it is applied.
	deadline := time.Now().Add(30 * time.Second)
	for err := apply(onNode, "hin-node-a"); err != nil; err = apply(onNode, "hin-node-a") {
		if !apierrors.IsNotFound(err) || time.Now().After(deadline) {
			t.Fatalf("a speaker writes its own node's SpeakerState: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	adminRC, err := shared.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = dynClient(t, adminRC).Resource(state.GVR).Namespace(heraldNamespace).
			Delete(context.Background(), "hin-node-a", metav1.DeleteOptions{})
	})
	if err := apply(onNode, "hin-node-b"); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "its own node (hin-node-a)") {
		t.Errorf("a speaker on hin-node-a writes hin-node-b's SpeakerState: got %v, want Forbidden by herald-speaker-own-node", err)
	}
	if err := apply(unbound, "hin-node-a"); !apierrors.IsForbidden(err) {
		t.Errorf("a speaker token bound to no pod writes a SpeakerState: got %v, want Forbidden", err)
	}
	kube, err := kubernetes.NewForConfig(onNode)
	if err != nil {
		t.Fatal(err)
	}
	upd := svc.DeepCopy()
	upd.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.66"}}
	if _, err := kube.CoreV1().Services(otherNamespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("a speaker updates a Service's status: got %v, want Forbidden", err)
	}
	if _, err := kube.CoreV1().Services(otherNamespace).Update(ctx, upd, metav1.UpdateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("a speaker updates a Service: got %v, want Forbidden", err)
	}
}

// tokenConfig is a client configuration with a herald-speaker token, bound
// to the object ref (nil: to nothing).
func tokenConfig(t *testing.T, ctx context.Context, ref *authv1.BoundObjectReference) *rest.Config {
	t.Helper()
	tr, err := shared.Kube().CoreV1().ServiceAccounts(heraldNamespace).CreateToken(ctx, "herald-speaker", &authv1.TokenRequest{
		Spec: authv1.TokenRequestSpec{ExpirationSeconds: new(int64(600)), BoundObjectRef: ref},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, rc, err := shared.ServiceAccountKubeconfig(ctx, heraldNamespace, "herald-speaker")
	if err != nil {
		t.Fatal(err)
	}
	rc.BearerToken, rc.BearerTokenFile = tr.Status.Token, ""
	return rc
}

func dynClient(t *testing.T, rc *rest.Config) dynamic.Interface {
	t.Helper()
	d, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
