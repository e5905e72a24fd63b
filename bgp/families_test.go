package bgp_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	gobgp "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/heraldlb/herald/bgp"
)

func TestRouterFamilies(t *testing.T) {
	mp := func(f gobgp.Family) gobgp.ParameterCapabilityInterface { return gobgp.NewCapMultiProtocol(f) }
	for _, tc := range []struct {
		name string
		caps []gobgp.ParameterCapabilityInterface
		want []bgp.Family
	}{
		{"no multiprotocol capability: IPv4 unicast (RFC 4760 8)", []gobgp.ParameterCapabilityInterface{gobgp.NewCapRouteRefresh()}, []bgp.Family{bgp.IPv4Unicast}},
		{"IPv4 only", []gobgp.ParameterCapabilityInterface{mp(gobgp.RF_IPv4_UC)}, []bgp.Family{bgp.IPv4Unicast}},
		{"IPv6 only", []gobgp.ParameterCapabilityInterface{mp(gobgp.RF_IPv6_UC)}, []bgp.Family{bgp.IPv6Unicast}},
		{"both, other families ignored, sorted", []gobgp.ParameterCapabilityInterface{mp(gobgp.RF_IPv6_UC), mp(gobgp.RF_IPv4_VPN), mp(gobgp.RF_IPv4_UC)}, []bgp.Family{bgp.IPv4Unicast, bgp.IPv6Unicast}},
		{"only families Herald does not carry", []gobgp.ParameterCapabilityInterface{mp(gobgp.RF_EVPN)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, bgp.RouterFamilies(tc.caps)); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestOfferedFamilies(t *testing.T) {
	v4, v6 := [2]int32{1, 1}, [2]int32{2, 1}
	for _, tc := range []struct {
		name string
		fams []bgp.Family
		want [][2]int32
	}{
		{"unknown: both", nil, [][2]int32{v4, v6}},
		{"IPv4 router", []bgp.Family{bgp.IPv4Unicast}, [][2]int32{v4}},
		{"IPv6 router", []bgp.Family{bgp.IPv6Unicast}, [][2]int32{v6}},
		{"both", []bgp.Family{bgp.IPv6Unicast, bgp.IPv4Unicast}, [][2]int32{v4, v6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := bgp.Peer{Name: "tor", GracefulRestart: true, Families: tc.fams}
			if diff := cmp.Diff(tc.want, bgp.OfferedFamilies(p)); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

// TestAdminDownPacket checks the packet against RFC 5880 4.1 field by field.
func TestAdminDownPacket(t *testing.T) {
	got := bgp.AdminDownPacket(0x01020304, 0xa0b0c0d0, 100*time.Millisecond, 300*time.Millisecond, 3)
	want := []byte{
		0x27,  // version 1, diagnostic 7 (Administratively Down)
		0x00,  // state AdminDown (0); P, F, C, A, D, M clear
		3, 24, // detect multiplier, length
		1, 2, 3, 4, // my discriminator
		0xa0, 0xb0, 0xc0, 0xd0, // your discriminator
		0, 0x01, 0x86, 0xa0, // desired min TX: 100,000 µs
		0, 0x04, 0x93, 0xe0, // required min RX: 300,000 µs
		0, 0, 0, 0, // required min echo RX: none
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}
