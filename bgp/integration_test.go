package bgp_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/heraldlb/herald/bgp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var (
	v4a = netip.MustParsePrefix("203.0.113.10/32")
	v4b = netip.MustParsePrefix("203.0.113.20/32")
	v6a = netip.MustParsePrefix("2001:db8:100::10/128")
	all = []bgp.Advertisement{{Name: "all"}}
)

// TestSessions covers iBGP, eBGP with a 4-byte ASN, an IPv6 session, both
// families over each session with their next hops, and the metrics.
func TestSessions(t *testing.T) {
	needFRR(t)
	routerNeighbor(t, hostA, routerASN)  // iBGP
	routerNeighbor(t, hostB, 4200000001) // eBGP, 4-byte ASN
	routerNeighbor(t, host6, 64513)      // eBGP over IPv6
	reg := prometheus.NewPedanticRegistry()
	s := start(t, bgp.Options{Registerer: reg})
	set(t, s, desired([]bgp.Peer{
		peer("a", frrA, hostA, routerASN),
		peer("b", frrB, hostB, 4200000001),
		peer("c", frr6, host6, 64513),
	}, all, map[netip.Prefix][]string{v4a: {"all"}, v6a: {"all"}}))
	established(t, hostA, hostB, host6)

	for _, tc := range []struct {
		prefix  netip.Prefix
		from    netip.Addr
		nexthop string
	}{
		{v4a, hostA, "198.51.100.1"},  // v4 over v4: the session's address
		{v4a, hostB, "198.51.100.11"}, // eBGP: the session's address
		{v4a, host6, "198.51.100.1"},  // v4 over v6: NextHopV4
		{v6a, hostA, "2001:db8::1"},   // v6 over v4: NextHopV6
		{v6a, hostB, "2001:db8::1"},
		{v6a, host6, "2001:db8::1"}, // v6 over v6: the session's address
	} {
		p := pathFrom(t, tc.prefix, tc.from)
		if len(p.Nexthops) == 0 || p.Nexthops[0].IP != tc.nexthop {
			t.Errorf("%s from %s: next hops %+v, want %s", tc.prefix, tc.from, p.Nexthops, tc.nexthop)
		}
	}
	waitFor(t, 10*time.Second, "Peers() established", func() error {
		for _, p := range s.Peers() {
			if !p.Established || p.State != "established" || p.Advertised != 2 {
				return fmt.Errorf("%+v", p)
			}
		}
		return nil
	})
	if got := len(s.Peers()); got != 3 {
		t.Errorf("Peers(): %d, want 3", got)
	}
	want := `
# HELP herald_bgp_session_up 1 if the BGP session is established.
# TYPE herald_bgp_session_up gauge
herald_bgp_session_up{peer="a"} 1
herald_bgp_session_up{peer="b"} 1
herald_bgp_session_up{peer="c"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "herald_bgp_session_up"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n == 0 {
		t.Errorf("gather: %d metrics, %v", n, err)
	}
}

// TestIncremental adds and withdraws 100 prefixes and removes one peer;
// the remaining session never resets.
func TestIncremental(t *testing.T) {
	needFRR(t)
	routerNeighbor(t, hostA, 64513)
	routerNeighbor(t, hostB, 64513)
	s := start(t, bgp.Options{})
	peers := []bgp.Peer{peer("a", frrA, hostA, 64513), peer("b", frrB, hostB, 64513)}
	routes := map[netip.Prefix][]string{}
	set(t, s, desired(peers, all, routes))
	before := established(t, hostA, hostB)

	for i := range 100 {
		routes[netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 32)] = []string{"all"}
	}
	set(t, s, desired(peers, all, routes))
	waitFor(t, 15*time.Second, "100 prefixes", func() error {
		if n, err := received(hostA, "ipv4"); err != nil || n != 100 {
			return fmt.Errorf("%d %v", n, err)
		}
		return nil
	})
	for i := range 60 {
		delete(routes, netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 32))
	}
	set(t, s, desired(peers, all, routes))
	waitFor(t, 15*time.Second, "40 prefixes", func() error {
		if n, err := received(hostA, "ipv4"); err != nil || n != 40 {
			return fmt.Errorf("%d %v", n, err)
		}
		return nil
	})
	set(t, s, desired(peers[:1], all, routes)) // drop b
	waitFor(t, 15*time.Second, "b gone", func() error {
		if n, err := neighbor(hostB); err != nil || n.State == "Established" {
			return fmt.Errorf("%+v %v", n, err)
		}
		return nil
	})
	after := established(t, hostA)
	if after[hostA] != before[hostA] {
		t.Errorf("session a reset: established at %d, then %d", before[hostA], after[hostA])
	}
	if _, ok := statusOf(s.Server, "b"); ok {
		t.Errorf("Peers() still lists b")
	}
}

// TestAdvertisements checks per-advertisement attributes and peers, and
// that moving an advertisement between peers resets no session.
func TestAdvertisements(t *testing.T) {
	needFRR(t)
	routerNeighbor(t, hostA, routerASN) // iBGP: LOCAL_PREF is carried
	routerNeighbor(t, hostB, routerASN)
	s := start(t, bgp.Options{})
	peers := []bgp.Peer{peer("a", frrA, hostA, routerASN), peer("b", frrB, hostB, routerASN)}
	advs := []bgp.Advertisement{
		{Name: "gold", Peers: []string{"a"}, LocalPref: 200, Communities: []uint32{65000<<16 | 100}, LargeCommunities: [][3]uint32{{64512, 1, 2}}},
		{Name: "silver", LocalPref: 150, Communities: []uint32{65000<<16 | 200}},
		{Name: "onlyb", Peers: []string{"b"}},
	}
	routes := map[netip.Prefix][]string{v4a: {"gold", "silver"}, v4b: {"onlyb"}, v6a: {"gold"}}
	set(t, s, desired(peers, advs, routes))
	before := established(t, hostA, hostB)

	p := pathFrom(t, v4a, hostA)
	if p.LocPrf == nil || *p.LocPrf != 200 {
		t.Errorf("%s from a: local pref %v, want 200", v4a, p.LocPrf)
	}
	if p.Community == nil || p.Community.String != "65000:100 65000:200" {
		t.Errorf("%s from a: communities %+v, want both", v4a, p.Community)
	}
	if p.LargeCommunity == nil || p.LargeCommunity.String != "64512:1:2" {
		t.Errorf("%s from a: large communities %+v", v4a, p.LargeCommunity)
	}
	p = pathFrom(t, v4a, hostB) // silver only
	if p.LocPrf == nil || *p.LocPrf != 150 || p.Community == nil || p.Community.String != "65000:200" || p.LargeCommunity != nil {
		t.Errorf("%s from b: %+v, want silver's attributes only", v4a, p)
	}
	pathFrom(t, v6a, hostA)
	pathFrom(t, v4b, hostB)
	noPathFrom(t, v4b, hostA)
	noPathFrom(t, v6a, hostB)

	// gold moves to b only: a loses v6a, b gains it; v4a at a keeps silver.
	advs[0].Peers = []string{"b"}
	set(t, s, desired(peers, advs, routes))
	pathFrom(t, v6a, hostB)
	noPathFrom(t, v6a, hostA)
	waitFor(t, 10*time.Second, "a's attributes follow", func() error {
		m, err := paths(v4a)
		if err != nil {
			return err
		}
		if x := m[hostA.String()]; x.LocPrf == nil || *x.LocPrf != 150 {
			return fmt.Errorf("%+v", x)
		}
		return nil
	})
	// v4b now only through gold (to b) and silver (to all).
	routes[v4b] = []string{"silver"}
	set(t, s, desired(peers, advs, routes))
	pathFrom(t, v4b, hostA)
	after := established(t, hostA, hostB)
	if after[hostA] != before[hostA] || after[hostB] != before[hostB] {
		t.Errorf("sessions reset: %v then %v", before, after)
	}
}

// TestPassword: the right TCP-MD5 key establishes, a wrong one does not,
// and no key ever reaches the logs.
func TestPassword(t *testing.T) {
	needFRR(t)
	const right, wrong, routerB = "s3cret-right-key", "s3cret-wrong-key", "s3cret-routers-key"
	routerNeighbor(t, hostA, 64513, "password "+right)
	routerNeighbor(t, hostB, 64513, "password "+routerB)
	s := start(t, bgp.Options{})
	a, b := peer("a", frrA, hostA, 64513), peer("b", frrB, hostB, 64513)
	a.Password, b.Password = right, wrong
	set(t, s, desired([]bgp.Peer{a, b}, all, map[netip.Prefix][]string{v4a: {"all"}}))
	established(t, hostA)
	pathFrom(t, v4a, hostA)
	time.Sleep(3 * time.Second) // b keeps trying
	if st, _ := statusOf(s.Server, "b"); st.Established || st.State == "established" {
		t.Errorf("b with a wrong password: %+v", st)
	}
	if n, err := neighbor(hostB); err != nil || n.State == "Established" {
		t.Errorf("FRR's b: %+v %v", n, err)
	}
	s.stop()
	for _, e := range s.logs.All() {
		line := e.Message + fmt.Sprint(e.ContextMap())
		for _, pw := range []string{right, wrong} {
			if strings.Contains(line, pw) {
				t.Errorf("password in log: %s", line)
			}
		}
	}
	if s.logs.Len() == 0 {
		t.Error("no logs captured")
	}
}

// TestGracefulRestart: with GR, stopping leaves the route at FRR (stale)
// and the next process makes it fresh; without GR, stopping withdraws it.
func TestGracefulRestart(t *testing.T) {
	needFRR(t)
	routerNeighbor(t, hostA, 64513)
	routerNeighbor(t, hostB, 64513)
	a, b := peer("a", frrA, hostA, 64513), peer("b", frrB, hostB, 64513)
	a.GracefulRestart = true
	d := desired([]bgp.Peer{a, b}, all, map[netip.Prefix][]string{v4a: {"all"}})

	s := start(t, bgp.Options{})
	set(t, s, d)
	established(t, hostA, hostB)
	pathFrom(t, v4a, hostA)
	s.stop()

	noPathFrom(t, v4a, hostB)
	p := pathFrom(t, v4a, hostA)
	if !p.Stale {
		t.Errorf("%s from a after stop: %+v, want stale", v4a, p)
	}

	s2 := start(t, bgp.Options{})
	set(t, s2, d)
	established(t, hostA, hostB)
	waitFor(t, 20*time.Second, "fresh route", func() error {
		m, err := paths(v4a)
		if err != nil {
			return err
		}
		if x, ok := m[hostA.String()]; !ok || x.Stale {
			return fmt.Errorf("%+v", m)
		}
		return nil
	})
	pathFrom(t, v4a, hostB)
}

// TestManyPrefixes sends 10,000 /32s (198.18.0.0/15) in one Set.
func TestManyPrefixes(t *testing.T) {
	needFRR(t)
	routerNeighbor(t, hostA, 64513)
	s := start(t, bgp.Options{})
	peers := []bgp.Peer{peer("a", frrA, hostA, 64513)}
	set(t, s, desired(peers, all, nil))
	established(t, hostA)
	routes := map[netip.Prefix][]string{}
	for i := range 10000 {
		routes[netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32)] = []string{"all"}
	}
	t0 := time.Now()
	set(t, s, desired(peers, all, routes))
	tSet := time.Since(t0)
	waitFor(t, 60*time.Second, "10k prefixes at FRR", func() error {
		if n, err := received(hostA, "ipv4"); err != nil || n != 10000 {
			return fmt.Errorf("%d %v", n, err)
		}
		return nil
	})
	t.Logf("10k prefixes: Set took %v, at FRR after %v", tSet, time.Since(t0))
	t1 := time.Now()
	set(t, s, desired(peers, all, nil))
	waitFor(t, 60*time.Second, "10k withdrawn", func() error {
		if n, err := received(hostA, "ipv4"); err != nil || n != 0 {
			return fmt.Errorf("%d %v", n, err)
		}
		return nil
	})
	t.Logf("10k withdrawals at FRR after %v", time.Since(t1))
}

// TestPlannedStopTakesBFDAdminDown: a speaker with graceful restart and BFD
// that stops tells the router's BFD that the session is administratively
// down (RFC 5880 6.8.16) rather than falling silent; FRR, set to honour a
// control-plane-dependent BFD's failure as a restart
// (check-control-plane-failure), keeps the route as stale.
func TestPlannedStopTakesBFDAdminDown(t *testing.T) {
	needFRR(t)
	routerNeighbor(t, hostA, 64513, "bfd", "bfd check-control-plane-failure")
	a := peer("a", frrA, hostA, 64513)
	a.GracefulRestart = true
	a.BFD = &bgp.BFD{ReceiveInterval: 100 * time.Millisecond, TransmitInterval: 100 * time.Millisecond, DetectMultiplier: 3}
	s := start(t, bgp.Options{})
	set(t, s, desired([]bgp.Peer{a}, all, map[netip.Prefix][]string{v4a: {"all"}}))
	established(t, hostA)
	pathFrom(t, v4a, hostA)
	waitFor(t, 10*time.Second, "BFD up on FRR", func() error {
		p, err := frrBFDPeer(hostA)
		if err == nil && p.Status != "up" {
			err = fmt.Errorf("%+v", p)
		}
		return err
	})
	s.stop()
	waitFor(t, 2*time.Second, "FRR's BFD told AdminDown", func() error {
		p, err := frrBFDPeer(hostA)
		if err == nil && (p.Status != "down" || p.RemoteDiagnostic != "administratively down") {
			err = fmt.Errorf("%+v", p)
		}
		return err
	})
	if p := pathFrom(t, v4a, hostA); !p.Stale {
		t.Errorf("%s after a graceful stop with BFD: %+v, want kept as stale", v4a, p)
	}
}

type frrBFD struct {
	Peer             string `json:"peer"`
	Status           string `json:"status"`
	Diagnostic       string `json:"diagnostic"`
	RemoteDiagnostic string `json:"remote-diagnostic"`
}

func frrBFDPeer(ours netip.Addr) (frrBFD, error) {
	var all []frrBFD
	if err := vtyshJSON("show bfd peers json", &all); err != nil {
		return frrBFD{}, err
	}
	for _, p := range all {
		if p.Peer == ours.String() {
			return p, nil
		}
	}
	return frrBFD{}, fmt.Errorf("no BFD peer %s in %+v", ours, all)
}
