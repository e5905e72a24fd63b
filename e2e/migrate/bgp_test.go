package migrate

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/heraldlb/herald/e2e/lab"
)

// peering is how the router peers with every node: iBGP over the nodes'
// IPv4 addresses (both families carried), each session watched by BFD
// with the router's profile (100 ms × 3).
var peering = lab.Peering{NodeASN: lab.RouterASN, BFD: true}

// TestMigrateBGP moves a BGP MetalLB install to Herald: two pools off the
// lab's subnets (one by name, one by label), a peer with a BFD profile, and
// an advertisement with a local preference and communities, one of them by
// alias.
func TestMigrateBGP(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	const ns = "migbgp"
	images(t, l) // built before anything of the move starts
	installCRDs(t, l)
	createMetalLBObjects(t, l,
		metalLBObject{kind: "IPAddressPool", name: "routed", spec: map[string]any{
			"addresses": []any{"198.19.0.0/26", "2001:db8:100::/120"},
		}},
		metalLBObject{kind: "IPAddressPool", name: "routed-extra", labels: map[string]string{"tier": "extra"}, spec: map[string]any{
			"addresses":  []any{"198.19.0.64/27", "2001:db8:100::100/120"},
			"autoAssign": false,
		}},
		metalLBObject{kind: "BGPPeer", name: "tor", spec: map[string]any{
			"myASN": int64(peering.NodeASN), "peerASN": int64(lab.RouterASN), "peerAddress": peering.RouterAddress().String(),
			"holdTime": "9s", "keepaliveTime": "3s", "connectTime": "1s", "bfdProfile": "fast",
		}},
		metalLBObject{kind: "BFDProfile", name: "fast", spec: map[string]any{
			"receiveInterval": int64(100), "transmitInterval": int64(100), "detectMultiplier": int64(3),
		}},
		metalLBObject{kind: "Community", name: "aliases", spec: map[string]any{
			"communities": []any{map[string]any{"name": "no-export", "value": "65535:65281"}},
		}},
		metalLBObject{kind: "BGPAdvertisement", name: "routed", spec: map[string]any{
			"ipAddressPools":         []any{"routed"},
			"ipAddressPoolSelectors": []any{map[string]any{"matchLabels": map[string]any{"tier": "extra"}}},
			"peers":                  []any{"tor"},
			"localPref":              int64(150),
			"communities":            []any{"64500:100", "no-export"},
		}},
	)
	svcs := []migrated{
		{name: "requested", port: 80, pool: "routed",
			annotations: map[string]string{"metallb.io/loadBalancerIPs": "198.19.0.21,2001:db8:100::21"},
			ingress:     []string{"198.19.0.21", "2001:db8:100::21"}},
		{name: "pooled", port: 80, pool: "routed-extra",
			annotations: map[string]string{"metallb.universe.tf/address-pool": "routed-extra"},
			ingress:     []string{"198.19.0.70", "2001:db8:100::170"}},
		{name: "plain", port: 80, pool: "routed", singleStack: true,
			ingress: []string{"198.19.0.5"}},
		// One address for two Services with different ports and backends.
		{name: "web", port: 80, pool: "routed",
			annotations: map[string]string{"metallb.universe.tf/allow-shared-ip": "front"},
			ingress:     []string{"198.19.0.10", "2001:db8:100::10"}},
		{name: "alt", port: 8081, pool: "routed",
			annotations: map[string]string{"metallb.io/allow-shared-ip": "front"},
			ingress:     []string{"198.19.0.10", "2001:db8:100::10"}},
	}
	want := map[string][]corev1.LoadBalancerIngress{}
	for i, s := range svcs {
		want[s.name] = createMigrated(t, l, ns, i, s)
	}
	w := watchIngress(t, l, ns, want)

	text := migrateFromCluster(t, l)
	checkMigration(t, text, []string{
		"pool routed autoAssign=true 198.19.0.0-198.19.0.63 2001:db8:100::-2001:db8:100::ff",
		"pool routed-extra autoAssign=false 198.19.0.64-198.19.0.95 2001:db8:100::100-2001:db8:100::1ff",
		`peer tor 198.51.100.1 port=179 asn=64500 myASN=64500 hold=9s keepalive=3s connect=1s multihop=false bfd=fast gracefulRestart=false nodes=""`,
		"bfd fast rx=100ms tx=100ms multiplier=3",
		"community no-export 65535:65281",
		`bgp routed pools=[routed routed-extra] peers=[tor] aggregation=32/128 localPref=150 communities=[64500:100 65535:65281] nodes=""`,
	})

	// The router is set up first, so the speakers' first dial succeeds.
	if err := l.PeerNodes(ctx, peering); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.UnpeerNodes(context.Background()); err != nil {
			t.Errorf("restore the router: %v", err)
		}
	})
	installed := installHerald(t, l, text)
	if _, err := l.WaitEstablished(ctx, l.PeerAddresses(peering), time.Minute); err != nil {
		t.Fatal(err)
	}
	waitBFD(t, l, 15*time.Second)
	waitServed(t, l, ns, svcs, time.Minute)
	for _, s := range svcs {
		for _, ip := range s.ingress {
			l.ExpectRoute(t, ip, l.NodeAddrs(netip.MustParseAddr(ip).Is6()), time.Minute)
			expectAttributes(t, l, ip)
		}
	}
	for _, s := range svcs {
		for _, u := range s.urls() {
			getSteady(t, l, l.ExternalNS(), u, s.name, time.Minute)
		}
	}
	probeAll(t, l.ExternalNS(), "the external client behind the router", svcs)
	w.expectUnchanged(t, l, installed)
}

// waitBFD waits until the router's BFD session with every node is up.
func waitBFD(t *testing.T, l *lab.Lab, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		nbrs, err := l.BGPNeighbors(t.Context())
		var down []string
		for _, a := range l.PeerAddresses(peering) {
			if n := nbrs[a]; n.BFD != "Up" {
				down = append(down, a.String()+" ("+n.BFD+")")
			}
		}
		if err == nil && len(down) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("BFD not up at the router after %v with %v (err %v)", timeout, down, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// expectAttributes checks that every path the router holds for ip carries
// the advertisement's local preference and communities (no-export by its
// MetalLB alias).
func expectAttributes(t *testing.T, l *lab.Lab, ip string) {
	t.Helper()
	paths, err := l.BGPPaths(t.Context(), lab.HostPrefix(ip))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		type attrs struct {
			LocalPref   uint32
			Communities []string
		}
		want := attrs{LocalPref: 150, Communities: []string{"64500:100", "noExport"}}
		if diff := cmp.Diff(want, attrs{p.LocalPref, p.Communities}); diff != "" {
			t.Errorf("the router's path to %s from %s (-want +got):\n%s", ip, p.Peer, diff)
		}
	}
}
