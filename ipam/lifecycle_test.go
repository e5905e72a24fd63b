package ipam_test

import (
	"math/big"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/ipam"
)

func TestKeepLeaveSettle(t *testing.T) {
	lan := pool("lan", "198.51.100.10-198.51.100.20")
	dmz := pool("dmz", "203.0.113.10-203.0.113.20")
	runScenarios(t, []scenario{
		{
			name:  "Assign is idempotent",
			pools: pools(lan),
			steps: []step{
				assign("x/a", req(), "198.51.100.10"),
				assign("x/a", req(), "198.51.100.10"),
				held("x/a", "198.51.100.10"),
				settle("x/a"),
			},
		},
		{
			name:  "an address stays when an unrelated one is freed",
			pools: pools(lan),
			steps: []step{
				assign("x/a", req(), "198.51.100.10"),
				assign("x/b", req(), "198.51.100.11"),
				release("x/a", "198.51.100.10"),
				assign("x/b", req(), "198.51.100.11"),
			},
		},
		{
			name:  "a disallowed address is leaving until Settle",
			pools: pools(lan, dmz),
			steps: []step{
				assign("x/a", req(fromPool("lan")), "198.51.100.10"),
				assign("x/a", req(fromPool("dmz")), "203.0.113.10"),
				held("x/a", "203.0.113.10", "198.51.100.10"),
				inUse("dmz/IPv4=1", "lan/IPv4=1"),
				// Nobody else gets a leaving address.
				assign("x/b", req(fromPool("lan")), "198.51.100.11"),
				assignErr("x/c", req(ips("198.51.100.10")), ipam.ErrAddressInUse, "", "being released by x/a"),
				settle("x/a", "198.51.100.10"),
				held("x/a", "203.0.113.10"),
				inUse("dmz/IPv4=1", "lan/IPv4=1"),
				assign("x/c", req(fromPool("lan")), "198.51.100.10"),
			},
		},
		{
			name:  "a leaving address allowed again is kept",
			pools: pools(lan, dmz),
			steps: []step{
				assign("x/a", req(fromPool("lan")), "198.51.100.10"),
				assign("x/a", req(fromPool("dmz")), "203.0.113.10"),
				assign("x/a", req(), "203.0.113.10"),
				assign("x/a", req(fromPool("lan")), "198.51.100.10"),
				held("x/a", "198.51.100.10", "203.0.113.10"),
				settle("x/a", "203.0.113.10"),
				settle("x/a"),
			},
		},
		{
			name:  "a new requested address replaces the old one",
			pools: pools(lan),
			steps: []step{
				assign("x/a", req(), "198.51.100.10"),
				assign("x/a", req(ips("198.51.100.15")), "198.51.100.15"),
				held("x/a", "198.51.100.15", "198.51.100.10"),
				settle("x/a", "198.51.100.10"),
			},
		},
		{
			name:  "an address of a family no longer asked for is leaving",
			pools: pools(pool("dual", "192.0.2.10-192.0.2.20, 2001:db8::10-2001:db8::20")),
			steps: []step{
				assign("x/a", req(preferDual), "192.0.2.10", "2001:db8::10"),
				assign("x/a", req(v6), "2001:db8::10"),
				settle("x/a", "192.0.2.10"),
				assign("x/a", req(families(ipam.RequireDualStack, ipam.IPv6, ipam.IPv4)), "2001:db8::10", "192.0.2.10"),
			},
		},
		{
			name:  "on error the allowed addresses are kept and nothing is taken",
			pools: pools(lan),
			steps: []step{
				assign("x/a", req(), "198.51.100.10"),
				assignErr("x/a", req(requireDual), ipam.ErrFamilyUnavailable, "198.51.100.10"),
				held("x/a", "198.51.100.10"),
				settle("x/a"),
			},
		},
		{
			name:  "on error disallowed addresses are leaving",
			pools: pools(lan),
			steps: []step{
				assign("x/a", req(), "198.51.100.10"),
				assignErr("x/a", req(fromPool("nope")), ipam.ErrNoMatchingPool),
				held("x/a", "198.51.100.10"),
				settle("x/a", "198.51.100.10"),
				held("x/a"),
			},
		},
		{
			name:  "an invalid request changes nothing",
			pools: pools(lan, dmz),
			steps: []step{
				assign("x/a", req(fromPool("lan")), "198.51.100.10"),
				assignErr("x/a", req(fromPool("dmz"), ips("203.0.113.10", "203.0.113.11")), ipam.ErrInvalidRequest, "198.51.100.10"),
				settle("x/a"),
				held("x/a", "198.51.100.10"),
			},
		},
		{
			name:  "Release returns current then leaving addresses",
			pools: pools(lan, dmz),
			steps: []step{
				assign("x/a", req(fromPool("lan")), "198.51.100.10"),
				assign("x/a", req(fromPool("dmz")), "203.0.113.10"),
				release("x/a", "203.0.113.10", "198.51.100.10"),
				held("x/a"),
				release("x/a"),
				inUse("dmz/IPv4=0", "lan/IPv4=0"),
			},
		},
		{
			name:  "a shared address is freed with its last holder",
			pools: pools(lan),
			steps: []step{
				assign("x/a", req(share("k", "TCP/80")), "198.51.100.10"),
				assign("x/b", req(share("k", "TCP/443")), "198.51.100.10"),
				inUse("lan/IPv4=1"),
				release("x/a", "198.51.100.10"),
				assign("x/c", req(), "198.51.100.11"),
				release("x/b", "198.51.100.10"),
				assign("x/d", req(), "198.51.100.10"),
			},
		},
		{
			name:  "the owner whose change breaks sharing moves",
			pools: pools(lan),
			steps: []step{
				assign("x/a", req(share("k", "TCP/80")), "198.51.100.10"),
				assign("x/b", req(share("k", "TCP/443")), "198.51.100.10"),
				assign("x/b", req(share("k", "TCP/80")), "198.51.100.11"),
				assign("x/a", req(share("k", "TCP/80")), "198.51.100.10"),
				held("x/b", "198.51.100.11", "198.51.100.10"),
				settle("x/b", "198.51.100.10"),
				held("x/a", "198.51.100.10"),
			},
		},
		{
			name:  "nobody joins an address one holder is releasing",
			pools: pools(lan),
			steps: []step{
				assign("x/a", req(share("k", "TCP/80")), "198.51.100.10"),
				assign("x/b", req(share("k", "TCP/443")), "198.51.100.10"),
				assign("x/a", req(share("j", "TCP/80")), "198.51.100.11"),
				assign("x/c", req(share("k", "TCP/8080")), "198.51.100.12"),
				settle("x/a", "198.51.100.10"),
				assign("x/d", req(share("k", "TCP/8080")), "198.51.100.10"),
			},
		},
		{
			name:  "a kept shared address ignores a holder that is leaving",
			pools: pools(lan),
			steps: []step{
				assign("x/a", req(share("k", "TCP/80")), "198.51.100.10"),
				assign("x/b", req(share("k", "TCP/443")), "198.51.100.10"),
				assign("x/a", req(share("j", "TCP/80")), "198.51.100.11"),
				assign("x/b", req(share("k", "TCP/443")), "198.51.100.10"),
				held("x/a", "198.51.100.11", "198.51.100.10"),
				held("x/b", "198.51.100.10"),
			},
		},
	})
}

func TestRestore(t *testing.T) {
	lan := pool("lan", "198.51.100.10-198.51.100.20")
	runScenarios(t, []scenario{
		{
			name:  "restored address kept by Assign",
			pools: pools(lan),
			steps: []step{
				restore("x/a", []string{"198.51.100.15"}, req(), nil),
				held("x/a", "198.51.100.15"),
				assign("x/b", req(), "198.51.100.10"),
				assign("x/a", req(), "198.51.100.15"),
				inUse("lan/IPv4=2"),
			},
		},
		{
			name:  "restored dual-stack addresses",
			pools: pools(pool("dual", "192.0.2.10-192.0.2.20, 2001:db8::10-2001:db8::20")),
			steps: []step{
				restore("x/a", []string{"2001:db8::15", "192.0.2.15"}, req(preferDual), nil),
				assign("x/a", req(preferDual), "192.0.2.15", "2001:db8::15"),
			},
		},
		{
			name:  "address in no pool",
			pools: pools(lan),
			steps: []step{
				restore("x/a", []string{"192.0.2.1"}, req(), ipam.ErrAddressNotInPool, "192.0.2.1"),
				held("x/a"),
			},
		},
		{
			name:  "all or nothing",
			pools: pools(lan),
			steps: []step{
				restore("x/a", []string{"198.51.100.15", "192.0.2.1"}, req(preferDual), ipam.ErrAddressNotInPool),
				held("x/a"),
				inUse("lan/IPv4=0"),
				assign("x/b", req(ips("198.51.100.15")), "198.51.100.15"),
			},
		},
		{
			name:  "held by another",
			pools: pools(lan),
			steps: []step{
				assign("x/b", req(ips("198.51.100.15")), "198.51.100.15"),
				restore("x/a", []string{"198.51.100.15"}, req(), ipam.ErrAddressInUse, "198.51.100.15", "x/b"),
				held("x/a"),
			},
		},
		{
			name:  "legally shared with another",
			pools: pools(lan),
			steps: []step{
				assign("x/b", req(share("k", "TCP/80"), ips("198.51.100.15")), "198.51.100.15"),
				restore("x/a", []string{"198.51.100.15"}, req(share("k", "TCP/443")), nil),
				inUse("lan/IPv4=1"),
				release("x/b", "198.51.100.15"),
				assignErr("x/c", req(ips("198.51.100.15")), ipam.ErrAddressInUse, "", "x/a"),
			},
		},
		{
			name:  "being released by another",
			pools: pools(lan),
			steps: []step{
				assign("x/b", req(ips("198.51.100.15")), "198.51.100.15"),
				assign("x/b", req(ips("198.51.100.16")), "198.51.100.16"),
				restore("x/a", []string{"198.51.100.15"}, req(), ipam.ErrAddressInUse, "being released by x/b"),
			},
		},
		{
			name:  "allocation rules are left to Assign",
			pools: pools(pool("shop", "192.0.2.10-192.0.2.20", allocation(namespaces("shop"))), lan),
			steps: []step{
				restore("x/a", []string{"192.0.2.15"}, req(), nil),
				assign("x/a", req(), "198.51.100.10"),
				held("x/a", "198.51.100.10", "192.0.2.15"),
			},
		},
		{
			name:  "an invalid request is stored and judged by Assign",
			pools: pools(lan),
			steps: []step{
				restore("x/a", []string{"198.51.100.15"}, req(families(ipam.SingleStack)), nil),
				assignErr("x/a", req(families(ipam.SingleStack)), ipam.ErrInvalidRequest, "198.51.100.15"),
			},
		},
		{
			name:  "a request that breaks the owner's sharing",
			pools: pools(lan),
			steps: []step{
				assign("x/a", req(share("k", "TCP/80")), "198.51.100.10"),
				assign("x/b", req(share("k", "TCP/443")), "198.51.100.10"),
				restore("x/b", []string{"198.51.100.15"}, req(share("k", "TCP/80")), ipam.ErrAddressInUse, "198.51.100.10", "x/a", "TCP/80"),
				held("x/b", "198.51.100.10"),
				restore("x/b", []string{"198.51.100.15"}, req(share("k", "TCP/8080")), nil),
				held("x/b", "198.51.100.10", "198.51.100.15"),
			},
		},
		{
			name:  "a zoned address is refused",
			pools: pools(pool("v6", "2001:db8::/64")),
			steps: []step{
				restore("x/a", []string{"2001:db8::1%eth0"}, req(v6), ipam.ErrInvalidRequest),
			},
		},
	})
}

func TestSetPools(t *testing.T) {
	lan := pool("lan", "198.51.100.10-198.51.100.20")
	dmz := pool("dmz", "203.0.113.10-203.0.113.20")
	none := map[ipam.Owner][]string{}
	runScenarios(t, []scenario{
		{
			name:  "pool removed",
			pools: pools(lan, dmz),
			steps: []step{
				assign("x/a", req(fromPool("lan")), "198.51.100.10"),
				assign("x/b", req(fromPool("dmz")), "203.0.113.10"),
				assign("x/c", req(), "203.0.113.11"),
				setPools(map[ipam.Owner][]string{"x/a": {"198.51.100.10"}}, dmz),
				held("x/a", "198.51.100.10"),
				inUse("dmz/IPv4=2"),
				assignErr("x/a", req(fromPool("lan")), ipam.ErrNoMatchingPool),
				assign("x/a", req(), "203.0.113.12"),
				settle("x/a", "198.51.100.10"),
				assign("x/b", req(fromPool("dmz")), "203.0.113.10"),
			},
		},
		{
			name:  "pool narrowed",
			pools: pools(lan),
			steps: []step{
				assign("x/a", req(), "198.51.100.10"),
				assign("x/b", req(ips("198.51.100.18")), "198.51.100.18"),
				setPools(map[ipam.Owner][]string{"x/b": {"198.51.100.18"}}, pool("lan", "198.51.100.10-198.51.100.15")),
				inUse("lan/IPv4=1"),
				assign("x/a", req(), "198.51.100.10"),
				assignErr("x/b", req(ips("198.51.100.18")), ipam.ErrAddressNotInPool),
			},
		},
		{
			name:  "pool widened keeps holdings out of the free set",
			pools: pools(pool("lan", "198.51.100.10-198.51.100.11")),
			steps: []step{
				assign("x/a", req(), "198.51.100.10"),
				assign("x/b", req(), "198.51.100.11"),
				setPools(none, pool("lan", "198.51.100.5-198.51.100.12")),
				inUse("lan/IPv4=2"),
				assign("x/c", req(), "198.51.100.5"),
				release("x/c", "198.51.100.5"),
				assignErr("x/d", req(fromPool("lan"), ips("198.51.100.11")), ipam.ErrAddressInUse, "", "x/b"),
			},
		},
		{
			name:  "an address outside every pool is given back to the pool that gains it",
			pools: pools(lan),
			steps: []step{
				assign("x/a", req(ips("198.51.100.20")), "198.51.100.20"),
				setPools(map[ipam.Owner][]string{"x/a": {"198.51.100.20"}}, pool("lan", "198.51.100.10-198.51.100.19")),
				setPools(none, lan),
				inUse("lan/IPv4=1"),
				assign("x/a", req(ips("198.51.100.20")), "198.51.100.20"),
			},
		},
		{
			name:  "IPv6 holdings across a 64-bit boundary survive a reload",
			pools: pools(pool("v6", "2001:db8::ffff:ffff:ffff:fffe-2001:db8:0:1::1")),
			steps: []step{
				assign("x/a", req(v6), "2001:db8::ffff:ffff:ffff:fffe"),
				assign("x/b", req(v6, ips("2001:db8:0:1::")), "2001:db8:0:1::"),
				setPools(none, pool("v6", "2001:db8::ffff:ffff:ffff:fffe-2001:db8:0:1::1")),
				inUse("v6/IPv6=2"),
				assign("x/c", req(v6), "2001:db8::ffff:ffff:ffff:ffff"),
				assign("x/d", req(v6), "2001:db8:0:1::1"),
			},
		},
		{
			name:  "selector changed",
			pools: pools(lan),
			steps: []step{
				assign("shop/a", req(inNamespace("shop")), "198.51.100.10"),
				assign("x/b", req(), "198.51.100.11"),
				setPools(map[ipam.Owner][]string{"x/b": {"198.51.100.11"}}, pool("lan", "198.51.100.10-198.51.100.20", allocation(namespaces("shop")))),
				assign("shop/a", req(inNamespace("shop")), "198.51.100.10"),
			},
		},
		{
			name:  "requested pool renamed",
			pools: pools(lan),
			steps: []step{
				assign("x/a", req(fromPool("lan")), "198.51.100.10"),
				assign("x/b", req(), "198.51.100.11"),
				setPools(map[ipam.Owner][]string{"x/a": {"198.51.100.10"}}, pool("lan2", "198.51.100.10-198.51.100.20")),
			},
		},
		{
			name:  "autoAssign turned off keeps holdings",
			pools: pools(lan),
			steps: []step{
				assign("x/a", req(), "198.51.100.10"),
				setPools(none, pool("lan", "198.51.100.10-198.51.100.20", manual)),
				assign("x/a", req(), "198.51.100.10"),
			},
		},
		{
			name:  "avoidBuggyIPs turned on moves a .0 address",
			pools: pools(pool("lan", "192.0.2.0/24")),
			steps: []step{
				assign("x/a", req(), "192.0.2.0"),
				assign("x/b", req(), "192.0.2.1"),
				setPools(map[ipam.Owner][]string{"x/a": {"192.0.2.0"}}, pool("lan", "192.0.2.0/24", avoidBuggy)),
				assign("x/a", req(), "192.0.2.2"),
				settle("x/a", "192.0.2.0"),
				inUse("lan/IPv4=2"),
			},
		},
		{
			name:  "leaving addresses are not reported",
			pools: pools(lan, dmz),
			steps: []step{
				assign("x/a", req(fromPool("lan")), "198.51.100.10"),
				assign("x/a", req(fromPool("dmz")), "203.0.113.10"),
				setPools(none, dmz),
				held("x/a", "203.0.113.10", "198.51.100.10"),
			},
		},
	})
}

func TestStats(t *testing.T) {
	tests := []struct {
		name  string
		pools []string // pool "name=ranges", avoidBuggyIPs when name ends in "!"
		steps []step
		want  []ipam.PoolStats
	}{
		{
			name: "a /64 counted exactly",
			steps: []step{
				assign("x/a", req(v6), "2001:db8::"),
				assign("x/b", req(v6), "2001:db8::1"),
				assign("x/c", req(v6), "2001:db8::2"),
				release("x/b", "2001:db8::1"),
			},
			pools: []string{"big=2001:db8::/64"},
			want:  []ipam.PoolStats{{Pool: "big", Family: ipam.IPv6, Size: bigInt("18446744073709551616"), InUse: 2}},
		},
		{
			name:  "the widest IPv6 range",
			pools: []string{"huge=::-7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
			want:  []ipam.PoolStats{{Pool: "huge", Family: ipam.IPv6, Size: bigInt("170141183460469231731687303715884105728")}},
		},
		{
			name:  "avoidBuggyIPs /24",
			pools: []string{"lan!=192.0.2.0/24"},
			want:  []ipam.PoolStats{{Pool: "lan!", Family: ipam.IPv4, Size: big.NewInt(254)}},
		},
		{
			name:  "avoidBuggyIPs across /24s",
			pools: []string{"lan!=192.0.2.200-192.0.4.10"},
			want:  []ipam.PoolStats{{Pool: "lan!", Family: ipam.IPv4, Size: big.NewInt(55 + 254 + 10)}},
		},
		{
			name:  "avoidBuggyIPs from 0.0.0.0",
			pools: []string{"low!=0.0.0.0-0.0.1.0"},
			want:  []ipam.PoolStats{{Pool: "low!", Family: ipam.IPv4, Size: big.NewInt(254)}},
		},
		{
			name:  "whole IPv4 space",
			pools: []string{"all=0.0.0.0-255.255.255.255"},
			want:  []ipam.PoolStats{{Pool: "all", Family: ipam.IPv4, Size: big.NewInt(1 << 32)}},
		},
		{
			name:  "sorted by pool then family; shared and leaving count once",
			pools: []string{"b=192.0.2.0/30, 2001:db8::/126", "a=198.51.100.1"},
			steps: []step{
				assign("x/a", req(share("k", "TCP/80"), preferDual, fromPool("b")), "192.0.2.0", "2001:db8::"),
				assign("x/b", req(share("k", "TCP/443"), preferDual), "192.0.2.0", "2001:db8::"),
				assign("x/b", req(share("k", "TCP/443"), preferDual, fromPool("b"), ips("192.0.2.3")), "192.0.2.3"),
			},
			want: []ipam.PoolStats{
				{Pool: "a", Family: ipam.IPv4, Size: big.NewInt(1)},
				{Pool: "b", Family: ipam.IPv4, Size: big.NewInt(4), InUse: 2},
				{Pool: "b", Family: ipam.IPv6, Size: big.NewInt(4), InUse: 1},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ps []config.Pool
			for _, s := range tt.pools {
				name, ranges, _ := strings.Cut(s, "=")
				if strings.HasSuffix(name, "!") {
					ps = append(ps, pool(name, ranges, avoidBuggy))
				} else {
					ps = append(ps, pool(name, ranges))
				}
			}
			a := ipam.New(ps)
			for _, s := range tt.steps {
				s.run(t, a)
			}
			if diff := cmp.Diff(tt.want, a.Stats(), cmp.Comparer(func(x, y *big.Int) bool { return x.Cmp(y) == 0 })); diff != "" {
				t.Errorf("Stats (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPoolOf(t *testing.T) {
	a := ipam.New(pools(
		pool("lan", "198.51.100.10-198.51.100.20, 2001:db8::/64"),
		pool("dmz", "203.0.113.7, 203.0.113.9"),
	))
	for _, tt := range []struct {
		addr, want string
	}{
		{"198.51.100.10", "lan"},
		{"198.51.100.20", "lan"},
		{"198.51.100.21", ""},
		{"198.51.100.9", ""},
		{"2001:db8::ffff:ffff:ffff:ffff", "lan"},
		{"2001:db8:0:1::", ""},
		{"203.0.113.7", "dmz"},
		{"203.0.113.8", ""},
		{"203.0.113.9", "dmz"},
		{"::ffff:198.51.100.10", ""},
	} {
		t.Run(tt.addr, func(t *testing.T) {
			if got := a.PoolOf(netip.MustParseAddr(tt.addr)); got != tt.want {
				t.Errorf("PoolOf(%s) = %q, want %q", tt.addr, got, tt.want)
			}
		})
	}
}

func bigInt(s string) *big.Int {
	n, ok := new(big.Int).SetString(s, 10)
	if !ok {
		panic(s)
	}
	return n
}
