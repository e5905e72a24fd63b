package l2

import (
	"net"
	"net/netip"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/bpf"
)

// The kernel runs ndFilter on every IPv6 frame of the interface; only
// neighbour solicitations and advertisements may pass.
func TestNDFilter(t *testing.T) {
	vm, err := bpf.NewVM(mustDisassemble(t, ndFilter))
	if err != nil {
		t.Fatal(err)
	}
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	target := netip.MustParseAddr("2001:db8:1::10")
	na, _, err := neighborAdvertisement(mac, target, allNodes, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	ns := func(mutate func(b []byte)) []byte {
		b := append([]byte(nil), na...)
		b[ethHeaderLen+ipv6HeaderLen] = typeNS
		if mutate != nil {
			mutate(b)
		}
		return b
	}
	tests := []struct {
		name  string
		frame []byte
		pass  bool
	}{
		{"neighbour solicitation", ns(nil), true},
		{"neighbour advertisement", na, true},
		{"router advertisement", ns(func(b []byte) { b[ethHeaderLen+ipv6HeaderLen] = 134 }), false},
		{"echo request", ns(func(b []byte) { b[ethHeaderLen+ipv6HeaderLen] = 128 }), false},
		{"UDP", ns(func(b []byte) { b[ethHeaderLen+6] = 17 }), false},
		{"hop-by-hop header first", ns(func(b []byte) { b[ethHeaderLen+6] = 0 }), false},
		{"ARP EtherType", ns(func(b []byte) { b[12], b[13] = 0x08, 0x06 }), false},
		{"short frame", ns(nil)[:30], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := vm.Run(tt.frame)
			if err != nil {
				t.Fatal(err)
			}
			if got := n > 0; got != tt.pass {
				t.Errorf("passed %v, want %v", got, tt.pass)
			}
		})
	}
}

func mustDisassemble(t *testing.T, raw []bpf.RawInstruction) []bpf.Instruction {
	t.Helper()
	out, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("the filter does not disassemble")
	}
	return out
}

func TestEligible(t *testing.T) {
	up := net.FlagUp | net.FlagBroadcast | net.FlagMulticast
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	ifis := []net.Interface{
		{Name: "lo", Flags: net.FlagUp | net.FlagLoopback},
		{Name: "eth1", Flags: up, HardwareAddr: mac},
		{Name: "eth0", Flags: up, HardwareAddr: mac},
		{Name: "down0", Flags: net.FlagBroadcast, HardwareAddr: mac},
		{Name: "br0", Flags: up, HardwareAddr: mac},
		{Name: "port0", Flags: up, HardwareAddr: mac},
		{Name: "bond0", Flags: up, HardwareAddr: mac},
		{Name: "slave0", Flags: up, HardwareAddr: mac},
		{Name: "dummy0", Flags: up, HardwareAddr: mac},
		{Name: "wg0", Flags: net.FlagUp | net.FlagPointToPoint},
		{Name: "ib0", Flags: up, HardwareAddr: make(net.HardwareAddr, 20)},
	}
	sys := fstest.MapFS{
		"eth0/flags":         {Data: []byte("0x1003\n")},
		"br0/bridge/x":       {},
		"port0/brport/state": {Data: []byte("3\n")},
		"bond0/flags":        {Data: []byte("0x1403\n")},
		"slave0/flags":       {Data: []byte("0x1803\n")},
		"dummy0/flags":       {Data: []byte("0x83\n")},
	}
	tests := []struct {
		name string
		only []string
		want []string
	}{
		{"all", nil, []string{"bond0", "br0", "eth0", "eth1"}},
		{"narrowed", []string{"eth1", "port0", "lo", "missing"}, []string{"eth1"}},
		{"nothing left", []string{"missing"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, eligible(ifis, sys, tt.only)); diff != "" {
				t.Errorf("eligible (-want +got):\n%s", diff)
			}
		})
	}
}
