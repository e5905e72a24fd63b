package config

import "net/netip"

// Pool returns the pool called name. It takes time linear in the number of
// pools, and does not rely on c being sorted.
func (c *Config) Pool(name string) (Pool, bool) {
	for _, p := range c.Pools {
		if p.Name == name {
			return p, true
		}
	}
	return Pool{}, false
}

// PoolOf returns the pool whose ranges contain a; pools never overlap, so
// there is at most one. It takes time linear in the number of ranges.
func (c *Config) PoolOf(a netip.Addr) (Pool, bool) {
	for _, p := range c.Pools {
		if p.Contains(a) {
			return p, true
		}
	}
	return Pool{}, false
}

// Contains reports whether a is one of p's addresses. It does not consider
// AvoidBuggyIPs: an avoided address still belongs to the pool.
func (p Pool) Contains(a netip.Addr) bool {
	for _, r := range p.Ranges {
		if r.Contains(a) {
			return true
		}
	}
	return false
}
