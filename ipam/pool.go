package ipam

import (
	"cmp"
	"math/big"
	"net/netip"
	"slices"

	"github.com/heraldlb/herald/config"
	"k8s.io/apimachinery/pkg/labels"
)

// pool is a configured pool as the allocator uses it.
type pool struct {
	name       string
	autoAssign bool
	alloc      *config.Allocation
	spaces     [2]*space // by familyIndex; nil when the pool has no such addresses
}

func (p *pool) space(f Family) *space {
	if f != IPv4 && f != IPv6 {
		return nil
	}
	return p.spaces[familyIndex(f)]
}

// matches reports whether the pool's allocation rules let it serve r. A pool
// with no rules serves everyone; autoAssign is judged by the caller, since
// it only bars automatic choice.
func (p *pool) matches(r *request) bool {
	al := p.alloc
	if al == nil {
		return true
	}
	if len(al.Namespaces) > 0 && !slices.Contains(al.Namespaces, r.namespace()) {
		return false
	}
	if al.NamespaceSelector != nil && !al.NamespaceSelector.Matches(labels.Set(r.namespaceLabels)) {
		return false
	}
	if al.ServiceSelector != nil && !al.ServiceSelector.Matches(labels.Set(r.serviceLabels)) {
		return false
	}
	return true
}

// autoOrder orders the pools automatic choice tries: pools with allocation
// rules by priority then name, then pools without rules by name.
func autoOrder(a, b *pool) int {
	if (a.alloc == nil) != (b.alloc == nil) {
		if a.alloc != nil {
			return -1
		}
		return 1
	}
	if a.alloc != nil {
		if c := cmp.Compare(a.alloc.Priority, b.alloc.Priority); c != 0 {
			return c
		}
	}
	return cmp.Compare(a.name, b.name)
}

// space is the addresses of one family in one pool, with the set of those
// that are free.
type space struct {
	pool   *pool
	family Family
	avoid  bool // skip the .0 and .255 of every IPv4 /24 (avoidBuggyIPs)
	ranges []config.Range
	size   *big.Int // usable addresses, fixed by the configuration
	inUse  uint64   // distinct held addresses inside ranges (shared ones once)
	free   freeSet
}

// rangeRef ties a configured range to its space, for address lookups.
type rangeRef struct {
	from, to netip.Addr
	sp       *space
}

// spaceOf returns the space whose ranges contain x, or nil. O(log R) for R
// ranges over all pools, which configuration keeps disjoint.
func spaceOf(lookup []rangeRef, x netip.Addr) *space {
	i, _ := slices.BinarySearchFunc(lookup, x, func(r rangeRef, x netip.Addr) int {
		return r.to.Compare(x)
	})
	if i < len(lookup) && lookup[i].from.Compare(x) <= 0 {
		return lookup[i].sp
	}
	return nil
}

// buggy reports whether x is an address the space avoids: .0 or .255 of an
// IPv4 /24, which some old clients take for network or broadcast addresses.
func (s *space) buggy(x u128) bool {
	return s.avoid && (x.lo&0xff == 0 || x.lo&0xff == 0xff)
}

// usable reports whether x, inside the space's ranges, may be handed out.
func (s *space) usable(x netip.Addr) bool {
	return !s.buggy(toU128(x))
}

// next returns the lowest address above x that is not avoided.
func (s *space) next(x u128) (u128, bool) {
	for top := maxU128(s.family); x != top; {
		if x = x.add1(); !s.buggy(x) {
			return x, true
		}
	}
	return x, false
}

// prev returns the highest address below x that is not avoided.
func (s *space) prev(x u128) (u128, bool) {
	for x != (u128{}) {
		if x = x.sub1(); !s.buggy(x) {
			return x, true
		}
	}
	return x, false
}

// rangeSize counts the usable addresses of r.
func (s *space) rangeSize(r config.Range) *big.Int {
	lo, hi := toU128(r.From), toU128(r.To)
	n := hi.sub(lo).big()
	n.Add(n, big.NewInt(1))
	if s.avoid {
		n.Sub(n, new(big.Int).SetUint64(avoidedUpTo(hi.lo)))
		if lo.lo > 0 {
			n.Add(n, new(big.Int).SetUint64(avoidedUpTo(lo.lo-1)))
		}
	}
	return n
}

// avoidedUpTo counts the IPv4 addresses in [0, v] ending in .0 or .255.
func avoidedUpTo(v uint64) uint64 {
	n := 2 * ((v + 1) / 256)
	if (v+1)%256 != 0 {
		n++ // the .0 of the last, partial /24
	}
	return n
}

// build sets the free set to the space's usable addresses minus held, which
// is sorted and inside the ranges. O(R + h log h) for h held addresses.
func (s *space) build(held []u128) {
	s.free = newFreeSet()
	s.inUse = uint64(len(held))
	i := 0
	for _, r := range s.ranges {
		lo, hi := toU128(r.From), toU128(r.To)
		cur, open := lo, true
		for ; i < len(held) && !hi.less(held[i]); i++ {
			h := held[i]
			if h.less(cur) {
				continue
			}
			if cur.less(h) {
				s.addFree(cur, h.sub1())
			}
			if h == hi {
				open = false
				break
			}
			cur = h.add1()
		}
		if open {
			s.addFree(cur, hi)
		}
	}
}

// addFree adds [lo, hi], trimmed to usable ends, to the free set.
func (s *space) addFree(lo, hi u128) {
	ok := true
	if s.buggy(lo) {
		if lo, ok = s.next(lo); !ok {
			return
		}
	}
	if s.buggy(hi) {
		if hi, ok = s.prev(hi); !ok {
			return
		}
	}
	if hi.less(lo) {
		return
	}
	s.free.t.ReplaceOrInsert(interval{lo: lo, hi: hi})
}
