// Package layer2 holds the end-to-end tests of Herald in layer-2 mode: a
// real controller and real speakers in the lab, a client that resolves
// Service addresses with ARP/NDP on the wire and reaches pods through the
// owner node's kube-proxy.
package layer2_test

import (
	"context"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/heraldlb/herald/e2e/lab"
)

var (
	shared     *lab.Lab
	skipReason string
	macToNode  = map[string]string{}
)

// labConfig: one pool on the lab network for both families.
const labConfig = `pools:
- name: lan
  addresses: ["198.51.100.200-198.51.100.250", "2001:db8:1::200-2001:db8:1::250"]
l2Advertisements:
- name: lan
  pools: [lan]
`

func TestMain(m *testing.M) {
	os.Exit(lab.TestMain(m, lab.Config{Prefix: "hl2"}, startHerald, func(l *lab.Lab, skip string) { shared, skipReason = l, skip }))
}

func startHerald(ctx context.Context, l *lab.Lab) error {
	if err := l.ApplyHeraldConfig(ctx, labConfig); err != nil {
		return err
	}
	for _, n := range l.Nodes {
		mac, err := l.MAC(ctx, n.NS, "eth0")
		if err != nil {
			return err
		}
		macToNode[mac] = n.Name
	}
	// Installed as a user installs it, with the overlay that shortens the
	// hold-down to 2 s and runs one controller replica.
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

// app deploys pods (name -> node) labelled app=<name> in namespace ns and a
// LoadBalancer Service for them asking for the given addresses.
func app(t *testing.T, l *lab.Lab, ns, name string, ips string, local bool, pods map[string]string) {
	t.Helper()
	ctx := t.Context()
	for pod, node := range pods {
		if _, err := l.AddPod(ctx, lab.PodSpec{Namespace: ns, Name: pod, Node: node, Labels: map[string]string{"app": name}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.DeletePod(context.Background(), ns, pod) })
	}
	policy := corev1.IPFamilyPolicyPreferDualStack
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{"herald.dev/ips": ips}},
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeLoadBalancer,
			Selector:       map[string]string{"app": name},
			IPFamilyPolicy: &policy,
			Ports:          []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	if local {
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	if _, err := l.Kube().CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Kube().CoreV1().Services(ns).Delete(context.Background(), name, metav1.DeleteOptions{}) })
}

// arpReply matches a reply line of Debian's arping (Thomas Habets'):
// "42 bytes from 5a:83:d8:a6:2e:27 (198.51.100.201): index=0 time=...".
var arpReply = regexp.MustCompile(`bytes from ([0-9A-Fa-f:]{17}) \(`)

// answerer resolves vip from the client on the wire and returns the node
// whose MAC answered, or "" if nobody did.
func answerer(t *testing.T, l *lab.Lab, vip string) string {
	t.Helper()
	ctx := t.Context()
	if !strings.Contains(vip, ":") {
		out, _ := l.Exec(ctx, l.ClientNS(), "arping", "-c", "1", "-w", "1", "-I", "eth0", vip)
		m := arpReply.FindStringSubmatch(out)
		if m == nil {
			return ""
		}
		return macToNode[strings.ToLower(m[1])]
	}
	_, _ = l.Exec(ctx, l.ClientNS(), "ip", "-6", "neigh", "flush", "to", vip)
	_, _ = l.Exec(ctx, l.ClientNS(), "ping", "-6", "-c", "1", "-W", "1", vip)
	neigh, err := l.Neighbours(ctx, l.ClientNS())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range neigh {
		if n.IP.String() == vip && n.MAC != "" && !strings.Contains(strings.Join(n.State, ","), "FAILED") {
			return macToNode[strings.ToLower(n.MAC)]
		}
	}
	return ""
}

// waitAnswerer waits until want answers for vip ("" : until nobody does)
// and has kept answering alone for longer than the speakers' hand-back
// (1 s): until then the previous owner may still answer first.
func waitAnswerer(t *testing.T, l *lab.Lab, vip, want string, timeout time.Duration) {
	t.Helper()
	const settle = 1500 * time.Millisecond
	deadline := time.Now().Add(timeout + settle)
	got := ""
	var since time.Time
	for time.Now().Before(deadline) {
		got = answerer(t, l, vip)
		switch {
		case got != want:
			since = time.Time{}
		case since.IsZero():
			since = time.Now()
		case time.Since(since) >= settle:
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s is answered by %q, want %q (for %v)", vip, got, want, settle)
}

// get fetches the VIP from the client (a fresh connection each time).
func get(t *testing.T, l *lab.Lab, vip string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	return l.HTTPGet(ctx, l.ClientNS(), "http://"+net.JoinHostPort(vip, "80")+"/")
}

func getEventually(t *testing.T, l *lab.Lab, vip string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	var body string
	for time.Now().Before(deadline) {
		if body, err = get(t, l, vip); err == nil {
			return body
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("GET %s from the client: %v", vip, err)
	return ""
}
