package deploy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/heraldlb/herald/e2e/lab"
)

// TestNewAddressWaitsForKubeProxy: a node advertises a new Service's
// address only once its kube-proxy has programmed it. A client GETs the
// address from behind the router from the moment the Service is created;
// before the fix, the SYNs that reached a node in the second before its
// kube-proxy synced were routed back to the router (TTL exceeded), and the
// node's conntrack kept those flows unNATed for two minutes, so a later
// connection from a reused client port looped too ("no route to host"
// some 30 s on, in TestRollingUpdateBGP). No node may hold such a flow.
func TestNewAddressWaitsForKubeProxy(t *testing.T) {
	l := needLab(t)
	v2 := images(t, l, "v2")
	peerRouter(t, l)
	install(t, l, "pools:\n"+bgpPool+bgpPeerYAML(false)+bgpAdvertisement, v2)
	if _, err := l.WaitEstablished(t.Context(), l.PeerAddresses(peering), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	vip := "198.19.0.22"
	p := startProbe(t, l.ExternalNS(), vip) // misses until the route is there
	app(t, l, "programmed", "web", vip)
	l.ExpectRoute(t, vip, l.NodeAddrs(false), 30*time.Second)
	getEventually(t, l, l.ExternalNS(), vip, 30*time.Second)
	p.Stop()
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range l.Nodes {
				log, _ := l.Exec(context.Background(), n.NS, "grep", "-h", "kube-proxy\\|BGP\\|"+vip, l.LogPath(lab.SpeakerName(n.Name)))
				t.Logf("%s's speaker:\n%s", n.Name, log)
			}
		}
	})
	for _, n := range l.Nodes {
		out, err := l.Exec(t.Context(), n.NS, "conntrack", "-L", "-p", "tcp", "-d", vip)
		if err != nil {
			t.Fatalf("conntrack on %s: %v: %s", n.Name, err, out)
		}
		for _, line := range strings.Split(out, "\n") {
			// An unNATed flow answers from the address itself.
			if strings.Contains(line, "dst="+vip) && strings.Contains(line, "src="+vip+" ") {
				t.Errorf("%s holds a flow to %s that kube-proxy did not translate: %s", n.Name, vip, strings.TrimSpace(line))
			}
		}
	}
}
