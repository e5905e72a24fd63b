// Package explain tests `kubectl herald explain` and `status` against a
// lab running Herald as installed from manifests/: for each way a Service
// can fail to be reachable, explain names the cause. The package holds
// only tests.
package explain_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"

	"github.com/heraldlb/herald/controller/report"
	"github.com/heraldlb/herald/e2e/lab"
)

var (
	shared     *lab.Lab
	skipReason string
)

// labConfig has a pool for each case: lan (automatic, L2 from every
// node), tiny (one address, for exhaustion), edge (L2 from node3 only),
// dark (no advertisement), routed (BGP to the router) and cut (BGP to a
// peer that is not there).
var labConfig = fmt.Sprintf(`pools:
- name: lan
  addresses: ["198.51.100.200-198.51.100.209"]
- name: tiny
  addresses: ["198.51.100.235/32"]
  autoAssign: false
- name: edge
  addresses: ["198.51.100.230-198.51.100.231"]
  autoAssign: false
- name: dark
  addresses: ["198.51.100.240/32"]
  autoAssign: false
- name: routed
  addresses: ["198.18.10.0/28"]
  autoAssign: false
- name: cut
  addresses: ["198.18.20.0/28"]
  autoAssign: false
l2Advertisements:
- name: lan
  pools: [lan, tiny]
- name: edge
  pools: [edge]
  nodeSelector:
    matchLabels: {kubernetes.io/hostname: node3}
bgpPeers:
- name: tor
  address: %s
  asn: %d
  myASN: %d
  holdTime: 9s
  connectTime: 1s
- name: gone
  address: 198.51.100.250
  asn: 64999
  myASN: %d
  connectTime: 1s
bgpAdvertisements:
- name: routed
  pools: [routed]
  peers: [tor]
- name: cut
  pools: [cut]
  peers: [gone]
`, lab.Router4, lab.RouterASN, lab.RouterASN, lab.RouterASN)

func TestMain(m *testing.M) {
	os.Exit(lab.TestMain(m, lab.Config{Prefix: "hex"}, startHerald, func(l *lab.Lab, skip string) { shared, skipReason = l, skip }))
}

// startHerald installs Herald once for every test (one controller replica,
// a short hold-down) and peers the router with every node.
func startHerald(ctx context.Context, l *lab.Lab) error {
	if err := l.ApplyHeraldConfig(ctx, labConfig); err != nil {
		return err
	}
	if err := l.PeerNodes(ctx, lab.Peering{NodeASN: lab.RouterASN}); err != nil {
		return err
	}
	img, err := l.PushImages(ctx, "lab")
	if err != nil {
		return err
	}
	return l.InstallHerald(ctx, lab.Install{Images: img, Overlay: "e2e/overlays/lab"})
}

func needLab(t *testing.T) *lab.Lab {
	t.Helper()
	if shared == nil {
		t.Skip("no lab: " + skipReason)
	}
	return shared
}

const ns = "shop"

// service describes a test's Service.
type service struct {
	name        string
	annotations map[string]string
	local       bool
	pods        []string // nodes to run a ready pod on
}

// deploy runs the Service's pods and creates it; both go when the test ends.
func deploy(t *testing.T, l *lab.Lab, s service) {
	t.Helper()
	ctx := t.Context()
	if _, err := l.Kube().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	for _, node := range s.pods {
		pod := s.name + "-" + node
		if _, err := l.AddPod(ctx, lab.PodSpec{Namespace: ns, Name: pod, Node: node, Labels: map[string]string{"app": s.name}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.DeletePod(context.Background(), ns, pod) })
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: s.name, Annotations: s.annotations},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": s.name},
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	if s.local {
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	if _, err := l.Kube().CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = l.Kube().CoreV1().Services(ns).Delete(context.Background(), s.name, metav1.DeleteOptions{})
	})
}

// read takes the snapshot the CLI takes (report.ReadCluster, as
// `kubectl herald` calls it), for explaining name ("" for status).
func read(t *testing.T, l *lab.Lab, name string) *report.Cluster {
	t.Helper()
	rc, err := l.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	key := ""
	if name != "" {
		key = ns + "/" + name
	}
	c, err := report.ReadCluster(t.Context(), l.Kube(), dyn, lab.HeraldNamespace, key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// explainUntil explains the Service until step gives reason (a problem or
// warning) and, when reachable is set, the verdict agrees; Herald converges
// in the background, so the first answers may be older news.
func explainUntil(t *testing.T, l *lab.Lab, name, step, reason string, reachable bool, timeout time.Duration) report.Explanation {
	t.Helper()
	start := time.Now()
	var x report.Explanation
	for {
		var err error
		x, err = report.Explain(read(t, l, name), ns, name)
		if err != nil {
			t.Fatal(err)
		}
		if stepReason(x, step) == reason && x.Reachable == reachable {
			t.Logf("explain %s named %s at %s after %v:\n%s", name, reason, step, time.Since(start).Round(time.Millisecond), render(t, x))
			return x
		}
		if time.Since(start) > timeout {
			t.Fatalf("explain %s: want %s at step %s (reachable %v) within %v; last:\n%s", name, reason, step, reachable, timeout, render(t, x))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// stepReason is the reason of a step's problem or warning, "" when it has none.
func stepReason(x report.Explanation, step string) string {
	for _, s := range x.Steps {
		if s.Name == step && (s.Result == report.ResultProblem || s.Result == report.ResultWarning) {
			return s.Reason
		}
	}
	return ""
}

func render(t *testing.T, v report.Tabler) string {
	t.Helper()
	var b strings.Builder
	if err := report.Write(&b, "table", v); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
