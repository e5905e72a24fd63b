package bgp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldlb/herald/bgp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

var (
	hostA   = netip.MustParseAddr("198.51.100.1")  // our source towards FRR's .2
	hostB   = netip.MustParseAddr("198.51.100.11") // our source towards FRR's .3
	host6   = netip.MustParseAddr("2001:db8::1")
	frrA    = netip.MustParseAddr("198.51.100.2")
	frrB    = netip.MustParseAddr("198.51.100.3")
	frr6    = netip.MustParseAddr("2001:db8::2")
	routerI = netip.MustParseAddr("198.51.100.1")
)

// peer returns a session to FRR's address to from our address from.
func peer(name string, to, from netip.Addr, myASN uint32) bgp.Peer {
	return bgp.Peer{
		Name: name, Address: to, SourceAddress: from, ASN: routerASN, MyASN: myASN,
		HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second, ConnectTime: time.Second,
	}
}

// routerNeighbor configures FRR for one of our sessions (FRR knows us by
// our source address) and removes it when the test ends.
func routerNeighbor(t *testing.T, ours netip.Addr, asn uint32, extra ...string) {
	t.Helper()
	n := ours.String()
	lines := []string{"configure terminal", fmt.Sprintf("router bgp %d", routerASN),
		fmt.Sprintf("neighbor %s remote-as %d", n, asn), fmt.Sprintf("neighbor %s timers connect 1", n)}
	for _, e := range extra {
		lines = append(lines, fmt.Sprintf("neighbor %s %s", n, e))
	}
	lines = append(lines, "address-family ipv4 unicast", "neighbor "+n+" activate", "exit-address-family",
		"address-family ipv6 unicast", "neighbor "+n+" activate", "exit-address-family")
	if _, err := vtysh(lines...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := vtysh("configure terminal", fmt.Sprintf("router bgp %d", routerASN), "no neighbor "+n); err != nil {
			t.Errorf("remove FRR neighbor: %v", err)
		}
	})
}

type testServer struct {
	*bgp.Server
	logs *observer.ObservedLogs
	stop func()
}

// start runs a Server until the test ends (or stop is called), logging
// at Debug into an observer and the test log.
func start(t *testing.T, opts bgp.Options) *testServer {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	if opts.Log == nil {
		opts.Log = zap.New(core)
	}
	s := bgp.New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Errorf("Run did not return")
			}
		})
	}
	t.Cleanup(stop)
	t.Cleanup(func() {
		if t.Failed() {
			for _, e := range logs.All() {
				if e.Level > zapcore.DebugLevel || testing.Verbose() {
					t.Logf("%s %s %s %v", e.Time.Format("15:04:05.000"), e.Level, e.Message, e.ContextMap())
				}
			}
		}
	})
	return &testServer{Server: s, logs: logs, stop: stop}
}

func set(t *testing.T, s *testServer, d bgp.Desired) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Set(ctx, d); err != nil {
		t.Fatalf("Set: %v", err)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type neighborInfo struct {
	State string `json:"bgpState"`
	// Epoch is computed from FRR's uptime and may drift by a second; the
	// count of connections established is exact.
	Epoch       int64 `json:"bgpTimerUpEstablishedEpoch"`
	Established int   `json:"connectionsEstablished"`
}

func neighbor(ours netip.Addr) (neighborInfo, error) {
	var m map[string]neighborInfo
	if err := vtyshJSON("show bgp neighbors "+ours.String()+" json", &m); err != nil {
		return neighborInfo{}, err
	}
	return m[ours.String()], nil
}

// established waits for FRR's sessions with ours and returns, for each,
// how many times it was established.
func established(t *testing.T, ours ...netip.Addr) map[netip.Addr]int {
	t.Helper()
	epochs := map[netip.Addr]int{}
	for _, a := range ours {
		waitFor(t, 30*time.Second, "FRR session with "+a.String(), func() error {
			n, err := neighbor(a)
			if err != nil {
				return err
			}
			if n.State != "Established" {
				return fmt.Errorf("state %q", n.State)
			}
			epochs[a] = n.Established
			return nil
		})
	}
	return epochs
}

type frrPath struct {
	Peer struct {
		ID string `json:"peerId"`
	} `json:"peer"`
	Nexthops []struct {
		IP string `json:"ip"`
	} `json:"nexthops"`
	LocPrf    *int `json:"locPrf"`
	Community *struct {
		String string `json:"string"`
	} `json:"community"`
	LargeCommunity *struct {
		String string `json:"string"`
	} `json:"largeCommunity"`
	Stale bool `json:"stale"`
}

// paths returns FRR's paths for p, keyed by the peer (our source address).
func paths(p netip.Prefix) (map[string]frrPath, error) {
	fam := "ipv4"
	if p.Addr().Is6() {
		fam = "ipv6"
	}
	out, err := vtysh(fmt.Sprintf("show bgp %s unicast %s json", fam, p))
	if err != nil {
		if strings.Contains(out, "not in table") {
			return nil, nil
		}
		return nil, err
	}
	var r struct {
		Paths []frrPath `json:"paths"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return nil, fmt.Errorf("decode %s: %w", out, err)
	}
	m := map[string]frrPath{}
	for _, x := range r.Paths {
		m[x.Peer.ID] = x
	}
	return m, nil
}

// pathFrom waits until FRR has p from peer ours and returns it.
func pathFrom(t *testing.T, p netip.Prefix, ours netip.Addr) frrPath {
	t.Helper()
	var got frrPath
	waitFor(t, 15*time.Second, fmt.Sprintf("%s from %s at FRR", p, ours), func() error {
		m, err := paths(p)
		if err != nil {
			return err
		}
		x, ok := m[ours.String()]
		if !ok {
			return fmt.Errorf("paths: %+v", m)
		}
		got = x
		return nil
	})
	return got
}

// noPathFrom waits until FRR has no path for p from ours.
func noPathFrom(t *testing.T, p netip.Prefix, ours netip.Addr) {
	t.Helper()
	waitFor(t, 15*time.Second, fmt.Sprintf("%s from %s gone at FRR", p, ours), func() error {
		m, err := paths(p)
		if err != nil {
			return err
		}
		if x, ok := m[ours.String()]; ok {
			return fmt.Errorf("still there: %+v", x)
		}
		return nil
	})
}

// received returns how many prefixes FRR accepted from ours, per family.
func received(ours netip.Addr, fam string) (int, error) {
	var r struct {
		Peers map[string]struct {
			PfxRcd int `json:"pfxRcd"`
		} `json:"peers"`
	}
	if err := vtyshJSON("show bgp "+fam+" unicast summary json", &r); err != nil {
		return 0, err
	}
	p, ok := r.Peers[ours.String()]
	if !ok {
		return 0, errors.New("no such peer")
	}
	return p.PfxRcd, nil
}

func desired(peers []bgp.Peer, advs []bgp.Advertisement, routes map[netip.Prefix][]string) bgp.Desired {
	return bgp.Desired{
		RouterID: routerI, NextHopV4: hostA, NextHopV6: host6,
		Peers: peers, Advertisements: advs, Routes: routes,
	}
}

func statusOf(s *bgp.Server, name string) (bgp.PeerStatus, bool) {
	for _, p := range s.Peers() {
		if p.Name == name {
			return p, true
		}
	}
	return bgp.PeerStatus{}, false
}
