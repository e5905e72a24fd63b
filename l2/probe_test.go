package l2_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/arp"

	"github.com/heraldlb/herald/l2"
)

type probeResult struct {
	conflicts []l2.Conflict
	err       error
}

// startProbe runs Probe in the bubble; its result arrives on the channel.
func startProbe(a *l2.Announcer, addr netip.Addr, ifaces []string, count int, wait time.Duration) <-chan probeResult {
	done := make(chan probeResult, 1)
	go func() {
		c, err := a.Probe(context.Background(), addr, ifaces, count, wait)
		done <- probeResult{c, err}
	}()
	synctest.Wait() // the first probe is out
	return done
}

func TestProbe(t *testing.T) {
	mac0 := ifMAC("eth0")
	arpProbe := arpOut{EthDst: "ff:ff:ff:ff:ff:ff", EthSrc: mac0.String(), Op: arp.OperationRequest,
		SHA: mac0.String(), SPA: "0.0.0.0", THA: "00:00:00:00:00:00", TPA: vip4.String()}
	dad := nsOut{EthDst: "33:33:ff:00:00:10", EthSrc: mac0.String(), Src: "::", Dst: "ff02::1:ff00:10",
		HopLimit: 255, ChecksumOK: true, Target: vip6.String()}
	tests := []struct {
		name   string
		addr   netip.Addr
		answer []byte // what a device on the link sends after the first probe
		want   []l2.Conflict
	}{
		{"IPv4, silence", vip4, nil, nil},
		{"IPv4, the owner replies to our MAC", vip4,
			arpReq{ethDst: mac0, from: rivalMAC, op: arp.OperationReply, sender: vip4, target: netip.IPv4Unspecified()}.frame(),
			[]l2.Conflict{conflict(vip4, "eth0", rivalMAC, l2.KindARPReply)}},
		{"IPv4, another device probes too", vip4,
			arpReq{from: rivalMAC, sender: netip.IPv4Unspecified(), target: vip4}.frame(),
			[]l2.Conflict{conflict(vip4, "eth0", rivalMAC, l2.KindProbe)}},
		{"IPv4, someone asks for it: no conflict", vip4, arpReq{from: rivalMAC, target: vip4}.frame(), nil},
		{"IPv6, silence", vip6, nil, nil},
		{"IPv6, the owner defends to all nodes", vip6, naReq{from: rivalMAC, target: vip6}.frame(),
			[]l2.Conflict{conflict(vip6, "eth0", rivalMAC, l2.KindNeighborAdvertisement)}},
		{"IPv6, another device's DAD", vip6, nsReq{from: rivalMAC, src: netip.IPv6Unspecified(), target: vip6, noSLLA: true}.frame(),
			[]l2.Conflict{conflict(vip6, "eth0", rivalMAC, l2.KindProbe)}},
		{"IPv6, someone resolves it: no conflict", vip6, nsReq{from: rivalMAC, target: vip6}.frame(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := newFakeNet("eth0")
				a, _ := newAnnouncer(t, n, l2.Options{})
				run(t, a)
				start := time.Now()
				done := startProbe(a, tt.addr, eth0, 2, 300*time.Millisecond)
				proto := "arp"
				if tt.addr.Is6() {
					proto = "ndp"
				}
				c := n.conn(t, "eth0", proto)
				if proto == "ndp" {
					if diff := cmp.Diff([]string{"ff02::1:ff00:10"}, n.joined("eth0")); diff != "" {
						t.Errorf("groups while probing (-want +got):\n%s", diff) // where another device's DAD goes
					}
				}
				if tt.answer != nil {
					c.push(t, tt.answer)
				}
				res := <-done
				if res.err != nil {
					t.Fatalf("Probe: %v", res.err)
				}
				if got := time.Since(start); got != 300*time.Millisecond {
					t.Errorf("Probe returned after %v, want 300ms", got)
				}
				if diff := cmp.Diff(tt.want, res.conflicts, ignoreAt); diff != "" {
					t.Errorf("conflicts (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(tt.want, drain(a), ignoreAt); diff != "" {
					t.Errorf("Conflicts() (-want +got):\n%s", diff)
				}

				// Two probes, 150ms apart; nothing answered for the address.
				sent := c.take()
				var at []time.Duration
				for _, s := range sent {
					at = append(at, s.at.Sub(start))
					if proto == "arp" {
						if diff := cmp.Diff(arpProbe, decodeARP(t, s)); diff != "" {
							t.Errorf("ARP probe (-want +got):\n%s", diff)
						}
					} else if diff := cmp.Diff(dad, decodeNS(t, s)); diff != "" {
						t.Errorf("DAD solicitation (-want +got):\n%s", diff)
					}
				}
				if diff := cmp.Diff([]time.Duration{0, 150 * time.Millisecond}, at); diff != "" {
					t.Errorf("probe times (-want +got):\n%s", diff)
				}

				// The socket only this Probe needed closes shortly after.
				time.Sleep(2 * time.Second)
				synctest.Wait()
				if !c.isClosed() {
					t.Error("the probe's socket is still open 2s after it ended")
				}
			})
		})
	}
}

// A Probe shares the socket of the addresses being answered, and Set does
// not close it while the Probe runs; the Probe's address is not answered.
func TestProbeDuringSet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet("eth0")
		a, _ := newAnnouncer(t, n, l2.Options{GratuitousRepeat: -1})
		run(t, a)
		a.Set(set(vip4b, eth0))
		c := n.conn(t, "eth0", "arp")
		c.take()

		done := startProbe(a, vip4, eth0, 2, 300*time.Millisecond)
		a.Set(nil) // vip4b gone: the socket stays for the Probe
		if c.isClosed() || n.opened("eth0", "arp") != 1 {
			t.Fatalf("socket closed %v, opened %d times, want open and once", c.isClosed(), n.opened("eth0", "arp"))
		}
		a.Set(set(vip4b, eth0)) // and back, on the same socket
		c.push(t, arpReq{from: rivalMAC, target: vip4}.frame())
		if got := decodeAllARP(t, c.take()); len(got) != 2 || got[0].TPA != vip4.String() || got[1].SPA != vip4b.String() {
			t.Errorf("sent %+v, want the probe for %s and the announcement of %s, no reply for the probed address", got, vip4, vip4b)
		}
		c.push(t, arpReq{ethDst: ifMAC("eth0"), from: rivalMAC, op: arp.OperationReply, sender: vip4, target: netip.IPv4Unspecified()}.frame())

		res := <-done
		if res.err != nil {
			t.Fatalf("Probe: %v", res.err)
		}
		if diff := cmp.Diff([]l2.Conflict{conflict(vip4, "eth0", rivalMAC, l2.KindARPReply)}, res.conflicts, ignoreAt); diff != "" {
			t.Errorf("conflicts (-want +got):\n%s", diff)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if c.isClosed() {
			t.Error("the socket of an answered address closed when the Probe ended")
		}
	})
}

// Many concurrent Probes share one socket per interface.
func TestProbeMany(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet("eth0", "eth1")
		a, _ := newAnnouncer(t, n, l2.Options{})
		run(t, a)
		var dones []<-chan probeResult
		for i := range 500 {
			addr := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
			if i >= 250 {
				addr = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)})
			}
			dones = append(dones, startProbe(a, addr, []string{"eth0", "eth1"}, 2, 300*time.Millisecond))
		}
		for _, d := range dones {
			if res := <-d; res.err != nil || res.conflicts != nil {
				t.Fatalf("Probe: %v, %v", res.conflicts, res.err)
			}
		}
		for _, k := range []string{"eth0/arp", "eth0/ndp", "eth1/arp", "eth1/ndp"} {
			name, proto, _ := strings.Cut(k, "/")
			if got := n.opened(name, proto); got != 1 {
				t.Errorf("%s: %d sockets opened, want 1", k, got)
			}
			if got := n.conn(t, name, proto).count(); got != 500 {
				t.Errorf("%s: %d probes sent, want 500", k, got)
			}
		}
	})
}

func TestProbeErrors(t *testing.T) {
	t.Run("not running", func(t *testing.T) {
		a := l2.New(l2.Options{})
		if _, err := a.Probe(context.Background(), vip4, eth0, 1, time.Millisecond); !errors.Is(err, l2.ErrNotRunning) {
			t.Errorf("Probe before Run: %v, want ErrNotRunning", err)
		}
	})
	t.Run("an interface that cannot be opened", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			n := newFakeNet("eth0", "eth1")
			n.failOpen("eth1", errors.New("operation not permitted"))
			a, _ := newAnnouncer(t, n, l2.Options{})
			run(t, a)
			done := startProbe(a, vip4, []string{"eth0", "eth1"}, 1, 100*time.Millisecond)
			n.conn(t, "eth0", "arp").push(t, arpReq{from: rivalMAC, sender: vip4, target: vip4}.frame())
			res := <-done
			if res.err == nil || len(res.conflicts) != 1 {
				t.Errorf("Probe: %v, %v; want eth0's conflict and eth1's error", res.conflicts, res.err)
			}
		})
	})
	t.Run("not an address", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a, _ := newAnnouncer(t, newFakeNet("eth0"), l2.Options{})
			run(t, a)
			for _, addr := range []netip.Addr{{}, netip.IPv4Unspecified(), netip.MustParseAddr("ff02::1")} {
				if _, err := a.Probe(context.Background(), addr, eth0, 1, time.Millisecond); err == nil {
					t.Errorf("Probe(%v) succeeded", addr)
				}
			}
		})
	})
}

func TestAnnounce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newFakeNet("eth0")
		a, _ := newAnnouncer(t, n, l2.Options{GratuitousRepeat: 1, RefreshInterval: -1})
		run(t, a)
		a.Set(set(vip4, eth0))
		time.Sleep(time.Second)
		c := n.conn(t, "eth0", "arp")
		c.take()

		start := time.Now()
		a.Announce(vip4)
		a.Announce(vip4b) // not answered: nothing
		time.Sleep(time.Second)
		synctest.Wait()
		sent := c.take()
		var at []time.Duration
		for _, s := range sent {
			at = append(at, s.at.Sub(start))
		}
		if diff := cmp.Diff([]arpOut{garp("eth0", vip4), garp("eth0", vip4)}, decodeAllARP(t, sent)); diff != "" {
			t.Errorf("sent (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]time.Duration{0, 200 * time.Millisecond}, at); diff != "" {
			t.Errorf("times (-want +got):\n%s", diff)
		}
	})
}
