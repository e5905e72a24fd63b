package bgp_test

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/heraldlb/herald/bgp"
)

func TestBuildExport(t *testing.T) {
	a := bgp.Peer{Name: "a", Address: addr("198.51.100.2"), ASN: 64500, MyASN: 64500}
	b := bgp.Peer{Name: "b", Address: addr("198.51.100.3"), ASN: 64501, MyASN: 64500} // eBGP: no LOCAL_PREF
	c := bgp.Peer{Name: "c", Address: addr("2001:db8::2")}
	for _, tc := range []struct {
		name string
		d    bgp.Desired
		want bgp.ExportPolicy
	}{
		{
			name: "no advertisements: only the default reject",
			d:    bgp.Desired{Peers: []bgp.Peer{a}, NextHopV6: addr("2001:db8::1")},
			want: bgp.ExportPolicy{
				NeighborSets: map[string][]netip.Addr{"peers-v4": {a.Address}},
				Statements: []bgp.Statement{
					{Name: "nh-ipv6-unicast", NeighborSet: "peers-v4", Family: "ipv6-unicast", NextHop: addr("2001:db8::1")},
				},
			},
		},
		{
			name: "no next hop of the other family: rejected there",
			d:    bgp.Desired{Peers: []bgp.Peer{a, c}, NextHopV4: addr("198.51.100.1")},
			want: bgp.ExportPolicy{
				NeighborSets: map[string][]netip.Addr{"peers-v4": {a.Address}, "peers-v6": {c.Address}},
				Statements: []bgp.Statement{
					{Name: "nh-ipv4-unicast", NeighborSet: "peers-v6", Family: "ipv4-unicast", NextHop: addr("198.51.100.1")},
					{Name: "nh-ipv6-unicast", NeighborSet: "peers-v4", Family: "ipv6-unicast", Action: "reject"},
				},
			},
		},
		{
			name: "attributes ordered by local preference (iBGP only), then accepts",
			d: bgp.Desired{
				Peers: []bgp.Peer{b, a}, NextHopV6: addr("2001:db8::1"),
				Advertisements: []bgp.Advertisement{
					{Name: "gold", LocalPref: 200, Communities: []uint32{65000<<16 | 100}, LargeCommunities: [][3]uint32{{1, 2, 3}}, Peers: []string{"b", "a"}},
					{Name: "plain"},
					{Name: "silver", LocalPref: 100},
					{Name: "ghost", Peers: []string{"nobody"}, LocalPref: 50},
				},
			},
			want: bgp.ExportPolicy{
				NeighborSets: map[string][]netip.Addr{
					"peers-v4": {a.Address, b.Address},
					"n-gold":   {a.Address, b.Address},
					"i-gold":   {a.Address},
					"i-silver": {a.Address},
				},
				Statements: []bgp.Statement{
					{Name: "nh-ipv6-unicast", NeighborSet: "peers-v4", Family: "ipv6-unicast", NextHop: addr("2001:db8::1")},
					{Name: "pref-silver-v4", PrefixSet: "herald-a-silver-v4", NeighborSet: "i-silver", LocalPref: 100},
					{Name: "pref-silver-v6", PrefixSet: "herald-a-silver-v6", NeighborSet: "i-silver", LocalPref: 100},
					{Name: "mod-gold-v4", PrefixSet: "herald-a-gold-v4", NeighborSet: "n-gold", Communities: []string{"65000:100"}, LargeCommunities: []string{"1:2:3"}},
					{Name: "pref-gold-v4", PrefixSet: "herald-a-gold-v4", NeighborSet: "i-gold", LocalPref: 200},
					{Name: "mod-gold-v6", PrefixSet: "herald-a-gold-v6", NeighborSet: "n-gold", Communities: []string{"65000:100"}, LargeCommunities: []string{"1:2:3"}},
					{Name: "pref-gold-v6", PrefixSet: "herald-a-gold-v6", NeighborSet: "i-gold", LocalPref: 200},
					{Name: "acc-plain-v4", PrefixSet: "herald-a-plain-v4", Action: "accept"},
					{Name: "acc-plain-v6", PrefixSet: "herald-a-plain-v6", Action: "accept"},
					{Name: "acc-silver-v4", PrefixSet: "herald-a-silver-v4", Action: "accept"},
					{Name: "acc-silver-v6", PrefixSet: "herald-a-silver-v6", Action: "accept"},
					{Name: "acc-gold-v4", PrefixSet: "herald-a-gold-v4", NeighborSet: "n-gold", Action: "accept"},
					{Name: "acc-gold-v6", PrefixSet: "herald-a-gold-v6", NeighborSet: "n-gold", Action: "accept"},
				},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := bgp.BuildExport(tc.d)
			if diff := cmp.Diff(tc.want, got, cmpAddrs, cmp.AllowUnexported(bgp.ExportPolicy{}), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("BuildExport (-want +got):\n%s", diff)
			}
		})
	}
}
