package ipam_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/ipam"
)

// TestAssign checks what a new owner gets, after the before steps, for one
// request; and that it holds exactly that afterwards (nothing on error).
func TestAssign(t *testing.T) {
	lan := pool("lan", "198.51.100.10-198.51.100.20")
	dmz := pool("dmz", "203.0.113.10-203.0.113.20")
	v6lan := pool("v6lan", "2001:db8::10-2001:db8::20")
	dual := pool("dual", "192.0.2.10-192.0.2.20, 2001:db8:2::10-2001:db8:2::20")
	tiny := pool("tiny", "198.51.100.10")

	tests := []struct {
		name   string
		pools  []config.Pool
		before []step
		req    ipam.Request
		want   []string
		err    error
		msg    []string // the error message mentions each
	}{
		// Pool choice.
		{
			name:  "lowest address of the first pool by name",
			pools: pools(lan, dmz),
			req:   req(),
			want:  []string{"203.0.113.10"},
		},
		{
			name:   "next pool by name when the first is full",
			pools:  pools(tiny, pool("tinz", "203.0.113.5")),
			before: []step{assign("x/a", req(), "198.51.100.10")},
			req:    req(),
			want:   []string{"203.0.113.5"},
		},
		{
			name:  "pool with matching allocation before pools without",
			pools: pools(dmz, pool("zz", "198.51.100.10-198.51.100.20", allocation(namespaces("default")))),
			req:   req(),
			want:  []string{"198.51.100.10"},
		},
		{
			name: "matching pools by priority",
			pools: pools(
				pool("a", "198.51.100.10", allocation(priority(10))),
				pool("b", "203.0.113.10", allocation(priority(5))),
			),
			req:  req(),
			want: []string{"203.0.113.10"},
		},
		{
			name: "matching pools of equal priority by name",
			pools: pools(
				pool("b", "198.51.100.10", allocation(priority(5))),
				pool("a", "203.0.113.10", allocation(priority(5))),
			),
			req:  req(),
			want: []string{"203.0.113.10"},
		},
		{
			name:  "pool for other namespaces skipped",
			pools: pools(pool("a", "192.0.2.10", allocation(namespaces("shop"))), lan),
			req:   req(),
			want:  []string{"198.51.100.10"},
		},
		{
			name:  "pool for the namespace chosen",
			pools: pools(pool("z", "192.0.2.10", allocation(namespaces("web", "shop"))), lan),
			req:   req(inNamespace("shop")),
			want:  []string{"192.0.2.10"},
		},
		{
			name:  "namespace selector matches",
			pools: pools(pool("z", "192.0.2.10", allocation(nsSelector("team=a"))), lan),
			req:   req(inNamespace("shop", "team=a")),
			want:  []string{"192.0.2.10"},
		},
		{
			name:  "namespace selector does not match",
			pools: pools(pool("a", "192.0.2.10", allocation(nsSelector("team=a"))), lan),
			req:   req(inNamespace("shop", "team=b")),
			want:  []string{"198.51.100.10"},
		},
		{
			name:  "service selector matches",
			pools: pools(pool("z", "192.0.2.10", allocation(svcSelector("app in (web,api)"))), lan),
			req:   req(svcLabels("app=web")),
			want:  []string{"192.0.2.10"},
		},
		{
			name:  "service selector does not match",
			pools: pools(pool("a", "192.0.2.10", allocation(svcSelector("app=web"))), lan),
			req:   req(svcLabels("app=db")),
			want:  []string{"198.51.100.10"},
		},
		{
			name:  "autoAssign false pool skipped",
			pools: pools(pool("a", "192.0.2.10", manual), lan),
			req:   req(),
			want:  []string{"198.51.100.10"},
		},
		{
			name:  "autoAssign false pool skipped even when its allocation matches",
			pools: pools(pool("a", "192.0.2.10", manual, allocation(namespaces("default"))), lan),
			req:   req(),
			want:  []string{"198.51.100.10"},
		},
		{
			name:  "only autoAssign false pools",
			pools: pools(pool("a", "192.0.2.10", manual)),
			req:   req(inNamespace("shop")),
			err:   ipam.ErrNoMatchingPool,
			msg:   []string{`namespace "shop"`},
		},
		{
			name: "no pools",
			req:  req(),
			err:  ipam.ErrNoMatchingPool,
			msg:  []string{"no autoAssign pool"},
		},
		{
			name:  "only pools of other namespaces",
			pools: pools(pool("a", "192.0.2.10", allocation(namespaces("shop")))),
			req:   req(svcLabels("app=web")),
			err:   ipam.ErrNoMatchingPool,
			msg:   []string{`namespace "default"`, "app=web"},
		},
		{
			name:   "every pool full",
			pools:  pools(tiny, pool("tinz", "203.0.113.5")),
			before: []step{assign("x/a", req(), "198.51.100.10"), assign("x/b", req(), "203.0.113.5")},
			req:    req(),
			err:    ipam.ErrPoolExhausted,
			msg:    []string{`"tiny"`, `"tinz"`, "IPv4"},
		},
		{
			name:  "no pool of the family",
			pools: pools(lan),
			req:   req(v6),
			err:   ipam.ErrFamilyUnavailable,
			msg:   []string{"IPv6", `"lan"`},
		},

		// Requested pool.
		{
			name:  "requested pool beats priority",
			pools: pools(pool("a", "192.0.2.10", allocation(priority(1))), lan),
			req:   req(fromPool("lan")),
			want:  []string{"198.51.100.10"},
		},
		{
			name:  "requested autoAssign false pool",
			pools: pools(pool("a", "192.0.2.10", manual), lan),
			req:   req(fromPool("a")),
			want:  []string{"192.0.2.10"},
		},
		{
			name:  "requested pool does not exist",
			pools: pools(lan),
			req:   req(fromPool("nope")),
			err:   ipam.ErrNoMatchingPool,
			msg:   []string{`pool "nope" does not exist`},
		},
		{
			name:  "requested pool does not serve the namespace",
			pools: pools(pool("a", "192.0.2.10", allocation(namespaces("shop"))), lan),
			req:   req(fromPool("a")),
			err:   ipam.ErrNoMatchingPool,
			msg:   []string{`pool "a"`, `namespace "default"`},
		},
		{
			name:  "requested pool lacks the family",
			pools: pools(lan),
			req:   req(fromPool("lan"), v6),
			err:   ipam.ErrFamilyUnavailable,
			msg:   []string{`pool "lan" has no IPv6`},
		},
		{
			name:   "requested pool full",
			pools:  pools(tiny, dmz),
			before: []step{assign("x/a", req(fromPool("tiny")), "198.51.100.10")},
			req:    req(fromPool("tiny")),
			err:    ipam.ErrPoolExhausted,
			msg:    []string{`pool "tiny" has no free IPv4`},
		},

		// Requested addresses.
		{
			name:  "requested address",
			pools: pools(lan),
			req:   req(ips("198.51.100.15")),
			want:  []string{"198.51.100.15"},
		},
		{
			name:  "requested address in an autoAssign false pool",
			pools: pools(pool("a", "192.0.2.10-192.0.2.20", manual)),
			req:   req(ips("192.0.2.15")),
			want:  []string{"192.0.2.15"},
		},
		{
			name:  "requested address in the requested pool",
			pools: pools(lan, dmz),
			req:   req(ips("203.0.113.15"), fromPool("dmz")),
			want:  []string{"203.0.113.15"},
		},
		{
			name:  "requested address in no pool",
			pools: pools(lan),
			req:   req(ips("198.51.100.30")),
			err:   ipam.ErrAddressNotInPool,
			msg:   []string{"198.51.100.30", "no pool"},
		},
		{
			name:  "requested address not in the requested pool",
			pools: pools(lan, dmz),
			req:   req(ips("198.51.100.15"), fromPool("dmz")),
			err:   ipam.ErrAddressNotInPool,
			msg:   []string{"198.51.100.15", `"dmz"`, `"lan"`},
		},
		{
			name:  "requested address in a pool that does not serve the namespace",
			pools: pools(pool("a", "192.0.2.10-192.0.2.20", allocation(namespaces("shop")))),
			req:   req(ips("192.0.2.15")),
			err:   ipam.ErrNoMatchingPool,
			msg:   []string{"192.0.2.15", `pool "a"`, `namespace "default"`},
		},
		{
			name:   "requested address held by another",
			pools:  pools(lan),
			before: []step{assign("shop/web", req(ips("198.51.100.15")), "198.51.100.15")},
			req:    req(ips("198.51.100.15")),
			err:    ipam.ErrAddressInUse,
			msg:    []string{"198.51.100.15", "shop/web", "no sharing key"},
		},
		{
			name:  "requested address avoided by its pool",
			pools: pools(pool("a", "192.0.2.0/24", avoidBuggy)),
			req:   req(ips("192.0.2.255")),
			err:   ipam.ErrAddressNotInPool,
			msg:   []string{"192.0.2.255", `pool "a"`, ".255"},
		},
		{
			name:  "requested addresses of both families, in family order",
			pools: pools(dual),
			req:   req(families(ipam.RequireDualStack, ipam.IPv6, ipam.IPv4), ips("192.0.2.15", "2001:db8:2::15")),
			want:  []string{"2001:db8:2::15", "192.0.2.15"},
		},
		{
			name:  "PreferDualStack with one requested address gets only it",
			pools: pools(dual),
			req:   req(preferDual, ips("192.0.2.15")),
			want:  []string{"192.0.2.15"},
		},
		{
			name:  "PreferDualStack with requested addresses needs all of them",
			pools: pools(dual),
			req:   req(preferDual, ips("192.0.2.15", "2001:db8:9::1")),
			err:   ipam.ErrAddressNotInPool,
			msg:   []string{"2001:db8:9::1"},
		},
		{
			name:  "two requested addresses of one family",
			pools: pools(lan),
			req:   req(ips("198.51.100.15", "198.51.100.16")),
			err:   ipam.ErrInvalidRequest,
			msg:   []string{"198.51.100.15", "198.51.100.16", "both IPv4"},
		},
		{
			name:  "requested address of a family not asked for",
			pools: pools(dual),
			req:   req(ips("2001:db8:2::15")),
			err:   ipam.ErrInvalidRequest,
			msg:   []string{"2001:db8:2::15", "IPv6"},
		},
		{
			name:  "RequireDualStack with one requested address",
			pools: pools(dual),
			req:   req(requireDual, ips("192.0.2.15")),
			err:   ipam.ErrInvalidRequest,
			msg:   []string{"RequireDualStack", "192.0.2.15"},
		},
		{
			name:  "zoned requested address",
			pools: pools(v6lan),
			req:   req(v6, ips("fe80::1%eth0")),
			err:   ipam.ErrInvalidRequest,
			msg:   []string{"fe80::1%eth0"},
		},

		// Families.
		{
			name:  "SingleStack IPv6",
			pools: pools(lan, v6lan),
			req:   req(v6),
			want:  []string{"2001:db8::10"},
		},
		{
			name:  "PreferDualStack gets both, primary first",
			pools: pools(lan, v6lan),
			req:   req(families(ipam.PreferDualStack, ipam.IPv6, ipam.IPv4)),
			want:  []string{"2001:db8::10", "198.51.100.10"},
		},
		{
			name:  "PreferDualStack from one dual-stack pool",
			pools: pools(dual),
			req:   req(preferDual),
			want:  []string{"192.0.2.10", "2001:db8:2::10"},
		},
		{
			name:  "PreferDualStack skips a missing secondary family",
			pools: pools(lan),
			req:   req(preferDual),
			want:  []string{"198.51.100.10"},
		},
		{
			name:  "PreferDualStack skips a missing primary family",
			pools: pools(lan),
			req:   req(families(ipam.PreferDualStack, ipam.IPv6, ipam.IPv4)),
			want:  []string{"198.51.100.10"},
		},
		{
			name:  "PreferDualStack with one family (single-stack cluster)",
			pools: pools(dual),
			req:   req(families(ipam.PreferDualStack, ipam.IPv6)),
			want:  []string{"2001:db8:2::10"},
		},
		{
			name:   "PreferDualStack with no family gets the primary's error",
			pools:  pools(tiny),
			before: []step{assign("x/a", req(), "198.51.100.10")},
			req:    req(preferDual),
			err:    ipam.ErrPoolExhausted,
			msg:    []string{`pool "tiny"`},
		},
		{
			name:  "RequireDualStack gets both",
			pools: pools(lan, v6lan),
			req:   req(requireDual),
			want:  []string{"198.51.100.10", "2001:db8::10"},
		},
		{
			name:  "RequireDualStack takes nothing without both",
			pools: pools(lan),
			req:   req(requireDual),
			err:   ipam.ErrFamilyUnavailable,
			msg:   []string{"IPv6"},
		},
		{
			name:  "SingleStack with two families",
			pools: pools(dual),
			req:   req(families(ipam.SingleStack, ipam.IPv4, ipam.IPv6)),
			err:   ipam.ErrInvalidRequest,
			msg:   []string{"SingleStack"},
		},
		{
			name:  "RequireDualStack with one family",
			pools: pools(dual),
			req:   req(families(ipam.RequireDualStack, ipam.IPv4)),
			err:   ipam.ErrInvalidRequest,
			msg:   []string{"RequireDualStack"},
		},
		{
			name:  "family listed twice",
			pools: pools(dual),
			req:   req(families(ipam.PreferDualStack, ipam.IPv4, ipam.IPv4)),
			err:   ipam.ErrInvalidRequest,
			msg:   []string{"twice"},
		},
		{
			name:  "unknown protocol",
			pools: pools(lan),
			req:   req(share("k", "ICMP/1")),
			err:   ipam.ErrInvalidRequest,
			msg:   []string{"ICMP/1"},
		},

		// Sharing.
		{
			name:   "same key and distinct ports share",
			pools:  pools(lan),
			before: []step{assign("x/a", req(share("k", "TCP/80")), "198.51.100.10")},
			req:    req(share("k", "TCP/443", "UDP/80")),
			want:   []string{"198.51.100.10"},
		},
		{
			name:   "port clash does not share",
			pools:  pools(lan),
			before: []step{assign("x/a", req(share("k", "TCP/80", "TCP/443")), "198.51.100.10")},
			req:    req(share("k", "TCP/443")),
			want:   []string{"198.51.100.11"},
		},
		{
			name:   "different keys do not share",
			pools:  pools(lan),
			before: []step{assign("x/a", req(share("k", "TCP/80")), "198.51.100.10")},
			req:    req(share("other", "TCP/443")),
			want:   []string{"198.51.100.11"},
		},
		{
			name:   "Local with different backends does not share",
			pools:  pools(lan),
			before: []step{assign("x/a", req(share("k", "TCP/80"), backend("app=a")), "198.51.100.10")},
			req:    req(share("k", "TCP/443"), local("app=b")),
			want:   []string{"198.51.100.11"},
		},
		{
			name:   "Local with the same backends shares",
			pools:  pools(lan),
			before: []step{assign("x/a", req(share("k", "TCP/80"), backend("app=a")), "198.51.100.10")},
			req:    req(share("k", "TCP/443"), local("app=a")),
			want:   []string{"198.51.100.10"},
		},
		{
			name:   "Cluster policy with different backends shares",
			pools:  pools(lan),
			before: []step{assign("x/a", req(share("k", "TCP/80"), backend("app=a")), "198.51.100.10")},
			req:    req(share("k", "TCP/443"), backend("app=b")),
			want:   []string{"198.51.100.10"},
		},
		{
			name:   "requested address shared",
			pools:  pools(lan),
			before: []step{assign("x/a", req(share("k", "TCP/80"), ips("198.51.100.15")), "198.51.100.15")},
			req:    req(share("k", "TCP/443"), ips("198.51.100.15")),
			want:   []string{"198.51.100.15"},
		},
		{
			name:   "requested address with a port clash",
			pools:  pools(lan),
			before: []step{assign("x/a", req(share("k", "TCP/80"), ips("198.51.100.15")), "198.51.100.15")},
			req:    req(share("k", "TCP/80"), ips("198.51.100.15")),
			err:    ipam.ErrAddressInUse,
			msg:    []string{"198.51.100.15", "x/a", "both use port TCP/80"},
		},
		{
			name:   "requested address under another key",
			pools:  pools(lan),
			before: []step{assign("x/a", req(share("k", "TCP/80"), ips("198.51.100.15")), "198.51.100.15")},
			req:    req(share("j", "TCP/443"), ips("198.51.100.15")),
			err:    ipam.ErrAddressInUse,
			msg:    []string{"x/a", `the holder's is "k", this Service's "j"`},
		},
		{
			name:  "joining a shared address beats a fresh one in an earlier pool",
			pools: pools(lan, dmz),
			before: []step{
				assign("x/a", req(share("k", "TCP/80"), fromPool("lan")), "198.51.100.10"),
			},
			req:  req(share("k", "TCP/443")),
			want: []string{"198.51.100.10"},
		},
		{
			name:  "joining follows pool order",
			pools: pools(lan, dmz),
			before: []step{
				assign("x/a", req(share("k", "TCP/80"), fromPool("lan")), "198.51.100.10"),
				assign("x/b", req(share("k", "TCP/80")), "203.0.113.10"),
			},
			req:  req(share("k", "TCP/443")),
			want: []string{"203.0.113.10"},
		},
		{
			name:  "joining takes the lowest shareable address",
			pools: pools(lan),
			before: []step{
				assign("x/a", req(share("k", "TCP/80"), ips("198.51.100.15")), "198.51.100.15"),
				assign("x/b", req(share("k", "TCP/80"), ips("198.51.100.12")), "198.51.100.12"),
			},
			req:  req(share("k", "TCP/443")),
			want: []string{"198.51.100.12"},
		},
		{
			name:  "joining skips addresses it may not share",
			pools: pools(lan),
			before: []step{
				assign("x/a", req(share("k", "TCP/80"), ips("198.51.100.15")), "198.51.100.15"),
				assign("x/b", req(share("k", "TCP/443"), ips("198.51.100.12")), "198.51.100.12"),
			},
			req:  req(share("k", "TCP/443")),
			want: []string{"198.51.100.15"},
		},
		{
			name:  "joining needs every holder's consent",
			pools: pools(lan),
			before: []step{
				assign("x/a", req(share("k", "TCP/80")), "198.51.100.10"),
				assign("x/b", req(share("k", "TCP/443")), "198.51.100.10"),
			},
			req:  req(share("k", "TCP/443")),
			want: []string{"198.51.100.11"},
		},
		{
			name:  "joining only in pools that serve the request",
			pools: pools(lan, pool("shop", "192.0.2.10", allocation(namespaces("shop")))),
			before: []step{
				assign("shop/a", req(inNamespace("shop"), share("k", "TCP/80")), "192.0.2.10"),
			},
			req:  req(share("k", "TCP/443")),
			want: []string{"198.51.100.10"},
		},

		// Address choice.
		{
			name:  "avoidBuggyIPs skips .255 and .0",
			pools: pools(pool("a", "192.0.2.255-192.0.3.2", avoidBuggy)),
			req:   req(),
			want:  []string{"192.0.3.1"},
		},
		{
			name:   "avoidBuggyIPs pool with only .255 and .0 left is full",
			pools:  pools(pool("a", "192.0.2.254-192.0.3.0", avoidBuggy)),
			before: []step{assign("x/a", req(), "192.0.2.254")},
			req:    req(),
			err:    ipam.ErrPoolExhausted,
		},
		{
			name:  "avoidBuggyIPs leaves IPv6 alone",
			pools: pools(pool("a", "192.0.2.1, 2001:db8::ff-2001:db8::100", avoidBuggy)),
			req:   req(v6),
			want:  []string{"2001:db8::ff"},
		},
		{
			name:  "without avoidBuggyIPs .0 is fine",
			pools: pools(pool("a", "192.0.2.0/24")),
			req:   req(),
			want:  []string{"192.0.2.0"},
		},
		{
			name:  "lowest address across ranges",
			pools: pools(pool("a", "192.0.2.10, 192.0.2.20-192.0.2.30")),
			before: []step{
				assign("x/a", req(), "192.0.2.10"),
				assign("x/b", req(), "192.0.2.20"),
				release("x/a", "192.0.2.10"),
			},
			req:  req(),
			want: []string{"192.0.2.10"},
		},
		{
			name:  "huge IPv6 pool",
			pools: pools(pool("a", "2001:db8::/32")),
			req:   req(v6),
			want:  []string{"2001:db8::"},
		},
		{
			name:   "IPv6 range across a 64-bit boundary",
			pools:  pools(pool("a", "2001:db8::ffff:ffff:ffff:ffff-2001:db8:0:1::1")),
			before: []step{assign("x/a", req(v6), "2001:db8::ffff:ffff:ffff:ffff")},
			req:    req(v6),
			want:   []string{"2001:db8:0:1::"},
		},
		{
			name:  "IPv6 address split out across a 64-bit boundary",
			pools: pools(pool("a", "2001:db8::ffff:ffff:ffff:fffe-2001:db8:0:1::1")),
			before: []step{
				assign("x/a", req(v6, ips("2001:db8:0:1::")), "2001:db8:0:1::"),
				assign("x/b", req(v6), "2001:db8::ffff:ffff:ffff:fffe"),
			},
			req:  req(v6),
			want: []string{"2001:db8::ffff:ffff:ffff:ffff"},
		},
		{
			name:  "last address of the IPv6 space",
			pools: pools(pool("a", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
			before: []step{
				assign("x/a", req(v6), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"),
			},
			req:  req(v6),
			want: []string{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
		},
		{
			name:  "last address of the IPv4 space",
			pools: pools(pool("a", "255.255.255.254-255.255.255.255")),
			before: []step{
				assign("x/a", req(), "255.255.255.254"),
			},
			req:  req(),
			want: []string{"255.255.255.255"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := ipam.New(tt.pools)
			for _, s := range tt.before {
				s.run(t, a)
			}
			const me = "default/svc"
			got, err := a.Assign(me, tt.req)
			if err != nil {
				t.Logf("error: %v", err)
			}
			checkErr(t, err, tt.err, tt.msg...)
			if diff := cmp.Diff(addrs(tt.want...), got, cmpAddr); diff != "" {
				t.Errorf("Assign (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(addrs(tt.want...), a.Addresses(me), cmpAddr); diff != "" {
				t.Errorf("Addresses after Assign (-want +got):\n%s", diff)
			}
		})
	}
}
