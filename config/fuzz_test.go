package config_test

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/heraldlb/herald/config"
)

func FuzzParse(f *testing.F) {
	for _, d := range [][]byte{
		[]byte(fullDoc),
		[]byte(metalLBDoc),
		pools(pool("a", "10.0.0.0/24", "10.0.0.100-10.0.1.20"), pool("b", "2001:db8::/120", "2001:db8::1:0-2001:db8::1:ff")),
		peers(with(peer("p", "192.0.2.1"), "holdTime", "9s", "keepaliveTime", "3s"), peer("q", "2001:db8::1")),
		peers(with(peer("b", "192.0.2.1"), "nodeSelector", selector("matchLabels", obj{"rack": "b"})), peer("a", "192.0.2.1")),
		doc("pools", list(pool("a", "10.0.0.0/24")), "bgpAdvertisements", list(with(bgpAdv("x"), "aggregationLength", 24))),
		[]byte("x: &p {name: a}\npools:\n- <<: *p\n  addresses: [10.0.0.1]\n"),
	} {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := config.Parse(b)
		if err != nil {
			checkProblems(t, cfg, err)
			return
		}
		checkConfig(t, cfg)
		again, err := config.Parse(b)
		if err != nil {
			t.Fatalf("second Parse failed: %v", err)
		}
		if diff := cmp.Diff(cfg, again, cmpOpts); diff != "" {
			t.Errorf("Parse is not deterministic (-first +second):\n%s", diff)
		}
	})
}

func FuzzParseMetalLB(f *testing.F) {
	for _, d := range []string{
		metalLBDoc,
		"address-pools:\n- {name: lan, protocol: layer2, addresses: [192.0.2.0/28]}\n",
		"peers:\n- {peer-address: 192.0.2.1, peer-asn: 1, my-asn: 2, node-selectors: [{match-labels: {a: b}}, {}]}\n",
		fullDoc,
	} {
		f.Add([]byte(d))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, warnings, err := config.ParseMetalLB(b)
		for _, w := range warnings {
			if !strings.Contains(w, ": ") {
				t.Errorf("warning %q names no place", w)
			}
		}
		if err != nil {
			checkProblems(t, cfg, err)
			return
		}
		checkConfig(t, cfg)
	})
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{
		"198.51.100.0/24", "198.51.100.10 - 198.51.100.20", "203.0.113.7", "2001:db8::/64",
		"2001:db8::1-2001:db8::ff", "::ffff:10.0.0.1", "fe80::1%eth0", "198.51.100.5/24", "10.0.0.5-10.0.0.1",
		"tor1.example.com", "10.0.0.0/033", strings.Repeat("1.", 50),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := config.ParseRange(s)
		if err != nil {
			msg := err.Error()
			if len(s) <= 40 && !strings.HasPrefix(msg, strconv.Quote(s)+": ") {
				t.Errorf("error %q does not start with the input", err)
			}
			if len(msg) > maxLine || goName(msg) != "" {
				t.Errorf("error %q is long or names Go code", msg)
			}
			return
		}
		checkRange(t, r)
		back, err := config.ParseRange(r.String())
		if err != nil {
			t.Fatalf("ParseRange(%q) of %q.String(): %v", r.String(), s, err)
		}
		if back != r {
			t.Errorf("ParseRange(%q) = %v; want %v", r.String(), back, r)
		}
	})
}

// checkProblems checks the failure side of a parse.
func checkProblems(t *testing.T, cfg *config.Config, err error) {
	t.Helper()
	if cfg != nil {
		t.Error("a configuration came with an error")
	}
	checkBounded(t, err, nil)
	ls := lines(err)
	for _, l := range ls {
		if !strings.Contains(l, ": ") {
			t.Errorf("problem %q names no place", l)
		}
	}
}

func checkRange(t *testing.T, r config.Range) {
	t.Helper()
	switch {
	case !r.From.IsValid() || !r.To.IsValid():
		t.Errorf("%v: invalid address", r)
	case r.From.Compare(r.To) > 0:
		t.Errorf("%v: From after To", r)
	case r.From.Is4() != r.To.Is4():
		t.Errorf("%v: two families", r)
	case r.From.Zone() != "" || r.To.Zone() != "":
		t.Errorf("%v: zone", r)
	case r.From.Is4In6():
		// A written IPv4-mapped address is refused. A prefix such as ::/80
		// may still end in the mapped block; Parse refuses it in a pool.
		t.Errorf("%v: IPv4-mapped", r)
	case !r.Contains(r.From) || !r.Contains(r.To):
		t.Errorf("%v: does not contain its ends", r)
	}
}

var reservedBlocks = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"), netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"), netip.MustParsePrefix("255.255.255.255/32"), netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("::ffff:0:0/96"), netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"),
}

// checkConfig checks what Parse promises of a configuration it returns.
func checkConfig(t *testing.T, cfg *config.Config) {
	t.Helper()
	checkNames(t, "pools", cfg.Pools, func(p config.Pool) string { return p.Name })
	checkNames(t, "l2Advertisements", cfg.L2Advertisements, func(a config.L2Advertisement) string { return a.Name })
	checkNames(t, "bgpPeers", cfg.BGPPeers, func(p config.BGPPeer) string { return p.Name })
	checkNames(t, "bfdProfiles", cfg.BFDProfiles, func(p config.BFDProfile) string { return p.Name })
	checkNames(t, "communities", cfg.Communities, func(c config.Community) string { return c.Name })
	checkNames(t, "bgpAdvertisements", cfg.BGPAdvertisements, func(a config.BGPAdvertisement) string { return a.Name })

	var all []config.Range
	for _, p := range cfg.Pools {
		if len(p.Ranges) == 0 {
			t.Errorf("pool %q has no ranges", p.Name)
		}
		for i, r := range p.Ranges {
			checkRange(t, r)
			if i > 0 {
				if prev := p.Ranges[i-1]; prev.To.Compare(r.From) >= 0 || prev.To.Next() == r.From {
					t.Errorf("pool %q: ranges %v and %v are not sorted, apart and merged", p.Name, prev, r)
				}
			}
			for _, b := range reservedBlocks {
				if r.Contains(b.Addr()) || b.Contains(r.From) {
					t.Errorf("pool %q: %v touches %v", p.Name, r, b)
				}
			}
			if got, ok := cfg.PoolOf(r.To); !ok || got.Name != p.Name {
				t.Errorf("PoolOf(%v) = %q, %v; want %q", r.To, got.Name, ok, p.Name)
			}
		}
		all = append(all, p.Ranges...)
		if p.Allocation != nil && (p.Allocation.NamespaceSelector == nil || p.Allocation.ServiceSelector == nil) {
			t.Errorf("pool %q: nil selector", p.Name)
		}
	}
	slices.SortFunc(all, func(a, b config.Range) int { return a.From.Compare(b.From) })
	for i := 1; i < len(all); i++ {
		if all[i-1].To.Compare(all[i].From) >= 0 {
			t.Errorf("ranges %v and %v overlap", all[i-1], all[i])
		}
	}

	poolNames := names(cfg.Pools, func(p config.Pool) string { return p.Name })
	for _, a := range cfg.L2Advertisements {
		checkRefs(t, a.Name, a.Pools, poolNames)
		if a.NodeSelector == nil {
			t.Errorf("l2Advertisement %q: nil selector", a.Name)
		}
	}
	bfd := names(cfg.BFDProfiles, func(p config.BFDProfile) string { return p.Name })
	for _, p := range cfg.BGPPeers {
		switch {
		case !p.Address.IsValid() || p.Port == 0 || p.ASN == 0 || p.MyASN == 0 || p.NodeSelector == nil:
			t.Errorf("peer %q: missing address, port, ASN or selector", p.Name)
		case p.HoldTime != 0 && (p.HoldTime < 3e9 || p.KeepaliveTime <= 0 || p.KeepaliveTime >= p.HoldTime):
			t.Errorf("peer %q: timers %v/%v", p.Name, p.HoldTime, p.KeepaliveTime)
		case p.HoldTime == 0 && p.KeepaliveTime != 0:
			t.Errorf("peer %q: keepalive without hold time", p.Name)
		case p.ConnectTime <= 0:
			t.Errorf("peer %q: connectTime %v", p.Name, p.ConnectTime)
		case p.BFDProfile != "" && !bfd[p.BFDProfile]:
			t.Errorf("peer %q: bfdProfile %q not defined", p.Name, p.BFDProfile)
		}
	}
	checkSharedPeers(t, cfg.BGPPeers)
	for _, b := range cfg.BFDProfiles {
		if b.ReceiveInterval < 1e7 || b.TransmitInterval < 1e7 || b.DetectMultiplier < 2 || b.DetectMultiplier > 255 {
			t.Errorf("bfdProfile %+v out of bounds", b)
		}
	}
	peerNames := names(cfg.BGPPeers, func(p config.BGPPeer) string { return p.Name })
	for _, a := range cfg.BGPAdvertisements {
		checkRefs(t, a.Name, a.Pools, poolNames)
		checkRefs(t, a.Name, a.Peers, peerNames)
		if a.AggregationLength < 0 || a.AggregationLength > 32 || a.AggregationLengthV6 < 0 || a.AggregationLengthV6 > 128 {
			t.Errorf("bgpAdvertisement %q: aggregation lengths %d/%d", a.Name, a.AggregationLength, a.AggregationLengthV6)
			continue
		}
		for _, p := range cfg.Pools {
			if len(a.Pools) > 0 && !slices.Contains(a.Pools, p.Name) {
				continue
			}
			for _, r := range p.Ranges {
				l := a.AggregationLength
				if !r.Is4() {
					l = a.AggregationLengthV6
				}
				first := netip.PrefixFrom(r.From, l).Masked()
				last := netip.PrefixFrom(r.To, l).Masked()
				if first.Addr() != r.From || last.Contains(r.To.Next()) {
					t.Errorf("bgpAdvertisement %q: /%d aggregates of pool %q go beyond %v", a.Name, l, p.Name, r)
				}
			}
		}
	}
}

// checkSharedPeers checks the peers at each address and port: ranked 0 to
// n-1 and no two with the same selector.
func checkSharedPeers(t *testing.T, peers []config.BGPPeer) {
	t.Helper()
	type endpoint struct {
		addr netip.Addr
		port uint16
	}
	at := map[endpoint][]config.BGPPeer{}
	for _, p := range peers {
		e := endpoint{p.Address, p.Port}
		at[e] = append(at[e], p)
	}
	for e, ps := range at {
		ranks, selectors := map[int]bool{}, map[string]bool{}
		for _, p := range ps {
			if p.Rank < 0 || p.Rank >= len(ps) || ranks[p.Rank] {
				t.Errorf("peer %q at %v port %d: rank %d of %d peers, or a rank twice", p.Name, e.addr, e.port, p.Rank, len(ps))
			}
			ranks[p.Rank] = true
			if p.NodeSelector == nil {
				continue
			}
			if s := p.NodeSelector.String(); selectors[s] {
				t.Errorf("peer %q at %v port %d: another peer there selects %q", p.Name, e.addr, e.port, s)
			}
			selectors[p.NodeSelector.String()] = true
		}
	}
}

func checkNames[T any](t *testing.T, section string, items []T, name func(T) string) {
	t.Helper()
	for i := 1; i < len(items); i++ {
		if name(items[i-1]) >= name(items[i]) {
			t.Errorf("%s: %q before %q: not sorted by name, or a name twice", section, name(items[i-1]), name(items[i]))
		}
	}
}

func names[T any](items []T, name func(T) string) map[string]bool {
	m := map[string]bool{}
	for _, it := range items {
		m[name(it)] = true
	}
	return m
}

func checkRefs(t *testing.T, owner string, refs []string, known map[string]bool) {
	t.Helper()
	if !slices.IsSorted(refs) {
		t.Errorf("%q: references %q not sorted", owner, refs)
	}
	for _, r := range refs {
		if !known[r] {
			t.Errorf("%q: reference %q not defined", owner, r)
		}
	}
}
