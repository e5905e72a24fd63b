package speaker_test

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/heraldlb/herald/speaker"
)

// accepted: pool lan announced by L2, pool routed by BGP to tor.
const heldAccepted = `
pools:
- {name: lan, addresses: ["198.51.100.200-198.51.100.210"]}
- {name: routed, addresses: ["203.0.113.0/28"]}
l2Advertisements:
- {name: lan, pools: [lan]}
bgpPeers:
- {name: tor, address: 198.51.100.1, asn: 64500, myASN: 64501}
bgpAdvertisements:
- {name: routed, pools: [routed], communities: ["64500:1"]}
`

// next: lan narrowed to .200-.205 and no longer announced by L2 at all;
// routed removed with its peer; a new pool announced by L2.
const heldNext = `
pools:
- {name: lan, addresses: ["198.51.100.200-198.51.100.205"]}
- {name: fresh, addresses: ["198.51.100.220-198.51.100.230"]}
l2Advertisements:
- {name: fresh, pools: [fresh]}
`

func TestDecideKept(t *testing.T) {
	accepted, next := mustConfig(t, heldAccepted), mustConfig(t, heldNext)
	a := netip.MustParseAddr
	lanKept := a("198.51.100.201") // still in lan, but no L2 advertisement any more
	lanGone := a("198.51.100.208") // in no pool any more
	fresh := a("198.51.100.221")   // new pool: follows next
	routed := a("203.0.113.5")     // its BGP advertisement and peer are gone
	svcs := []speaker.ServiceInfo{
		{Key: "a/kept", Addrs: []netip.Addr{lanKept}, ReadyNodes: []string{"n1"}},
		{Key: "a/gone", Addrs: []netip.Addr{lanGone}, ReadyNodes: []string{"n1"}},
		{Key: "a/fresh", Addrs: []netip.Addr{fresh}, ReadyNodes: []string{"n1"}},
		{Key: "a/routed", Addrs: []netip.Addr{routed}, ReadyNodes: []string{"n1"}},
	}
	nodes := []speaker.NodeInfo{{Name: "n1", Labels: labels.Set{}, Alive: true, Settled: true}}

	t.Run("L2 confirmed: only next", func(t *testing.T) {
		got := speaker.DecideL2Kept(next, nil, svcs, nodes)
		for addr, want := range map[netip.Addr]string{lanKept: "", lanGone: "", fresh: "n1", routed: ""} {
			if got[addr].Node != want {
				t.Errorf("%s owned by %q, want %q", addr, got[addr].Node, want)
			}
		}
	})
	t.Run("L2 held: what next stops, accepted keeps", func(t *testing.T) {
		got := speaker.DecideL2Kept(next, accepted, svcs, nodes)
		for addr, want := range map[netip.Addr]string{lanKept: "n1", lanGone: "n1", fresh: "n1", routed: ""} {
			if got[addr].Node != want {
				t.Errorf("%s owned by %q, want %q (%s)", addr, got[addr].Node, want, got[addr].Why)
			}
		}
	})
	t.Run("BGP confirmed: no session, no route", func(t *testing.T) {
		d := speaker.DecideBGPKept(next, nil, svcs, nodes[0])
		if len(d.Peers) != 0 || len(d.Routes) != 0 {
			t.Errorf("peers %v routes %v, want none", d.Peers, d.Routes)
		}
	})
	t.Run("BGP held: the accepted route and its session stay", func(t *testing.T) {
		d := speaker.DecideBGPKept(next, accepted, svcs, nodes[0])
		want := map[netip.Prefix][]string{netip.MustParsePrefix("203.0.113.5/32"): {speaker.HeldAdvertisement + "routed"}}
		if diff := cmp.Diff(want, d.Routes, netipEqual); diff != "" {
			t.Errorf("routes (-want +got):\n%s", diff)
		}
		if len(d.Peers) != 1 || d.Peers[0].Name != "tor" {
			t.Errorf("peers %v, want tor", d.Peers)
		}
		if got := d.Services["a/routed"].Prefixes; len(got) != 1 {
			t.Errorf("a/routed advertised as %v", got)
		}
	})
	t.Run("BGP held, nothing kept: next alone", func(t *testing.T) {
		d := speaker.DecideBGPKept(accepted, accepted, svcs, nodes[0])
		for _, advs := range d.Routes {
			for _, adv := range advs {
				if adv != "routed" {
					t.Errorf("advertisement %q: the accepted one should not be used when in force announces", adv)
				}
			}
		}
	})
}
