package l2_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/arp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/heraldlb/herald/l2"
)

var eth0, eth1 = []string{"eth0"}, []string{"eth1"}

// arpReply is the reply eth0 must send for vip to a request from (mac, ip).
func arpReply(vip netip.Addr, mac net.HardwareAddr, ip netip.Addr) arpOut {
	return arpOut{EthDst: mac.String(), EthSrc: ifMAC("eth0").String(), Op: arp.OperationReply,
		SHA: ifMAC("eth0").String(), SPA: vip.String(), THA: mac.String(), TPA: ip.String()}
}

// garp is the gratuitous ARP (an RFC 5227 announcement) name sends for vip.
func garp(name string, vip netip.Addr) arpOut {
	mac := ifMAC(name).String()
	return arpOut{EthDst: "ff:ff:ff:ff:ff:ff", EthSrc: mac, Op: arp.OperationRequest,
		SHA: mac, SPA: vip.String(), THA: "00:00:00:00:00:00", TPA: vip.String()}
}

// solicitedNA is the advertisement eth0 must send for vip to (mac, ip).
func solicitedNA(vip netip.Addr, mac net.HardwareAddr, ip netip.Addr) naOut {
	return naOut{EthDst: mac.String(), EthSrc: ifMAC("eth0").String(), Src: vip.String(), Dst: ip.String(),
		HopLimit: 255, ChecksumOK: true, Solicited: true, Override: true, Target: vip.String(), TLLA: ifMAC("eth0").String()}
}

// unsolicitedNA is the advertisement name sends for vip on takeover.
func unsolicitedNA(name string, vip netip.Addr) naOut {
	mac := ifMAC(name).String()
	return naOut{EthDst: "33:33:00:00:00:01", EthSrc: mac, Src: vip.String(), Dst: "ff02::1",
		HopLimit: 255, ChecksumOK: true, Override: true, Target: vip.String(), TLLA: mac}
}

func decodeAllARP(t *testing.T, sent []sentFrame) []arpOut {
	t.Helper()
	var out []arpOut
	for _, s := range sent {
		out = append(out, decodeARP(t, s))
	}
	return out
}

func decodeAllNA(t *testing.T, sent []sentFrame) []naOut {
	t.Helper()
	var out []naOut
	for _, s := range sent {
		out = append(out, decodeNA(t, s))
	}
	return out
}

func TestARP(t *testing.T) {
	other := netip.MustParseAddr("198.51.100.99")
	tests := []struct {
		name string
		req  arpReq
		want []arpOut
	}{
		{"broadcast request for an owned address", arpReq{target: vip4}, []arpOut{arpReply(vip4, peerMAC, peer4)}},
		{"unicast request (reachability probe)", arpReq{ethDst: ifMAC("eth0"), target: vip4}, []arpOut{arpReply(vip4, peerMAC, peer4)}},
		{"probe from 0.0.0.0 is answered (RFC 5227)", arpReq{sender: netip.IPv4Unspecified(), target: vip4},
			[]arpOut{arpReply(vip4, peerMAC, netip.IPv4Unspecified())}},
		{"unowned address", arpReq{target: other}, nil},
		{"address owned on another interface", arpReq{target: vip4b}, nil},
		{"request sent from our own MAC", arpReq{from: ifMAC("eth0"), target: vip4}, nil},
		{"gratuitous request", arpReq{sender: vip4, target: vip4}, nil},
		{"reply", arpReq{op: arp.OperationReply, target: vip4}, nil},
		{"frame for another host's MAC", arpReq{ethDst: mustMAC("02:00:00:00:00:98"), target: vip4}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := newFakeNet("eth0", "eth1")
				a, _ := newAnnouncer(t, n, l2.Options{})
				run(t, a)
				a.Set(set(vip4, eth0, vip4b, eth1))
				c := n.conn(t, "eth0", "arp")
				c.take() // the gratuitous ARP

				c.push(t, tt.req.frame())
				if diff := cmp.Diff(tt.want, decodeAllARP(t, c.take())); diff != "" {
					t.Errorf("sent (-want +got):\n%s", diff)
				}
			})
		})
	}
}

func TestNDP(t *testing.T) {
	mac0 := ifMAC("eth0")
	group6, _ := netip.MustParseAddr("ff02::1:ff00:10"), 0
	other := netip.MustParseAddr("2001:db8:1::99")
	otherGroup := netip.MustParseAddr("ff02::1:ff00:99")
	tests := []struct {
		name string
		req  nsReq
		cut  int // bytes cut off the end of the frame
		want []naOut
	}{
		{"multicast solicitation", nsReq{target: vip6}, 0, []naOut{solicitedNA(vip6, peerMAC, peer6)}},
		{"unicast solicitation (reachability probe)", nsReq{ethDst: mac0, dst: vip6, target: vip6}, 0, []naOut{solicitedNA(vip6, peerMAC, peer6)}},
		{"unicast solicitation without source link-layer address", nsReq{ethDst: mac0, dst: vip6, target: vip6, noSLLA: true}, 0,
			[]naOut{solicitedNA(vip6, peerMAC, peer6)}},
		{"link-local solicitor", nsReq{src: netip.MustParseAddr("fe80::2"), target: vip6}, 0,
			[]naOut{solicitedNA(vip6, peerMAC, netip.MustParseAddr("fe80::2"))}},
		{"unknown option is skipped", nsReq{target: vip6, extraOpts: []byte{200, 1, 0, 0, 0, 0, 0, 0}}, 0,
			[]naOut{solicitedNA(vip6, peerMAC, peer6)}},
		{"duplicate address detection is answered to all nodes", nsReq{src: netip.IPv6Unspecified(), target: vip6, noSLLA: true}, 0,
			[]naOut{unsolicitedNA("eth0", vip6)}},
		{"DAD with a source link-layer address", nsReq{src: netip.IPv6Unspecified(), target: vip6}, 0, nil},
		{"DAD not to the solicited-node group", nsReq{src: netip.IPv6Unspecified(), dst: vip6, ethDst: mac0, target: vip6, noSLLA: true}, 0, nil},
		{"hop limit 254", nsReq{target: vip6, hopLimit: 254}, 0, nil},
		{"bad checksum", nsReq{target: vip6, badChecksum: true}, 0, nil},
		{"code 1", nsReq{target: vip6, code: 1}, 0, nil},
		{"option of length zero", nsReq{target: vip6, zeroLenOpt: true}, 0, nil},
		{"truncated", nsReq{target: vip6}, 8, nil},
		{"unowned target", nsReq{target: other}, 0, nil},
		{"target owned on another interface", nsReq{target: vip6b}, 0, nil},
		{"to another address's group", nsReq{dst: otherGroup, target: vip6}, 0, nil},
		{"to all nodes", nsReq{dst: netip.MustParseAddr("ff02::1"), target: vip6}, 0, nil},
		{"multicast target", nsReq{dst: group6, target: group6}, 0, nil},
		{"sent from our own MAC", nsReq{from: mac0, target: vip6}, 0, nil},
		{"frame for another host's MAC", nsReq{ethDst: mustMAC("02:00:00:00:00:98"), dst: vip6, target: vip6}, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := newFakeNet("eth0", "eth1")
				a, _ := newAnnouncer(t, n, l2.Options{})
				run(t, a)
				a.Set(set(vip6, eth0, vip6b, eth1))
				c := n.conn(t, "eth0", "ndp")
				c.take() // the unsolicited NA

				f := tt.req.frame()
				c.push(t, f[:len(f)-tt.cut])
				if diff := cmp.Diff(tt.want, decodeAllNA(t, c.take())); diff != "" {
					t.Errorf("sent (-want +got):\n%s", diff)
				}
			})
		})
	}
}

func TestTakeover(t *testing.T) {
	tests := []struct {
		name string
		opts l2.Options
		want []time.Duration // when announcements go out, from Set
	}{
		{"defaults: 3 repeats 200ms apart, refresh every 30s", l2.Options{},
			[]time.Duration{0, 200 * time.Millisecond, 400 * time.Millisecond, 600 * time.Millisecond, 30 * time.Second, 60 * time.Second}},
		{"no repeats, no refresh", l2.Options{GratuitousRepeat: -1, RefreshInterval: -1}, []time.Duration{0}},
		{"1 repeat after 1s, refresh every 25s", l2.Options{GratuitousRepeat: 1, GratuitousInterval: time.Second, RefreshInterval: 25 * time.Second},
			[]time.Duration{0, time.Second, 25 * time.Second, 50 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := newFakeNet("eth0")
				a, _ := newAnnouncer(t, n, tt.opts)
				run(t, a)
				start := time.Now()
				a.Set(set(vip4, eth0, vip6, eth0))
				arpc, ndpc := n.conn(t, "eth0", "arp"), n.conn(t, "eth0", "ndp")
				if got := arpc.count() + ndpc.count(); got != 2 {
					t.Fatalf("Set returned with %d announcements sent, want 2 (one per address)", got)
				}

				time.Sleep(61 * time.Second)
				synctest.Wait()
				for _, c := range []*fakeConn{arpc, ndpc} {
					sent := c.take()
					var got []time.Duration
					for _, s := range sent {
						got = append(got, s.at.Sub(start))
					}
					if diff := cmp.Diff(tt.want, got); diff != "" {
						t.Errorf("announcement times (-want +got):\n%s", diff)
					}
					if c == arpc {
						for _, g := range decodeAllARP(t, sent) {
							if diff := cmp.Diff(garp("eth0", vip4), g); diff != "" {
								t.Fatalf("gratuitous ARP (-want +got):\n%s", diff)
							}
						}
					} else {
						for _, g := range decodeAllNA(t, sent) {
							if diff := cmp.Diff(unsolicitedNA("eth0", vip6), g); diff != "" {
								t.Fatalf("unsolicited NA (-want +got):\n%s", diff)
							}
						}
					}
				}
			})
		})
	}
}

func TestRemovalStopsAnswersAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet("eth0")
		a, _ := newAnnouncer(t, n, l2.Options{GratuitousRepeat: -1, RefreshInterval: -1})
		run(t, a)
		a.Set(set(vip4, eth0, vip6, eth0, vip4b, eth0, vip6b, eth0))
		arpc, ndpc := n.conn(t, "eth0", "arp"), n.conn(t, "eth0", "ndp")
		arpc.take()
		ndpc.take()
		if diff := cmp.Diff([]string{"ff02::1:ff00:10", "ff02::1:ff00:11"}, n.joined("eth0")); diff != "" {
			t.Errorf("groups (-want +got):\n%s", diff)
		}

		a.Set(set(vip4b, eth0, vip6b, eth0))
		arpc.push(t, arpReq{target: vip4}.frame())
		ndpc.push(t, nsReq{target: vip6}.frame())
		if got := len(arpc.take()) + len(ndpc.take()); got != 0 {
			t.Errorf("%d replies for removed addresses", got)
		}
		if diff := cmp.Diff([]string{"ff02::1:ff00:11"}, n.joined("eth0")); diff != "" {
			t.Errorf("groups after removal (-want +got):\n%s", diff)
		}

		// Back again: announced at once, answered again.
		a.Set(set(vip4, eth0, vip6, eth0, vip4b, eth0, vip6b, eth0))
		if diff := cmp.Diff([]arpOut{garp("eth0", vip4)}, decodeAllARP(t, arpc.take())); diff != "" {
			t.Errorf("on re-adding (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]naOut{unsolicitedNA("eth0", vip6)}, decodeAllNA(t, ndpc.take())); diff != "" {
			t.Errorf("on re-adding (-want +got):\n%s", diff)
		}
		arpc.push(t, arpReq{target: vip4}.frame())
		if diff := cmp.Diff([]arpOut{arpReply(vip4, peerMAC, peer4)}, decodeAllARP(t, arpc.take())); diff != "" {
			t.Errorf("reply after re-adding (-want +got):\n%s", diff)
		}
	})
}

func TestRemovalCancelsRepeats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet("eth0")
		a, _ := newAnnouncer(t, n, l2.Options{RefreshInterval: -1})
		run(t, a)
		a.Set(set(vip4, eth0, vip4b, eth0))
		a.Set(set(vip4b, eth0))
		time.Sleep(time.Second)
		synctest.Wait()
		want := []arpOut{garp("eth0", vip4), garp("eth0", vip4b), garp("eth0", vip4b), garp("eth0", vip4b), garp("eth0", vip4b)}
		if diff := cmp.Diff(want, decodeAllARP(t, n.conn(t, "eth0", "arp").take())); diff != "" {
			t.Errorf("sent (-want +got):\n%s", diff)
		}
	})
}

func TestLastAddressClosesSockets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet("eth0")
		a, _ := newAnnouncer(t, n, l2.Options{})
		run(t, a)
		a.Set(set(vip4, eth0, vip6, eth0))
		arpc, ndpc := n.conn(t, "eth0", "arp"), n.conn(t, "eth0", "ndp")

		a.Set(set(vip4, eth0))
		if !ndpc.isClosed() || arpc.isClosed() {
			t.Errorf("with only IPv4 left: NDP socket closed %v (want true), ARP socket closed %v (want false)", ndpc.isClosed(), arpc.isClosed())
		}
		a.Set(nil)
		if !arpc.isClosed() {
			t.Error("ARP socket still open with no address")
		}

		a.Set(set(vip6, eth0))
		if got := n.opened("eth0", "ndp"); got != 2 {
			t.Fatalf("NDP sockets opened: %d, want 2", got)
		}
		if diff := cmp.Diff([]naOut{unsolicitedNA("eth0", vip6)}, decodeAllNA(t, n.conn(t, "eth0", "ndp").take())); diff != "" {
			t.Errorf("announcement on the reopened socket (-want +got):\n%s", diff)
		}
	})
}

func TestSetBeforeRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet("eth0")
		a, _ := newAnnouncer(t, n, l2.Options{GratuitousRepeat: -1})
		a.Set(set(vip4, eth0, vip6, eth0))
		if got := n.opened("eth0", "arp") + n.opened("eth0", "ndp"); got != 0 {
			t.Fatalf("%d sockets opened before Run", got)
		}
		run(t, a)

		arpc, ndpc := n.conn(t, "eth0", "arp"), n.conn(t, "eth0", "ndp")
		if diff := cmp.Diff([]arpOut{garp("eth0", vip4)}, decodeAllARP(t, arpc.take())); diff != "" {
			t.Errorf("at Run (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]naOut{unsolicitedNA("eth0", vip6)}, decodeAllNA(t, ndpc.take())); diff != "" {
			t.Errorf("at Run (-want +got):\n%s", diff)
		}
		ndpc.push(t, nsReq{target: vip6}.frame())
		if diff := cmp.Diff([]naOut{solicitedNA(vip6, peerMAC, peer6)}, decodeAllNA(t, ndpc.take())); diff != "" {
			t.Errorf("reply (-want +got):\n%s", diff)
		}
	})
}

func TestOpenFailureDoesNotBlockOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet("eth0", "eth1")
		n.failOpen("eth0", errors.New("operation not permitted"))
		a, _ := newAnnouncer(t, n, l2.Options{GratuitousRepeat: -1, RefreshInterval: -1})
		run(t, a)
		a.Set(set(vip4, []string{"eth0", "eth1", "eth9"}))

		c1 := n.conn(t, "eth1", "arp")
		if diff := cmp.Diff([]arpOut{garp("eth1", vip4)}, decodeAllARP(t, c1.take())); diff != "" {
			t.Errorf("eth1 (-want +got):\n%s", diff)
		}
		c1.push(t, arpReq{target: vip4}.frame())
		if got := len(c1.take()); got != 1 {
			t.Errorf("eth1 sent %d replies, want 1", got)
		}

		// eth0 opens at a retry, and is announced then.
		n.failOpen("eth0", nil)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if diff := cmp.Diff([]arpOut{garp("eth0", vip4)}, decodeAllARP(t, n.conn(t, "eth0", "arp").take())); diff != "" {
			t.Errorf("eth0 once it opens (-want +got):\n%s", diff)
		}
	})
}

func TestReadFailureReopens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet("eth0")
		a, _ := newAnnouncer(t, n, l2.Options{GratuitousRepeat: -1, RefreshInterval: -1})
		run(t, a)
		a.Set(set(vip4, eth0))
		first := n.conn(t, "eth0", "arp")

		n.failOpen("eth0", errors.New("no such device"))
		first.failRead(errors.New("network is down"))
		synctest.Wait()
		if !first.isClosed() {
			t.Error("failed socket not closed")
		}
		time.Sleep(20 * time.Second) // the interface stays away for a while
		n.failOpen("eth0", nil)
		time.Sleep(6 * time.Second) // longer than the longest wait between attempts
		synctest.Wait()

		if got := n.opened("eth0", "arp"); got != 2 {
			t.Fatalf("ARP sockets opened: %d, want 2", got)
		}
		c := n.conn(t, "eth0", "arp")
		if diff := cmp.Diff([]arpOut{garp("eth0", vip4)}, decodeAllARP(t, c.take())); diff != "" {
			t.Errorf("on reopening (-want +got):\n%s", diff)
		}
		c.push(t, arpReq{target: vip4}.frame())
		if got := len(c.take()); got != 1 {
			t.Errorf("%d replies after reopening, want 1", got)
		}
	})
}

func TestMACChangeReopensAtRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet("eth0")
		a, _ := newAnnouncer(t, n, l2.Options{GratuitousRepeat: -1, RefreshInterval: 10 * time.Second})
		run(t, a)
		a.Set(set(vip4, eth0))
		newMAC := mustMAC("02:00:00:00:01:77")
		n.mu.Lock()
		n.ifaces["eth0"].HardwareAddr = newMAC
		n.mu.Unlock()

		time.Sleep(11 * time.Second)
		synctest.Wait()
		c := n.conn(t, "eth0", "arp")
		if got := n.opened("eth0", "arp"); got != 2 {
			t.Fatalf("ARP sockets opened: %d, want 2", got)
		}
		got := decodeAllARP(t, c.take())
		if len(got) != 1 || got[0].SHA != newMAC.String() {
			t.Errorf("after the MAC change sent %+v, want one announcement from %s", got, newMAC)
		}
	})
}

func TestSharedSolicitedNodeGroup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet("eth0")
		a, _ := newAnnouncer(t, n, l2.Options{})
		run(t, a)
		same := netip.MustParseAddr("2001:db8:2::10") // same last 24 bits as vip6
		steps := []struct {
			set  map[netip.Addr][]string
			want []string
		}{
			{set(vip6, eth0, same, eth0), []string{"ff02::1:ff00:10"}},
			{set(same, eth0), []string{"ff02::1:ff00:10"}},
			{set(vip6b, eth0), []string{"ff02::1:ff00:11"}},
			{set(vip6b, eth0, vip6, eth0), []string{"ff02::1:ff00:10", "ff02::1:ff00:11"}},
		}
		for i, s := range steps {
			a.Set(s.set)
			if diff := cmp.Diff(s.want, n.joined("eth0")); diff != "" {
				t.Errorf("step %d: groups (-want +got):\n%s", i, diff)
			}
		}
	})
}

func TestOwned(t *testing.T) {
	a := l2.New(l2.Options{})
	a.Set(map[netip.Addr][]string{
		vip6: {"eth1", "eth0", "eth0"},
		netip.MustParseAddr("::ffff:198.51.100.10"): {"eth0"},
		netip.MustParseAddr("198.51.100.3"):         {},
		netip.MustParseAddr("ff02::1"):              {"eth0"},
		{}:                                          {"eth0"},
		netip.MustParseAddr("198.51.100.1"):         {"eth0"},
	})
	want := []netip.Addr{netip.MustParseAddr("198.51.100.1"), vip4, vip6}
	if diff := cmp.Diff(want, a.Owned(), cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("Owned (-want +got):\n%s", diff)
	}
}

func TestMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet("eth0")
		a, reg := newAnnouncer(t, n, l2.Options{GratuitousRepeat: -1})
		run(t, a)
		a.Set(set(vip4, eth0, vip6, eth0, vip6b, eth0))
		n.conn(t, "eth0", "arp").push(t, arpReq{target: vip4}.frame())
		n.conn(t, "eth0", "ndp").push(t, nsReq{target: vip6}.frame())
		n.conn(t, "eth0", "ndp").push(t, nsReq{target: netip.MustParseAddr("2001:db8:1::99")}.frame())

		want := `
# HELP herald_l2_gratuitous_total Gratuitous ARP and unsolicited neighbour advertisements sent, on takeover and refresh.
# TYPE herald_l2_gratuitous_total counter
herald_l2_gratuitous_total{iface="eth0",proto="arp"} 1
herald_l2_gratuitous_total{iface="eth0",proto="ndp"} 2
# HELP herald_l2_owned_addresses Addresses this node answers for (arp: IPv4, ndp: IPv6).
# TYPE herald_l2_owned_addresses gauge
herald_l2_owned_addresses{proto="arp"} 1
herald_l2_owned_addresses{proto="ndp"} 2
# HELP herald_l2_replies_total ARP replies and solicited neighbour advertisements sent.
# TYPE herald_l2_replies_total counter
herald_l2_replies_total{iface="eth0",proto="arp"} 1
herald_l2_replies_total{iface="eth0",proto="ndp"} 1
# HELP herald_l2_requests_total ARP requests and neighbour solicitations received for an address this node answers for.
# TYPE herald_l2_requests_total counter
herald_l2_requests_total{iface="eth0",proto="arp"} 1
herald_l2_requests_total{iface="eth0",proto="ndp"} 1
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
			"herald_l2_gratuitous_total", "herald_l2_owned_addresses", "herald_l2_replies_total", "herald_l2_requests_total"); err != nil {
			t.Error(err)
		}
	})
}

func TestRunEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet("eth0")
		a, _ := newAnnouncer(t, n, l2.Options{})
		a.Set(set(vip4, eth0, vip6, eth0))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		synctest.Wait()

		if err := a.Run(ctx); err == nil {
			t.Error("a second Run while running returned nil")
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		for _, p := range []string{"arp", "ndp"} {
			if !n.conn(t, "eth0", p).isClosed() {
				t.Errorf("%s socket left open", p)
			}
		}
		a.Set(set(vip4b, eth0)) // must not block once Run has ended
		if got := n.opened("eth0", "arp"); got != 1 {
			t.Errorf("Set after Run opened sockets: %d ARP sockets, want 1", got)
		}
	})
}

// TestQuiet: an address being handed over is answered only to a request
// sent directly to this MAC, not to one sent to everyone.
func TestQuiet(t *testing.T) {
	for _, tt := range []struct {
		name  string
		quiet bool
		req   arpReq
		want  []arpOut
	}{
		{"broadcast, not quiet", false, arpReq{target: vip4}, []arpOut{arpReply(vip4, peerMAC, peer4)}},
		{"broadcast, quiet", true, arpReq{target: vip4}, nil},
		{"direct, quiet", true, arpReq{ethDst: ifMAC("eth0"), target: vip4}, []arpOut{arpReply(vip4, peerMAC, peer4)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := newFakeNet("eth0")
				a, _ := newAnnouncer(t, n, l2.Options{})
				run(t, a)
				a.Set(set(vip4, eth0))
				a.SetQuiet(map[netip.Addr]bool{vip4: tt.quiet})
				c := n.conn(t, "eth0", "arp")
				c.take() // the gratuitous ARP

				c.push(t, tt.req.frame())
				if diff := cmp.Diff(tt.want, decodeAllARP(t, c.take())); diff != "" {
					t.Errorf("sent (-want +got):\n%s", diff)
				}
			})
		})
	}
}
