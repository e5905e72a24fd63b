package l2

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

func TestLinksInterfacesFor(t *testing.T) {
	up := net.FlagUp | net.FlagBroadcast | net.FlagMulticast
	mac := func(b byte) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, 0, b} }
	ifis := []net.Interface{
		{Index: 1, Name: "lo", Flags: net.FlagUp | net.FlagLoopback},
		{Index: 2, Name: "eth0", Flags: up, HardwareAddr: mac(1)},
		{Index: 3, Name: "eth1", Flags: up, HardwareAddr: mac(2)},
		{Index: 4, Name: "br0", Flags: up, HardwareAddr: mac(3)},
		{Index: 5, Name: "port0", Flags: up, HardwareAddr: mac(3)},
		{Index: 6, Name: "vlan7", Flags: up, HardwareAddr: mac(1)},
		{Index: 7, Name: "down0", Flags: net.FlagBroadcast, HardwareAddr: mac(4)},
	}
	sys := fstest.MapFS{"port0/brport/state": {Data: []byte("3\n")}}
	pfx := netip.MustParsePrefix
	prefixes := map[int][]netip.Prefix{
		1: {pfx("127.0.0.1/8"), pfx("::1/128")},
		2: {pfx("198.51.100.1/24"), pfx("2001:db8:1::1/64"), pfx("fe80::1/64")},
		3: {pfx("203.0.113.1/25")},
		4: {pfx("203.0.113.129/25"), pfx("2001:db8:1::2/64")},
		5: {pfx("198.51.100.2/24")}, // a bridge port's address counts for nothing
		6: {pfx("198.51.100.200/29")},
		7: {pfx("203.0.113.1/25")},
	}
	l := newLinks(ifis, sys, prefixes)
	all := []string{"br0", "eth0", "eth1", "vlan7"}
	tests := []struct {
		name string
		addr string
		only []string
		want []string
	}{
		{"on one link", "203.0.113.10", nil, []string{"eth1"}},
		{"the other half of the /24", "203.0.113.200", nil, []string{"br0"}},
		{"on two links, one prefix inside the other", "198.51.100.201", nil, []string{"eth0", "vlan7"}},
		{"IPv6 on two links", "2001:db8:1::10", nil, []string{"br0", "eth0"}},
		{"on no link: every eligible one", "2001:db8:9::10", nil, all},
		{"IPv4-mapped", "::ffff:203.0.113.10", nil, []string{"eth1"}},
		{"narrowed to a link holding it", "198.51.100.201", []string{"vlan7", "eth1"}, []string{"vlan7"}},
		{"narrowed to links not holding it", "198.51.100.10", []string{"eth1", "br0"}, []string{"br0", "eth1"}},
		{"narrowed to a bridge port, a down link and a missing one", "198.51.100.10", []string{"port0", "down0", "nope"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, l.InterfacesFor(netip.MustParseAddr(tt.addr), tt.only)); diff != "" {
				t.Errorf("InterfacesFor(%s, %v) (-want +got):\n%s", tt.addr, tt.only, diff)
			}
		})
	}
	if diff := cmp.Diff([]string{mac(1).String(), mac(2).String(), mac(3).String()}, macStrings(l.MACs())); diff != "" {
		t.Errorf("MACs (-want +got):\n%s", diff)
	}
}

func macStrings(macs []net.HardwareAddr) []string {
	var out []string
	for _, m := range macs {
		out = append(out, m.String())
	}
	return out
}

// ReadLinks' single address dump must see what the standard library sees
// interface by interface on this machine.
func TestReadLinksMatchesStdlib(t *testing.T) {
	links, err := ReadLinks()
	if err != nil {
		t.Fatal(err)
	}
	names, err := EligibleInterfaces(nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ln := range links.links {
		got = append(got, ln.name)
	}
	if diff := cmp.Diff(names, got); diff != "" {
		t.Errorf("eligible interfaces (-EligibleInterfaces +ReadLinks):\n%s", diff)
	}
	for _, ln := range links.links {
		ifi, err := net.InterfaceByName(ln.name)
		if err != nil {
			continue // gone since
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				want = append(want, p.Masked().String())
			}
		}
		var have []string
		for _, p := range ln.prefixes {
			have = append(have, p.String())
		}
		slices.Sort(want)
		slices.Sort(have)
		if diff := cmp.Diff(want, have); diff != "" {
			t.Errorf("%s: prefixes (-net +ReadLinks):\n%s", ln.name, diff)
		}
	}
}
