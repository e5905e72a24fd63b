package l2

import (
	"net"
	"net/netip"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

var fuzzMAC = net.HardwareAddr{2, 0, 0, 0, 1, 0}

// FuzzParseARPRequest feeds arbitrary frames to the ARP parser: it must not
// panic, and what it accepts must be an Ethernet/IPv4 request that is not
// gratuitous and not from this MAC.
func FuzzParseARPRequest(f *testing.F) {
	peer := net.HardwareAddr{2, 0, 0, 0, 0, 0x99}
	vip := netip.MustParseAddr("198.51.100.10")
	req, _ := arpFrame(arp.OperationRequest, peer, netip.MustParseAddr("198.51.100.2"), make(net.HardwareAddr, 6), vip, ethernet.Broadcast)
	garp, _, _ := arpAnnouncement(peer, vip)
	f.Add(req)
	f.Add(garp)
	f.Add(req[:20])
	f.Fuzz(func(t *testing.T, frame []byte) {
		p, ok := parseARPRequest(frame, fuzzMAC)
		if !ok {
			return
		}
		if p.Operation != arp.OperationRequest || !p.TargetIP.Is4() || !p.SenderIP.Is4() ||
			p.SenderIP == p.TargetIP || len(p.SenderHardwareAddr) != 6 || p.SenderHardwareAddr.String() == fuzzMAC.String() {
			t.Fatalf("accepted %+v", p)
		}
	})
}

// FuzzParseNS feeds arbitrary frames to the neighbour solicitation parser:
// it must not panic, and what it accepts must satisfy RFC 4861 §7.1.1.
func FuzzParseNS(f *testing.F) {
	target := netip.MustParseAddr("2001:db8:1::10")
	group, _ := ndp.SolicitedNodeMulticast(target)
	valid := nsFrame(f, netip.MustParseAddr("2001:db8:1::2"), group, target)
	if _, ok := parseNS(valid, fuzzMAC); !ok {
		f.Fatal("the seed solicitation is refused")
	}
	f.Add(valid)
	f.Add(nsFrame(f, netip.IPv6Unspecified(), group, target))
	f.Add(nsFrame(f, netip.MustParseAddr("fe80::2"), target, target))
	f.Fuzz(func(t *testing.T, frame []byte) {
		s, ok := parseNS(frame, fuzzMAC)
		if !ok {
			return
		}
		ip := frame[ethHeaderLen:]
		dst := netip.AddrFrom16([16]byte(ip[24:40]))
		g, err := ndp.SolicitedNodeMulticast(s.target)
		if err != nil || s.target.IsMulticast() || ip[7] != 255 || (dst != g && dst != s.target) ||
			(s.src.IsUnspecified() && dst != g) || len(s.from) != 6 {
			t.Fatalf("accepted %+v from %x", s, frame)
		}
	})
}

// nsFrame builds a valid solicitation for target from src to dst, with a
// source link-layer address option unless src is unspecified.
func nsFrame(tb testing.TB, src, dst, target netip.Addr) []byte {
	peer := net.HardwareAddr{2, 0, 0, 0, 0, 0x99}
	ns := &ndp.NeighborSolicitation{TargetAddress: target}
	if !src.IsUnspecified() {
		ns.Options = []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: peer}}
	}
	body, err := ndp.MarshalMessageChecksum(ns, src, dst)
	if err != nil {
		tb.Fatal(err)
	}
	// Take the Ethernet and IPv6 headers of an advertisement and readdress them.
	na, _, err := neighborAdvertisement(peer, target, dst, nil, false)
	if err != nil {
		tb.Fatal(err)
	}
	frame := append(na[:ethHeaderLen+ipv6HeaderLen:ethHeaderLen+ipv6HeaderLen], body...)
	if !dst.IsMulticast() {
		copy(frame[0:6], fuzzMAC)
	}
	ip := frame[ethHeaderLen:]
	ip[4], ip[5] = byte(len(body)>>8), byte(len(body))
	s := src.As16()
	copy(ip[8:24], s[:])
	return frame
}

// FuzzParseNA feeds arbitrary frames to the neighbour advertisement
// parser: it must not panic, and what it accepts must satisfy RFC 4861
// §7.1.2.
func FuzzParseNA(f *testing.F) {
	peer := net.HardwareAddr{2, 0, 0, 0, 0, 0x99}
	target := netip.MustParseAddr("2001:db8:1::10")
	unsolicited, _, _ := neighborAdvertisement(peer, target, allNodes, nil, false)
	solicited, _, _ := neighborAdvertisement(peer, target, netip.MustParseAddr("2001:db8:1::2"), fuzzMAC, true)
	if _, ok := parseNA(unsolicited); !ok {
		f.Fatal("the seed advertisement is refused")
	}
	f.Add(unsolicited)
	f.Add(solicited)
	f.Add(unsolicited[:ethHeaderLen+ipv6HeaderLen+naLen])
	f.Fuzz(func(t *testing.T, frame []byte) {
		na, ok := parseNA(frame)
		if !ok {
			return
		}
		ip := frame[ethHeaderLen:]
		src, dst := netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		icmp := ip[ipv6HeaderLen : ipv6HeaderLen+(int(ip[4])<<8|int(ip[5]))]
		if ip[7] != 255 || icmp[0] != typeNA || icmp[1] != 0 || !checksumValid(src, dst, icmp) || na.target.IsMulticast() ||
			(na.solicited && dst.IsMulticast()) || len(na.from) != 6 || (na.lla != nil && len(na.lla) != 6) {
			t.Fatalf("accepted %+v from %x", na, frame)
		}
	})
}
