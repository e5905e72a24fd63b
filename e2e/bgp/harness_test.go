// Package bgp holds the end-to-end tests of Herald in BGP mode: a real
// controller and real speakers in the lab peer with FRR in the router
// namespace, and a client behind the router reaches Services through the
// routes the nodes advertise.
package bgp_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/heraldlb/herald/e2e/lab"
	"github.com/heraldlb/herald/speaker"
)

var (
	shared     *lab.Lab
	skipReason string
)

// metricsPort is where each speaker serves /metrics on its node's address.
const metricsPort = 7473 // manifests/speaker.yaml: --metrics-addr=:7473

// Address plan: every test's Service asks for its own addresses in pool
// "bgp" (off every lab subnet, so only the routes the nodes advertise lead
// there); pool "many" serves the 100-Service test by name.
const (
	poolsYAML = `pools:
- name: bgp
  addresses: ["198.19.0.0/26", "2001:db8:100::/120"]
  autoAssign: false
- name: many
  addresses: ["198.19.1.0/24"]
  autoAssign: false
`
	manyPool = "198.19.1.0/24"
)

func TestMain(m *testing.M) {
	os.Exit(lab.TestMain(m, lab.Config{Prefix: "hbgpe", BIRD: true}, startHerald, func(l *lab.Lab, skip string) { shared, skipReason = l, skip }))
}

// startHerald installs Herald from the manifests with pools but no peers:
// each test brings its own peering.
func startHerald(ctx context.Context, l *lab.Lab) error {
	if err := l.ApplyHeraldConfig(ctx, poolsYAML); err != nil {
		return err
	}
	// Installed as a user installs it: manifests/ as they are.
	img, err := l.PushImages(ctx, "lab")
	if err != nil {
		return err
	}
	return l.InstallHerald(ctx, lab.Install{Images: img})
}

// startSpeaker lets the kubelet start the node's speaker again after
// stopSpeaker.
func startSpeaker(ctx context.Context, l *lab.Lab, node string) (lab.Proc, error) {
	return l.StartSpeaker(ctx, node)
}

func needLab(t *testing.T) *lab.Lab {
	t.Helper()
	if shared == nil {
		t.Skip("no lab: " + skipReason)
	}
	return shared
}

// scenario is one test's BGP arrangement: how the router peers with the
// nodes, and the matching Herald configuration.
type scenario struct {
	lab.Peering
	// SpeakerPassword is the password the speakers read from their Secret
	// ("" : the peer has no passwordSecret).
	SpeakerPassword string
	GracefulRestart bool
	LocalPref       uint32
	// Communities: the advertisement carries 64500:100, large 64500:1:2
	// and the named community no-export.
	Communities bool
}

const passwordSecret = speaker.PasswordSecret // the name Role herald-speaker lets the speaker read

// yaml is the Herald configuration for s: one peer "tor", one advertisement
// of pool "bgp" to it.
func (s scenario) yaml() string {
	var b strings.Builder
	b.WriteString(poolsYAML)
	fmt.Fprintf(&b, "bgpPeers:\n- name: tor\n  address: %s\n  asn: %d\n  myASN: %d\n  holdTime: 9s\n  connectTime: 1s\n",
		s.RouterAddress(), lab.RouterASN, s.NodeASN)
	if s.Multihop {
		b.WriteString("  ebgpMultihop: true\n")
	}
	if s.SpeakerPassword != "" {
		fmt.Fprintf(&b, "  passwordSecret: {name: %s, key: password}\n", passwordSecret)
	}
	if s.BFD {
		b.WriteString("  bfdProfile: fast\n")
	}
	if s.GracefulRestart {
		b.WriteString("  gracefulRestart: true\n")
	}
	b.WriteString("bfdProfiles:\n- {name: fast, receiveInterval: 100ms, transmitInterval: 100ms, detectMultiplier: 3}\n")
	b.WriteString("communities:\n- {name: no-export, value: \"65535:65281\"}\n")
	b.WriteString("bgpAdvertisements:\n- name: default\n  pools: [bgp, many]\n  peers: [tor]\n")
	if s.LocalPref != 0 {
		fmt.Fprintf(&b, "  localPref: %d\n", s.LocalPref)
	}
	if s.Communities {
		b.WriteString("  communities: [\"64500:100\", \"large:64500:1:2\", no-export]\n")
	}
	return b.String()
}

// use sets the scenario up (router first, so the speakers' first dial
// succeeds) and undoes it when the test ends. With wantUp it waits until
// every node's session is Established.
func use(t *testing.T, l *lab.Lab, s scenario, wantUp bool) {
	t.Helper()
	ctx := t.Context()
	if err := l.PeerNodes(ctx, s.Peering); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.UnpeerNodes(context.Background()); err != nil {
			t.Errorf("restore the router: %v", err)
		}
	})
	configure(t, l, s.SpeakerPassword, s.yaml())
	if wantUp {
		if _, err := l.WaitEstablished(ctx, l.PeerAddresses(s.Peering), 30*time.Second); err != nil {
			t.Fatalf("%v (speaker logs: %s)", err, l.LogPath(lab.SpeakerName("node1")))
		}
	}
}

// configure gives Herald the password Secret (when password is set) and
// the configuration doc, and restores both when the test ends (cleanups
// run last-in first-out: Herald's side before the router's).
func configure(t *testing.T, l *lab.Lab, password, doc string) {
	t.Helper()
	ctx := t.Context()
	t.Cleanup(func() {
		ctx := context.Background()
		if err := l.ApplyHeraldConfig(ctx, poolsYAML); err != nil {
			t.Errorf("restore the Herald configuration: %v", err)
		}
		_ = l.Kube().CoreV1().Secrets(lab.HeraldNamespace).Delete(ctx, passwordSecret, metav1.DeleteOptions{})
	})
	if password != "" {
		sec := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: lab.HeraldNamespace, Name: passwordSecret},
			Data:       map[string][]byte{"password": []byte(password)},
		}
		_, err := l.Kube().CoreV1().Secrets(lab.HeraldNamespace).Create(ctx, sec, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			_, err = l.Kube().CoreV1().Secrets(lab.HeraldNamespace).Update(ctx, sec, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := l.ApplyHeraldConfig(ctx, doc); err != nil {
		t.Fatal(err)
	}
}

// app deploys pods (name -> node) labelled app=<name> in namespace ns and a
// LoadBalancer Service for them asking for the given addresses.
func app(t *testing.T, l *lab.Lab, ns, name, ips string, local bool, pods map[string]string) {
	t.Helper()
	ctx := t.Context()
	for pod, node := range pods {
		if _, err := l.AddPod(ctx, lab.PodSpec{Namespace: ns, Name: pod, Node: node, Labels: map[string]string{"app": name}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.DeletePod(context.Background(), ns, pod) })
	}
	if err := createService(ctx, l, ns, name, name, map[string]string{"herald.dev/ips": ips}, local); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Kube().CoreV1().Services(ns).Delete(context.Background(), name, metav1.DeleteOptions{}) })
}

// createService creates a dual-stack LoadBalancer Service selecting app=selectApp.
func createService(ctx context.Context, l *lab.Lab, ns, name, selectApp string, annotations map[string]string, local bool) error {
	policy := corev1.IPFamilyPolicyPreferDualStack
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeLoadBalancer,
			Selector:       map[string]string{"app": selectApp},
			IPFamilyPolicy: &policy,
			Ports:          []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	if local {
		svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	_, err := l.Kube().CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	return err
}

// getFromExternal fetches the VIP from the client behind the router (a new
// connection each time) until it answers or timeout passes.
func getFromExternal(t *testing.T, l *lab.Lab, vip string, timeout time.Duration) string {
	t.Helper()
	body, err := l.HTTPGetEventually(t.Context(), l.ExternalNS(), "http://"+net.JoinHostPort(vip, "80")+"/", timeout)
	if err != nil {
		t.Fatalf("GET %s from the external client: %v", vip, err)
	}
	return body
}

// speakerMetrics fetches a node's speaker's metrics.
func speakerMetrics(ctx context.Context, l *lab.Lab, node string) (string, error) {
	n, _ := l.Node(node)
	return l.HTTPGet(ctx, n.NS, "http://"+netip.AddrPortFrom(n.IPv4, metricsPort).String()+"/metrics")
}

// restartSpeakerIfGone starts the node's speaker again if a test stopped it.
func restartSpeakerIfGone(t *testing.T, l *lab.Lab, node string) {
	if p, ok := l.Proc(lab.SpeakerName(node)); ok && p.Alive() {
		return
	}
	if p, ok := l.Proc(lab.SpeakerName(node)); ok {
		l.ForgetProcess(p)
	}
	if _, err := startSpeaker(context.Background(), l, node); err != nil {
		t.Errorf("restart the speaker on %s: %v", node, err)
	}
}

// stopSpeaker sends SIGTERM to the node's speaker and waits (at most
// timeout) until it has exited; it returns when it exited.
func stopSpeaker(t *testing.T, l *lab.Lab, node string, timeout time.Duration) time.Time {
	t.Helper()
	l.HoldContainer(lab.SpeakerName(node)) // until startSpeaker
	p, ok := l.Proc(lab.SpeakerName(node))
	if !ok {
		t.Fatalf("no speaker on %s", node)
	}
	if err := p.Signal(15); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(timeout)
	for p.Alive() {
		if time.Now().After(deadline) {
			t.Fatalf("the speaker on %s still runs %s after SIGTERM", node, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	exited := time.Now()
	l.ForgetProcess(p)
	return exited
}
