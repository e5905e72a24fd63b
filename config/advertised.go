package config

import (
	"net/netip"
	"slices"
)

// Announces reports whether c announces address a at all, by layer 2 and by
// BGP: a pool holds it and an advertisement of that kind covers the pool.
// Which nodes, interfaces and peers are another matter. It takes time
// linear in the number of ranges and advertisements.
func (c *Config) Announces(a netip.Addr) (l2, bgp bool) {
	pool, ok := c.PoolOf(a)
	if !ok {
		return false, false
	}
	covers := func(pools []string) bool { return len(pools) == 0 || slices.Contains(pools, pool.Name) }
	for _, adv := range c.L2Advertisements {
		if covers(adv.Pools) {
			l2 = true
			break
		}
	}
	for _, adv := range c.BGPAdvertisements {
		if covers(adv.Pools) {
			bgp = true
			break
		}
	}
	return l2, bgp
}

// Peer returns the BGP peer called name. It takes time linear in the
// number of peers.
func (c *Config) Peer(name string) (BGPPeer, bool) {
	for _, p := range c.BGPPeers {
		if p.Name == name {
			return p, true
		}
	}
	return BGPPeer{}, false
}
