package l2_test

import (
	"net"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mdlayher/arp"

	"github.com/heraldlb/herald/l2"
)

// rival is another device on the link that claims our addresses.
var rivalMAC = mustMAC("02:00:00:00:00:66")

// conflict is the Conflict expected on iface, without its time.
func conflict(addr netip.Addr, iface string, mac net.HardwareAddr, kind string) l2.Conflict {
	return l2.Conflict{Addr: addr, Iface: iface, MAC: mac, Kind: kind}
}

// ignoreAt compares Conflicts but for their time.
var ignoreAt = cmp.Options{cmpopts.IgnoreFields(l2.Conflict{}, "At"), cmp.Comparer(func(x, y netip.Addr) bool { return x == y })}

func TestConflicts(t *testing.T) {
	mac0 := ifMAC("eth0")
	unowned4, unowned6 := netip.MustParseAddr("198.51.100.99"), netip.MustParseAddr("2001:db8:1::99")
	tests := []struct {
		name  string
		proto string // the socket the frame arrives on, on eth0
		frame []byte
		want  []l2.Conflict
	}{
		{"foreign gratuitous ARP", "arp", arpReq{from: rivalMAC, sender: vip4, target: vip4}.frame(),
			[]l2.Conflict{conflict(vip4, "eth0", rivalMAC, l2.KindARPRequest)}},
		{"foreign ARP reply, unicast to us", "arp", arpReq{ethDst: mac0, from: rivalMAC, op: arp.OperationReply, sender: vip4, target: peer4}.frame(),
			[]l2.Conflict{conflict(vip4, "eth0", rivalMAC, l2.KindARPReply)}},
		{"foreign ARP reply to another host", "arp", arpReq{ethDst: peerMAC, from: rivalMAC, op: arp.OperationReply, sender: vip4, target: peer4}.frame(),
			[]l2.Conflict{conflict(vip4, "eth0", rivalMAC, l2.KindARPReply)}},
		{"foreign ARP request sent from the address", "arp", arpReq{from: rivalMAC, sender: vip4, target: peer4}.frame(),
			[]l2.Conflict{conflict(vip4, "eth0", rivalMAC, l2.KindARPRequest)}},
		{"ARP probe for an answered address", "arp", arpReq{from: rivalMAC, sender: netip.IPv4Unspecified(), target: vip4}.frame(),
			[]l2.Conflict{conflict(vip4, "eth0", rivalMAC, l2.KindDAD)}},
		{"unsolicited NA", "ndp", naReq{from: rivalMAC, target: vip6}.frame(),
			[]l2.Conflict{conflict(vip6, "eth0", rivalMAC, l2.KindNeighborAdvertisement)}},
		{"solicited NA, unicast to us", "ndp", naReq{ethDst: mac0, from: rivalMAC, dst: peer6, target: vip6, solicited: true}.frame(),
			[]l2.Conflict{conflict(vip6, "eth0", rivalMAC, l2.KindNeighborAdvertisement)}},
		{"NA names the MAC of its option", "ndp", naReq{from: rivalMAC, tlla: peerMAC, target: vip6}.frame(),
			[]l2.Conflict{conflict(vip6, "eth0", peerMAC, l2.KindNeighborAdvertisement)}},
		{"NA without option names its Ethernet source", "ndp", naReq{from: rivalMAC, noTLLA: true, target: vip6}.frame(),
			[]l2.Conflict{conflict(vip6, "eth0", rivalMAC, l2.KindNeighborAdvertisement)}},
		{"DAD for an answered address", "ndp", nsReq{from: rivalMAC, src: netip.IPv6Unspecified(), target: vip6, noSLLA: true}.frame(),
			[]l2.Conflict{conflict(vip6, "eth0", rivalMAC, l2.KindDAD)}},

		{"our own gratuitous ARP", "arp", arpReq{from: mac0, sender: vip4, target: vip4}.frame(), nil},
		{"gratuitous ARP from our other interface", "arp", arpReq{from: ifMAC("eth1"), sender: vip4, target: vip4}.frame(), nil},
		{"ARP claiming our MAC", "arp", func() []byte {
			f := arpReq{from: rivalMAC, sender: vip4, target: vip4}.frame()
			copy(f[22:28], mac0) // sender hardware address
			return f
		}(), nil},
		{"our own NA", "ndp", naReq{from: mac0, target: vip6}.frame(), nil},
		{"NA pointing at our MAC", "ndp", naReq{from: rivalMAC, tlla: mac0, target: vip6}.frame(), nil},
		{"gratuitous ARP for an unanswered address", "arp", arpReq{from: rivalMAC, sender: unowned4, target: unowned4}.frame(), nil},
		{"gratuitous ARP for an address answered on another interface", "arp", arpReq{from: rivalMAC, sender: vip4b, target: vip4b}.frame(), nil},
		{"NA for an unanswered address", "ndp", naReq{from: rivalMAC, target: unowned6}.frame(), nil},
		{"ordinary ARP request for the address", "arp", arpReq{from: rivalMAC, target: vip4}.frame(), nil},
		{"ordinary NS for the address", "ndp", nsReq{from: rivalMAC, target: vip6}.frame(), nil},
		{"truncated ARP", "arp", arpReq{from: rivalMAC, sender: vip4, target: vip4}.frame()[:30], nil},
		{"truncated NA", "ndp", func() []byte { f := naReq{from: rivalMAC, target: vip6}.frame(); return f[:len(f)-12] }(), nil},
		{"NA with a bad checksum", "ndp", naReq{from: rivalMAC, target: vip6, badChecksum: true}.frame(), nil},
		{"NA with hop limit 254", "ndp", naReq{from: rivalMAC, target: vip6, hopLimit: 254}.frame(), nil},
		{"solicited NA to a multicast group", "ndp", naReq{from: rivalMAC, target: vip6, solicited: true}.frame(), nil},
		{"NA with an option of length zero", "ndp", func() []byte {
			f := naReq{from: rivalMAC, target: vip6}.frame()
			f[len(f)-7] = 0 // the option's length; the checksum fails too, as it would on the wire
			return f
		}(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := newFakeNet("eth0", "eth1")
				a, reg := newAnnouncer(t, n, l2.Options{})
				run(t, a)
				a.Set(set(vip4, eth0, vip6, eth0, vip4b, eth1, vip6b, eth1))
				n.conn(t, "eth0", tt.proto).push(t, tt.frame)

				if diff := cmp.Diff(tt.want, drain(a), ignoreAt); diff != "" {
					t.Errorf("conflicts (-want +got):\n%s", diff)
				}
				if got := metricSum(t, reg, "herald_l2_conflicts_total"); got != float64(len(tt.want)) {
					t.Errorf("herald_l2_conflicts_total = %v, want %d", got, len(tt.want))
				}
			})
		})
	}
}

// A conflict is still answered as before: the ARP probe and the DAD for an
// answered address get their defending replies.
func TestConflictStillDefended(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet("eth0")
		a, _ := newAnnouncer(t, n, l2.Options{GratuitousRepeat: -1})
		run(t, a)
		a.Set(set(vip4, eth0, vip6, eth0))
		arpc, ndpc := n.conn(t, "eth0", "arp"), n.conn(t, "eth0", "ndp")
		arpc.take()
		ndpc.take()

		arpc.push(t, arpReq{from: rivalMAC, sender: netip.IPv4Unspecified(), target: vip4}.frame())
		ndpc.push(t, nsReq{from: rivalMAC, src: netip.IPv6Unspecified(), target: vip6, noSLLA: true}.frame())
		if diff := cmp.Diff([]arpOut{arpReply(vip4, rivalMAC, netip.IPv4Unspecified())}, decodeAllARP(t, arpc.take())); diff != "" {
			t.Errorf("ARP (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]naOut{unsolicitedNA("eth0", vip6)}, decodeAllNA(t, ndpc.take())); diff != "" {
			t.Errorf("NDP (-want +got):\n%s", diff)
		}
		if got := len(drain(a)); got != 2 {
			t.Errorf("%d conflicts, want 2", got)
		}
	})
}

func TestConflictRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet("eth0")
		a, reg := newAnnouncer(t, n, l2.Options{})
		run(t, a)
		a.Set(set(vip4, eth0, vip4b, eth0))
		c := n.conn(t, "eth0", "arp")
		garp := func(mac net.HardwareAddr, vip netip.Addr) {
			c.push(t, arpReq{from: mac, sender: vip, target: vip}.frame())
		}

		garp(rivalMAC, vip4)
		time.Sleep(500 * time.Millisecond)
		garp(rivalMAC, vip4) // within a second of the first: not reported
		garp(peerMAC, vip4)  // another MAC
		garp(rivalMAC, vip4b)
		time.Sleep(600 * time.Millisecond)
		garp(rivalMAC, vip4) // over a second since the first report
		want := []l2.Conflict{
			conflict(vip4, "eth0", rivalMAC, l2.KindARPRequest),
			conflict(vip4, "eth0", peerMAC, l2.KindARPRequest),
			conflict(vip4b, "eth0", rivalMAC, l2.KindARPRequest),
			conflict(vip4, "eth0", rivalMAC, l2.KindARPRequest),
		}
		got := drain(a)
		if diff := cmp.Diff(want, got, ignoreAt); diff != "" {
			t.Errorf("conflicts (-want +got):\n%s", diff)
		}
		if len(got) == 4 && got[3].At.Sub(got[0].At) != 1100*time.Millisecond {
			t.Errorf("reports at %v and %v, want 1.1s apart", got[0].At, got[3].At)
		}
		if got := metricSum(t, reg, "herald_l2_conflicts_total"); got != 5 {
			t.Errorf("herald_l2_conflicts_total = %v, want 5 (every frame)", got)
		}
	})
}

// A full channel drops conflicts and counts them; responders never wait.
func TestConflictsBufferFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet("eth0")
		a, reg := newAnnouncer(t, n, l2.Options{})
		run(t, a)
		a.Set(set(vip4, eth0))
		c := n.conn(t, "eth0", "arp")
		for i := range 300 {
			mac := net.HardwareAddr{0x06, 0, 0, 0, byte(i >> 8), byte(i)}
			c.push(t, arpReq{from: mac, sender: vip4, target: vip4}.frame())
		}
		if got := len(drain(a)); got != 256 {
			t.Errorf("%d conflicts delivered, want 256 (the buffer)", got)
		}
		if got := metricSum(t, reg, "herald_l2_conflicts_dropped_total"); got != 44 {
			t.Errorf("herald_l2_conflicts_dropped_total = %v, want 44", got)
		}
	})
}
