package bgp_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/heraldlb/herald/e2e/lab"
	"github.com/heraldlb/herald/speaker"
)

// The router's AS as each rack sees it: one anycast gateway address, an AS
// per rack (FRR's local-as on each neighbour).
const (
	rackAASN = 64510
	rackBASN = 64520
)

// rackYAML has two peers at the router's one address, one per rack, rack-a
// first in the document, and advertises pool "bgp" to both.
var rackYAML = poolsYAML + fmt.Sprintf(`bgpPeers:
- name: rack-a
  address: %[1]s
  asn: %[2]d
  myASN: %[4]d
  holdTime: 9s
  connectTime: 1s
  nodeSelector: {matchLabels: {rack-a: "true"}}
- name: rack-b
  address: %[1]s
  asn: %[3]d
  myASN: %[4]d
  holdTime: 9s
  connectTime: 1s
  nodeSelector: {matchLabels: {rack-b: "true"}}
bgpAdvertisements:
- name: default
  pools: [bgp]
`, lab.Router4, rackAASN, rackBASN, eBGPASN)

// Per-rack peers that share the router's address: each node peers with
// its own rack's entry, and a node that both entries select is reported
// on the ConfigMap and keeps peering with the first, without resetting
// any session.
func TestPerRackPeers(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	racks := map[string]string{"node1": "rack-a", "node2": "rack-b", "node3": "rack-b"}
	for node, rack := range racks {
		labelNode(t, l, node, rack, "true")
	}
	routerAS := map[netip.Addr]uint32{}
	for _, n := range l.Nodes {
		routerAS[n.IPv4] = map[string]uint32{"rack-a": rackAASN, "rack-b": rackBASN}[racks[n.Name]]
	}
	peerRacks(t, l, routerAS)
	if err := l.ApplyHeraldConfig(ctx, rackYAML); err != nil {
		t.Fatal(err)
	}
	all := l.NodeAddrs(false)
	// A session comes up only when the speaker expects the AS the router
	// answers that node with: each node peers with its own rack's entry.
	if _, err := l.WaitEstablished(ctx, all, 30*time.Second); err != nil {
		t.Fatalf("%v (speaker logs: %s)", err, l.LogPath(lab.SpeakerName("node1")))
	}
	expectLocalAS(t, l, routerAS)

	vip := "198.19.0.13"
	app(t, l, "racks", "web", vip, false, map[string]string{"a": "node1", "b": "node2"})
	l.ExpectRoute(t, vip, all, 30*time.Second)
	getFromExternal(t, l, vip, 20*time.Second)

	before, err := l.BGPNeighbors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	labelNode(t, l, "node1", "rack-b", "true")
	want := fmt.Sprintf("node node1 is selected by peers rack-a and rack-b at %s; it peers with rack-a (first in the document)",
		netip.AddrPortFrom(lab.Router4, 179))
	waitConfigEvent(t, l, speaker.ReasonPeerConflict, want, 15*time.Second)
	// Another decision of the speaker (a label change pokes it) reports nothing new.
	labelNode(t, l, "node1", "poke", "1")
	time.Sleep(3 * time.Second)
	if e := waitConfigEvent(t, l, speaker.ReasonPeerConflict, want, time.Second); e.Count > 1 {
		t.Errorf("the conflict was reported %d times; want once", e.Count)
	}

	after, err := l.BGPNeighbors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range all {
		// FRR derives the epoch from the uptime: it may move by a second.
		b, f := before[a], after[a]
		moved := f.EstablishedEpoch - b.EstablishedEpoch
		if !f.Established() || moved > 1 || moved < -1 || f.ConnectionsEstablished != b.ConnectionsEstablished || f.ConnectionsDropped != b.ConnectionsDropped {
			t.Errorf("session with %s was reset: before since %d (%d up, %d dropped), after %s since %d (%d up, %d dropped; last reset: %s)",
				a, b.EstablishedEpoch, b.ConnectionsEstablished, b.ConnectionsDropped,
				f.State, f.EstablishedEpoch, f.ConnectionsEstablished, f.ConnectionsDropped, f.LastResetDueTo)
		}
	}
	expectLocalAS(t, l, routerAS)
	l.ExpectRoute(t, vip, all, 10*time.Second)
}

// peerRacks has the router peer with every node over eBGP, answering each
// node address with the AS routerAS gives it, and undoes it, with Herald's
// configuration, when the test ends.
func peerRacks(t *testing.T, l *lab.Lab, routerAS map[netip.Addr]uint32) {
	t.Helper()
	t.Cleanup(func() {
		ctx := context.Background()
		if err := l.ApplyHeraldConfig(ctx, poolsYAML); err != nil {
			t.Errorf("restore the Herald configuration: %v", err)
		}
		if err := l.UnpeerNodes(ctx); err != nil {
			t.Errorf("restore the router: %v", err)
		}
	})
	if err := l.PeerNodes(t.Context(), lab.Peering{NodeASN: eBGPASN}); err != nil {
		t.Fatal(err)
	}
	lines := []string{fmt.Sprintf("router bgp %d", lab.RouterASN)}
	for a, asn := range routerAS {
		lines = append(lines, fmt.Sprintf("neighbor %s local-as %d no-prepend replace-as", a, asn))
	}
	if err := l.ConfigureRouter(t.Context(), lines...); err != nil {
		t.Fatal(err)
	}
}

// expectLocalAS checks the AS the router speaks from on each session.
func expectLocalAS(t *testing.T, l *lab.Lab, want map[netip.Addr]uint32) {
	t.Helper()
	var raw map[string]struct {
		LocalAS uint32 `json:"localAs"`
	}
	if err := l.VtyshJSON(t.Context(), "show bgp neighbors json", &raw); err != nil {
		t.Fatal(err)
	}
	got := map[netip.Addr]uint32{}
	for k, n := range raw {
		if a, err := netip.ParseAddr(k); err == nil {
			got[a] = n.LocalAS
		}
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("the router's AS per session (-want +got):\n%s", diff)
	}
}

// waitConfigEvent waits until Herald's ConfigMap has a Warning Event with
// reason and message, and returns it.
func waitConfigEvent(t *testing.T, l *lab.Lab, reason, message string, timeout time.Duration) corev1.Event {
	t.Helper()
	var seen []string
	for deadline := time.Now().Add(timeout); ; time.Sleep(200 * time.Millisecond) {
		events, err := l.Kube().CoreV1().Events(lab.HeraldNamespace).List(t.Context(),
			metav1.ListOptions{FieldSelector: "involvedObject.kind=ConfigMap,involvedObject.name=herald"})
		if err != nil {
			t.Fatal(err)
		}
		seen = seen[:0]
		for _, e := range events.Items {
			if e.Type == corev1.EventTypeWarning && e.Reason == reason && e.Message == message {
				return e
			}
			seen = append(seen, e.Type+" "+e.Reason+": "+e.Message)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Warning %s Event %q on the ConfigMap after %s; its Events: %q", reason, message, timeout, seen)
		}
	}
}

// labelNode sets a label on a node until the test ends.
func labelNode(t *testing.T, l *lab.Lab, node, key, value string) {
	t.Helper()
	patch := func(ctx context.Context, v string) error { // v in JSON
		p := fmt.Sprintf(`{"metadata":{"labels":{%q:%s}}}`, key, v)
		_, err := l.Kube().CoreV1().Nodes().Patch(ctx, node, types.StrategicMergePatchType, []byte(p), metav1.PatchOptions{})
		return err
	}
	if err := patch(t.Context(), fmt.Sprintf("%q", value)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := patch(context.Background(), "null"); err != nil {
			t.Errorf("remove label %s from %s: %v", key, node, err)
		}
	})
}
