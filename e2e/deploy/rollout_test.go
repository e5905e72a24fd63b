package deploy

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/heraldlb/herald/e2e/lab"
)

// lanPool is a pool on the lab network for both families; l2Config
// announces it in layer 2.
const (
	lanPool = `- name: lan
  addresses: ["198.51.100.200-198.51.100.250", "2001:db8:1::200-2001:db8:1::250"]
`
	l2Advertisement = `l2Advertisements:
- name: lan
  pools: [lan]
`
	l2Config = "pools:\n" + lanPool + l2Advertisement
)

// bgpPool is a pool off every lab subnet: only the routes the nodes
// advertise lead there.
const bgpPool = `- name: routed
  addresses: ["198.19.0.0/26"]
  autoAssign: false
`

const bgpAdvertisement = `bgpAdvertisements:
- name: routed
  pools: [routed]
  peers: [tor]
`

// roll installs img over the running install (a rolling update of both
// workloads) and returns how long until both were rolled out.
func roll(t *testing.T, l *lab.Lab, in *lab.Install, img lab.Images) time.Duration {
	t.Helper()
	start := time.Now()
	in.Images = img
	if err := l.InstallHerald(t.Context(), *in); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("rolled %s to %s in %v", "herald-controller and herald-speaker", img.Version, took.Round(time.Millisecond))
	return took
}

func TestRollingUpdateL2(t *testing.T) {
	l := needLab(t)
	v1, v2 := images(t, l, "v1"), images(t, l, "v2")
	in := install(t, l, l2Config, v1)
	before := expectImages(t, l, v1)
	vip := "198.51.100.220"
	app(t, l, "rolll2", "web", vip)
	getEventually(t, l, l.ClientNS(), vip, 30*time.Second)
	addr := ingress(t, l, "rolll2", "web")

	p := startProbe(t, l.ClientNS(), vip)
	moves := watchMAC(t, l, l.ClientNS(), vip)
	time.Sleep(time.Second) // the probe sees the address served before the update
	roll(t, l, in, v2)
	time.Sleep(time.Second) // and after it
	moves.stop()
	p.ExpectNoLossBut(t, "from the client on the bridge while both workloads rolled from v1 to v2", moves.moves)
	// Two nodes answering at once for a moment still happens in about one
	// full-suite run in three (a third cause after the two fixed in
	// speaker/members.go; issue 12). It is reported here, and fails the
	// test only when it costs a GET (above).
	if len(moves.flaps) > 0 {
		t.Logf("KNOWN ISSUE: two nodes answered for %s at once during the update (the client's entry flapped): %s", vip, strings.Join(moves.flaps, "; "))
	}

	if diff := cmp.Diff(addr, ingress(t, l, "rolll2", "web")); diff != "" {
		t.Errorf("the Service's ingress changed in the rolling update (-before +after):\n%s", diff)
	}
	after := expectImages(t, l, v2)
	for app, id := range after {
		if id == before[app] {
			t.Errorf("%s runs imageID %s after the update, as before it", app, id)
		}
	}
}

func TestRollingUpdateBGP(t *testing.T) {
	l := needLab(t)
	v1, v2 := images(t, l, "v1"), images(t, l, "v2")
	peerRouter(t, l)
	in := install(t, l, "pools:\n"+bgpPool+bgpPeerYAML(true)+bgpAdvertisement, v2)
	if _, err := l.WaitEstablished(t.Context(), l.PeerAddresses(peering), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	vip := "198.19.0.20"
	app(t, l, "rollbgp", "web", vip)
	l.ExpectRoute(t, vip, l.NodeAddrs(false), 30*time.Second)
	getEventually(t, l, l.ExternalNS(), vip, 30*time.Second)
	nbrs, err := l.BGPNeighbors(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range l.PeerAddresses(peering) {
		if gr := nbrs[a].GracefulRestart; gr != "advertisedAndReceived" {
			t.Fatalf("graceful restart capability with %s: %q, want advertisedAndReceived", a, gr)
		}
	}
	addr := ingress(t, l, "rollbgp", "web")

	// v2 back to v1: a downgrade is a rolling update like any other.
	p := startProbe(t, l.ExternalNS(), vip)
	w := watchRoute(t, l, vip)
	time.Sleep(time.Second)
	roll(t, l, in, v1)
	// Every session back, and the routes with them, before the probe ends.
	if _, err := l.WaitEstablished(t.Context(), l.PeerAddresses(peering), 30*time.Second); err != nil {
		t.Error(err)
	}
	l.ExpectRoute(t, vip, l.NodeAddrs(false), 30*time.Second)
	time.Sleep(time.Second)
	w.expectKept(t, "while both workloads rolled from v2 to v1")
	p.ExpectNoLoss(t, "from the external client while both workloads rolled from v2 to v1")

	if diff := cmp.Diff(addr, ingress(t, l, "rollbgp", "web")); diff != "" {
		t.Errorf("the Service's ingress changed in the rolling update (-before +after):\n%s", diff)
	}
	expectImages(t, l, v1)
}
