package ipam

import (
	"fmt"

	"github.com/google/btree"
)

// interval is an inclusive run of free addresses.
type interval struct{ lo, hi u128 }

// freeSet holds a space's free addresses as disjoint intervals ordered by
// their first address, in a B-tree (github.com/google/btree). Both ends of
// every interval are usable addresses; avoided (.0/.255) addresses may lie
// inside one but are never handed out. Taking an address splits at most one
// interval and returning one merges at most two, so the set has at most
// (ranges + held addresses + 1) intervals, whatever the pool's size: a
// sequentially filled pool is one interval.
type freeSet struct {
	t *btree.BTreeG[interval]
}

func newFreeSet() freeSet {
	return freeSet{t: btree.NewG(32, func(a, b interval) bool { return a.lo.less(b.lo) })}
}

// lowest returns the lowest free address. O(log n).
func (s *space) lowest() (u128, bool) {
	iv, ok := s.free.t.Min()
	return iv.lo, ok
}

// containing returns the free interval holding x. O(log n).
func (s *space) containing(x u128) (interval, bool) {
	var found interval
	ok := false
	s.free.t.DescendLessOrEqual(interval{lo: x}, func(iv interval) bool {
		found, ok = iv, true
		return false
	})
	if !ok || found.hi.less(x) {
		return interval{}, false
	}
	return found, true
}

// take removes the usable address x from the free set. O(log n).
func (s *space) take(x u128) {
	iv, ok := s.containing(x)
	if !ok {
		panic(fmt.Sprintf("ipam: taking %v from pool %q, but it is not free", fromU128(x, s.family), s.pool.name))
	}
	s.free.t.Delete(iv)
	if x != iv.lo {
		p, _ := s.prev(x) // iv.lo is usable and below x, so p >= iv.lo
		s.free.t.ReplaceOrInsert(interval{lo: iv.lo, hi: p})
	}
	if x != iv.hi {
		n, _ := s.next(x)
		s.free.t.ReplaceOrInsert(interval{lo: n, hi: iv.hi})
	}
}

// put returns the usable address x to the free set, merging it with the
// intervals on either side when only avoided addresses lie between. O(log n).
func (s *space) put(x u128) {
	nv := interval{lo: x, hi: x}
	var pred interval
	found := false
	s.free.t.DescendLessOrEqual(interval{lo: x}, func(iv interval) bool {
		pred, found = iv, true
		return false
	})
	if found {
		if !pred.hi.less(x) {
			panic(fmt.Sprintf("ipam: returning %v to pool %q, but it is free", fromU128(x, s.family), s.pool.name))
		}
		if n, ok := s.next(pred.hi); ok && n == x {
			nv.lo = pred.lo
			s.free.t.Delete(pred)
		}
	}
	if n, ok := s.next(x); ok {
		if succ, found := s.free.t.Get(interval{lo: n}); found {
			nv.hi = succ.hi
			s.free.t.Delete(succ)
		}
	}
	s.free.t.ReplaceOrInsert(nv)
}
