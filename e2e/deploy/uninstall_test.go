package deploy

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/heraldlb/herald/e2e/lab"
)

func TestUninstallWithdrawsEverything(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	v1 := images(t, l, "v1")
	peerRouter(t, l)
	// Without graceful restart: with it the router keeps the routes, stale,
	// for the speakers' restart time (60 s) after they exit.
	config := "pools:\n" + lanPool + bgpPool + l2Advertisement + bgpPeerYAML(false) + bgpAdvertisement
	in := install(t, l, config, v1)
	if _, err := l.WaitEstablished(ctx, l.PeerAddresses(peering), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	const ns = "uninstall"
	l2v4, l2v6, routed := "198.51.100.221", "2001:db8:1::221", "198.19.0.21"
	app(t, l, ns, "l2", l2v4+","+l2v6)
	app(t, l, ns, "bgp", routed)
	for _, vip := range []string{l2v4, l2v6} {
		getEventually(t, l, l.ClientNS(), vip, 30*time.Second)
		if answers(t, l, vip) == "" {
			t.Fatalf("nobody answers for %s while Herald runs", vip)
		}
	}
	l.ExpectRoute(t, routed, l.NodeAddrs(false), 30*time.Second)
	getEventually(t, l, l.ExternalNS(), routed, 30*time.Second)

	start := time.Now()
	logFrom := map[string]int64{}
	for _, n := range l.Nodes {
		if fi, err := os.Stat(l.LogPath(lab.SpeakerName(n.Name))); err == nil {
			logFrom[n.Name] = fi.Size()
		}
	}
	if err := l.UninstallHerald(ctx, *in); err != nil {
		t.Fatal(err)
	}
	t.Logf("uninstalled in %v", time.Since(start).Round(time.Millisecond))
	// Every speaker stops at once: leaving memberlist finds nobody to tell,
	// which is no reason to fail (it was: every speaker exited 1). Other
	// errors may be logged on the way out (the uninstall deletes the
	// ServiceAccounts too, so API calls fail); the exit must be clean.
	for _, n := range l.Nodes {
		b, err := os.ReadFile(l.LogPath(lab.SpeakerName(n.Name)))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b[min(logFrom[n.Name], int64(len(b))):]), `"msg":"exiting"`) {
			t.Errorf("the speaker on %s exited with an error when uninstalled (see %s)", n.Name, l.LogPath(lab.SpeakerName(n.Name)))
		}
	}
	// A client that resolved an address before keeps its neighbour entry
	// for a while, and kube-proxy still forwards the address: say whether
	// such a client still gets through.
	if _, err := l.HTTPGet(ctx, l.ClientNS(), url(l2v4)); err == nil {
		t.Logf("right after the uninstall, the client with a cached neighbour entry still reaches %s", l2v4)
	} else {
		t.Logf("right after the uninstall, GET %s from the client: %v", l2v4, err)
	}

	// The speakers are gone: no answer now, nor a moment later.
	for round := range 3 {
		for _, vip := range []string{l2v4, l2v6} {
			if mac := answers(t, l, vip); mac != "" {
				t.Errorf("%s is answered by %s (check %d after the uninstall)", vip, mac, round+1)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	if got, err := l.WaitBGPNextHops(ctx, lab.HostPrefix(routed), nil, 5*time.Second); err != nil {
		t.Errorf("the router still has a route to %s after the uninstall: %v (%v)", routed, err, got)
	}
	table, err := l.BGPTable(ctx, "ipv4")
	if err != nil {
		t.Fatal(err)
	}
	pool := netip.MustParsePrefix("198.19.0.0/26")
	for p, peers := range table {
		if pool.Overlaps(p) {
			t.Errorf("the router still has %s from %v after the uninstall", p, peers)
		}
	}

	// What is left: the Services' status exactly as Herald wrote it (doc.go).
	vip := corev1.LoadBalancerIPModeVIP
	want := map[string][]corev1.LoadBalancerIngress{
		"l2":  {{IP: l2v4, IPMode: &vip}, {IP: l2v6, IPMode: &vip}},
		"bgp": {{IP: routed, IPMode: &vip}},
	}
	for name, w := range want {
		svc, err := l.Kube().CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(w, svc.Status.LoadBalancer.Ingress); diff != "" {
			t.Errorf("Service %s/%s: ingress after the uninstall (-want +got):\n%s", ns, name, diff)
		}
		for _, c := range svc.Status.Conditions {
			t.Logf("Service %s/%s after the uninstall: condition %s=%s reason %s: %s", ns, name, c.Type, c.Status, c.Reason, c.Message)
		}
		t.Logf("Service %s/%s after the uninstall: annotations %v", ns, name, svc.Annotations)
	}
}
