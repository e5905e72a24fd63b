package bgp_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/heraldlb/herald/bgp"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

var cmpAddrs = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
var cmpPrefixes = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

func TestDiffPeers(t *testing.T) {
	a := bgp.Peer{Name: "a", Address: addr("198.51.100.2"), ASN: 64512, MyASN: 64512}
	b := bgp.Peer{Name: "b", Address: addr("198.51.100.3"), ASN: 64513, MyASN: 64512}
	bHold := b
	bHold.HoldTime = 9 * time.Second
	aBFD := a
	aBFD.BFD = &bgp.BFD{ReceiveInterval: 100 * time.Millisecond}
	aBFD2 := a
	aBFD2.BFD = &bgp.BFD{ReceiveInterval: 100 * time.Millisecond}
	for _, tc := range []struct {
		name     string
		old, new []bgp.Peer
		want     bgp.PeerDiff
	}{
		{name: "same", old: []bgp.Peer{a, b}, new: []bgp.Peer{b, a}},
		{name: "add", old: []bgp.Peer{a}, new: []bgp.Peer{a, b}, want: bgp.PeerDiff{Add: []bgp.Peer{b}}},
		{name: "delete", old: []bgp.Peer{a, b}, new: []bgp.Peer{b}, want: bgp.PeerDiff{Delete: []bgp.Peer{a}}},
		{name: "change only that one", old: []bgp.Peer{a, b}, new: []bgp.Peer{a, bHold}, want: bgp.PeerDiff{Change: []bgp.Peer{bHold}}},
		{name: "BFD compared by value", old: []bgp.Peer{aBFD}, new: []bgp.Peer{aBFD2}},
		{name: "BFD added: changed in place, no new session", old: []bgp.Peer{a}, new: []bgp.Peer{aBFD}},
		{name: "all new", new: []bgp.Peer{b, a}, want: bgp.PeerDiff{Add: []bgp.Peer{a, b}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := bgp.DiffPeers(tc.old, tc.new)
			if diff := cmp.Diff(tc.want, got, cmpAddrs, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("DiffPeers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDiffRoutes(t *testing.T) {
	p1, p2, p6 := pfx("203.0.113.1/32"), pfx("203.0.113.2/32"), pfx("2001:db8:1::1/128")
	advs := []bgp.Advertisement{{Name: "x"}, {Name: "y"}}
	d := func(routes map[netip.Prefix][]string, advs ...bgp.Advertisement) bgp.Desired {
		return bgp.Desired{Advertisements: advs, Routes: routes}
	}
	x4, y4, x6 := bgp.SetKey{Adv: "x"}, bgp.SetKey{Adv: "y"}, bgp.SetKey{Adv: "x", V6: true}
	for _, tc := range []struct {
		name     string
		old, new bgp.Desired
		want     bgp.RouteDiff
	}{
		{
			name: "nothing changes",
			old:  d(map[netip.Prefix][]string{p1: {"x"}}, advs...),
			new:  d(map[netip.Prefix][]string{p1: {"x"}}, advs...),
		},
		{
			name: "new prefixes of both families",
			old:  d(nil, advs...),
			new:  d(map[netip.Prefix][]string{p1: {"x"}, p6: {"x", "y"}}, advs...),
			want: bgp.RouteDiff{
				Announce: []netip.Prefix{p1, p6},
				Join:     map[bgp.SetKey][]netip.Prefix{x4: {p1}, x6: {p6}, {Adv: "y", V6: true}: {p6}},
			},
		},
		{
			name: "withdrawn prefix leaves its sets",
			old:  d(map[netip.Prefix][]string{p1: {"x"}, p2: {"x", "y"}}, advs...),
			new:  d(map[netip.Prefix][]string{p1: {"x"}}, advs...),
			want: bgp.RouteDiff{Withdraw: []netip.Prefix{p2}, Leave: map[bgp.SetKey][]netip.Prefix{x4: {p2}, y4: {p2}}},
		},
		{
			name: "prefix moves to another advertisement",
			old:  d(map[netip.Prefix][]string{p1: {"x"}}, advs...),
			new:  d(map[netip.Prefix][]string{p1: {"y"}}, advs...),
			want: bgp.RouteDiff{
				Changed: []netip.Prefix{p1},
				Join:    map[bgp.SetKey][]netip.Prefix{y4: {p1}},
				Leave:   map[bgp.SetKey][]netip.Prefix{x4: {p1}},
			},
		},
		{
			name: "unknown advertisement is no member; its appearance changes the prefix",
			old:  d(map[netip.Prefix][]string{p1: {"z"}}, advs...),
			new:  d(map[netip.Prefix][]string{p1: {"z"}}, append(advs, bgp.Advertisement{Name: "z"})...),
			want: bgp.RouteDiff{
				Changed: []netip.Prefix{p1},
				Join:    map[bgp.SetKey][]netip.Prefix{{Adv: "z"}: {p1}},
			},
		},
		{
			name: "advertisement removed",
			old:  d(map[netip.Prefix][]string{p1: {"x", "y"}}, advs...),
			new:  d(map[netip.Prefix][]string{p1: {"x", "y"}}, advs[0]),
			want: bgp.RouteDiff{Changed: []netip.Prefix{p1}, Leave: map[bgp.SetKey][]netip.Prefix{y4: {p1}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := bgp.DiffRoutes(tc.old, tc.new)
			if diff := cmp.Diff(tc.want, got, cmpPrefixes, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("DiffRoutes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAffectedPeers(t *testing.T) {
	p1, p6 := pfx("203.0.113.1/32"), pfx("2001:db8:1::1/128")
	a := bgp.Peer{Name: "a", Address: addr("198.51.100.2"), ASN: 1, MyASN: 1}
	b := bgp.Peer{Name: "b", Address: addr("198.51.100.3"), ASN: 1, MyASN: 1}
	base := bgp.Desired{
		NextHopV6: addr("2001:db8::1"),
		Peers:     []bgp.Peer{a, b},
		Advertisements: []bgp.Advertisement{
			{Name: "x", Peers: []string{"a"}}, {Name: "y", Peers: []string{"b"}}, {Name: "all"},
		},
	}
	with := func(routes map[netip.Prefix][]string, f ...func(*bgp.Desired)) bgp.Desired {
		d := base
		d.Routes = routes
		for _, f := range f {
			f(&d)
		}
		return d
	}
	for _, tc := range []struct {
		name     string
		old, new bgp.Desired
		changed  []netip.Prefix
		want     []string
	}{
		{
			name: "moves from a to b",
			old:  with(map[netip.Prefix][]string{p1: {"x"}}), new: with(map[netip.Prefix][]string{p1: {"y"}}),
			changed: []netip.Prefix{p1}, want: []string{"a", "b"},
		},
		{
			name: "gains an advertisement for b only",
			old:  with(map[netip.Prefix][]string{p1: {"x"}}), new: with(map[netip.Prefix][]string{p1: {"x", "y"}}),
			changed: []netip.Prefix{p1}, want: []string{"b"},
		},
		{
			name:    "IPv6 prefix without a v6 next hop reaches no v4 session",
			old:     with(map[netip.Prefix][]string{p6: {"x"}}, func(d *bgp.Desired) { d.NextHopV6 = netip.Addr{} }),
			new:     with(map[netip.Prefix][]string{p6: {"all"}}, func(d *bgp.Desired) { d.NextHopV6 = netip.Addr{} }),
			changed: []netip.Prefix{p6},
		},
		{
			name: "a changed peer is re-added, not reset",
			old:  with(map[netip.Prefix][]string{p1: {"x"}}),
			new: with(map[netip.Prefix][]string{p1: {"all"}}, func(d *bgp.Desired) {
				d.Peers = []bgp.Peer{{Name: "a", Address: addr("198.51.100.9"), ASN: 1, MyASN: 1}, b}
			}),
			changed: []netip.Prefix{p1}, want: []string{"b"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := bgp.AffectedPeers(tc.old, tc.new, tc.changed)
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("AffectedPeers (-want +got):\n%s", diff)
			}
		})
	}
}
