package ipam_test

import (
	"net/netip"
	"testing"

	"github.com/heraldlb/herald/ipam"
)

func block(x string) step {
	return step{"block " + x, func(t *testing.T, a *ipam.Allocator) { a.Block(netip.MustParseAddr(x)) }}
}

func unblock(x string) step {
	return step{"unblock " + x, func(t *testing.T, a *ipam.Allocator) { a.Unblock(netip.MustParseAddr(x)) }}
}

func TestBlock(t *testing.T) {
	lan := pool("lan", "198.51.100.10-198.51.100.12")
	runScenarios(t, []scenario{
		{
			name:  "a blocked free address is skipped",
			pools: pools(lan),
			steps: []step{
				block("198.51.100.10"),
				assign("x/a", req(), "198.51.100.11"),
				assign("x/b", req(), "198.51.100.12"),
				assignErr("x/c", req(), ipam.ErrPoolExhausted),
			},
		},
		{
			name:  "a holder that did not request it moves, and the address stays out of use",
			pools: pools(lan),
			steps: []step{
				assign("x/a", req(), "198.51.100.10"),
				block("198.51.100.10"),
				assign("x/a", req(), "198.51.100.11"),
				settle("x/a", "198.51.100.10"),
				assign("x/b", req(), "198.51.100.12"),
				assignErr("x/c", req(), ipam.ErrPoolExhausted),
			},
		},
		{
			name:  "a holder that requested it keeps it",
			pools: pools(lan),
			steps: []step{
				assign("x/a", req(ips("198.51.100.10")), "198.51.100.10"),
				block("198.51.100.10"),
				assign("x/a", req(ips("198.51.100.10")), "198.51.100.10"),
				held("x/a", "198.51.100.10"),
			},
		},
		{
			name:  "a request may still claim it, and release keeps it blocked",
			pools: pools(lan),
			steps: []step{
				block("198.51.100.10"),
				assign("x/a", req(ips("198.51.100.10")), "198.51.100.10"),
				release("x/a", "198.51.100.10"),
				assign("x/b", req(), "198.51.100.11"),
			},
		},
		{
			name:  "unblocked, it is free again",
			pools: pools(lan),
			steps: []step{
				block("198.51.100.10"),
				block("198.51.100.10"),
				assign("x/a", req(), "198.51.100.11"),
				unblock("198.51.100.10"),
				assign("x/b", req(), "198.51.100.10"),
			},
		},
		{
			name:  "a block survives new pools",
			pools: pools(lan),
			steps: []step{
				block("198.51.100.10"),
				setPools(map[ipam.Owner][]string{}, pool("lan", "198.51.100.10-198.51.100.11")),
				assign("x/a", req(), "198.51.100.11"),
				assignErr("x/b", req(), ipam.ErrPoolExhausted),
				unblock("198.51.100.10"),
				assign("x/b", req(), "198.51.100.10"),
			},
		},
	})
}
