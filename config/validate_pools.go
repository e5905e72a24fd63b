package config

import (
	"cmp"
	"math"
	"net/netip"
	"slices"
	"strings"
	"unicode"
)

// poolInfo is what validation keeps of a pool to check other sections against it.
type poolInfo struct {
	name    string
	at      place
	entries []*poolEntry // the addresses that parsed, as written
	index   entryIndex   // entries, to find the one holding an address
	ranges  []Range      // merged
	// minAgg is, per family (IPv4, IPv6), the shortest aggregation length
	// that fits every range of the pool; -1 when it has none of the family.
	minAgg [2]int
}

// poolEntry is one address, CIDR or range of a pool, as written.
type poolEntry struct {
	text string
	r    Range
	pool *poolInfo
	i    int // its index in the pool's addresses
}

// at names the entry's place; it is only needed for messages, so it is
// not built for every entry up front.
func (e *poolEntry) at() string { return e.pool.at.item("addresses", e.i) }

type poolSet struct {
	list   []*poolInfo
	byName map[string]*poolInfo
	names  names
	// byAgg lists, per family, the pools by minAgg, longest first.
	byAgg [2][]*poolInfo
	// entries are those of every pool, for an index built when needed.
	entries []*poolEntry
}

// pools checks the pools, merging each one's ranges, and returns what the
// other sections are checked against.
func (v *validator) pools(raw []rawPool, cfg *Config) poolSet {
	set := poolSet{byName: map[string]*poolInfo{}, names: names{}}
	for _, rp := range raw {
		at := rp.at
		v.name(at, rp.Name, set.names)
		info := &poolInfo{name: rp.Name, at: at, minAgg: [2]int{-1, -1}}
		if len(rp.Addresses) == 0 {
			v.probs.addf(at.field("addresses"), "required: at least one address, CIDR or range")
		}
		info.entries = make([]*poolEntry, 0, len(rp.Addresses))
		for i, s := range rp.Addresses {
			r, err := parseRange(s)
			if err == nil {
				err = checkUsable(r)
			}
			if err != nil {
				v.probs.addf(at.item("addresses", i), "%s: %w", quote(s), err)
				continue
			}
			info.entries = append(info.entries, &poolEntry{text: s, r: r, pool: info, i: i})
		}
		// One sort serves both the index and the merge.
		info.index = newEntryIndex(info.entries)
		info.ranges = joinSorted(info.index.sorted())
		set.entries = append(set.entries, info.entries...)
		for _, r := range info.ranges {
			f := family(r)
			info.minAgg[f] = max(info.minAgg[f], r.minAggregation())
		}
		set.list = append(set.list, info)
		if _, dup := set.byName[rp.Name]; !dup {
			set.byName[rp.Name] = info
			for f := range info.minAgg {
				if info.minAgg[f] >= 0 {
					set.byAgg[f] = append(set.byAgg[f], info)
				}
			}
		}
		cfg.Pools = append(cfg.Pools, Pool{
			Name:          rp.Name,
			Ranges:        info.ranges,
			AutoAssign:    rp.AutoAssign == nil || *rp.AutoAssign,
			AvoidBuggyIPs: rp.AvoidBuggyIPs,
			Allocation:    v.allocation(at.sub("allocation"), rp.Allocation),
		})
	}
	for f := range set.byAgg {
		slices.SortStableFunc(set.byAgg[f], func(a, b *poolInfo) int { return cmp.Compare(b.minAgg[f], a.minAgg[f]) })
	}
	return set
}

// family indexes per-family arrays: 0 for IPv4, 1 for IPv6.
func family(r Range) int {
	if r.Is4() {
		return 0
	}
	return 1
}

func (v *validator) allocation(at place, ra *rawAllocation) *Allocation {
	if ra == nil {
		return nil
	}
	a := &Allocation{
		NamespaceSelector: v.selector(at.sub("namespaceSelector"), ra.NamespaceSelector),
		ServiceSelector:   v.selector(at.sub("serviceSelector"), ra.ServiceSelector),
		Priority:          int(ra.Priority),
	}
	if int64(a.Priority) != ra.Priority || ra.Priority < math.MinInt32 || ra.Priority > math.MaxInt32 {
		v.probs.addf(at.field("priority"), "%d: must be %d-%d", ra.Priority, math.MinInt32, math.MaxInt32)
	}
	seen := map[string]bool{}
	for i, ns := range ra.Namespaces {
		if v.probs.full() {
			break
		}
		switch {
		case !isLabel(ns):
			v.probs.addf(at.item("namespaces", i), "%s: %w", quote(ns), errNotLabel)
		case seen[ns]:
			v.probs.addf(at.item("namespaces", i), "%s listed twice", quote(ns))
		default:
			seen[ns] = true
		}
	}
	if len(ra.Namespaces) > 0 {
		a.Namespaces = slices.Compact(slices.Sorted(slices.Values(ra.Namespaces)))
	}
	return a
}

// overlaps reports every pool range that shares addresses with another
// pool's. Ranges are merged within each pool, so any overlap found while
// sweeping the sorted ranges of all pools is between two pools. It takes
// O(n log n) time for n ranges, and stops at the problem cap.
func (v *validator) overlaps(pools []*poolInfo) {
	// Spans hold no pointers, so sorting them is cheap for the collector.
	type span struct {
		v6       bool
		from, to u128
		pool, r  int32 // the range: pools[pool].ranges[r]
	}
	n := 0
	for _, p := range pools {
		n += len(p.ranges)
	}
	all := make([]span, 0, n)
	for i, p := range pools {
		for j, r := range p.ranges {
			all = append(all, span{!r.Is4(), toU128(r.From), toU128(r.To), int32(i), int32(j)})
		}
	}
	slices.SortFunc(all, func(a, b span) int {
		if a.v6 != b.v6 {
			return cmp.Compare(b4(a.v6), b4(b.v6))
		}
		return a.from.compare(b.from)
	})
	var reach *span // the span of this family reaching furthest so far
	for i := range all {
		if v.probs.full() {
			return
		}
		s := &all[i]
		if reach != nil && reach.v6 == s.v6 && s.from.compare(reach.to) <= 0 {
			// s starts inside reach: its first address is in both pools.
			p, other := pools[s.pool], pools[reach.pool]
			a := p.ranges[s.r].From
			e, o := p.index.find(a), other.index.find(a)
			v.probs.addf(e.at(), "%s overlaps %s of pool %s (%s): an address belongs to one pool only",
				quote(e.text), quote(o.text), quote(other.name), o.at())
		}
		if reach == nil || reach.v6 != s.v6 || s.to.compare(reach.to) > 0 {
			reach = s
		}
	}
}

// b4 orders families as netip does: IPv4 first.
func b4(v6 bool) int {
	if v6 {
		return 1
	}
	return 0
}

// entryIndex finds the pool entry that holds an address in O(log n) time,
// after sorting the entries once. Entries of one pool may overlap, so it
// keeps, for each entry in order, the one reaching furthest up to it.
type entryIndex struct {
	entries []*poolEntry // as given
	order   []entryKey   // sorted by first address
	reach   []int32      // reach[k]: the position in order[:k+1] of the entry whose last address is highest
}

// entryKey is an entry as numbers: sorting keys moves no pointers.
type entryKey struct {
	v6       bool
	from, to u128
	i        int32 // in entries
}

func keyOf(a netip.Addr) (bool, u128) { return !a.Is4(), toU128(a) }

// compareAddr orders (family, address) pairs as netip does: IPv4 first.
func compareAddr(av6 bool, a u128, bv6 bool, b u128) int {
	if av6 != bv6 {
		return cmp.Compare(b4(av6), b4(bv6))
	}
	return a.compare(b)
}

func newEntryIndex(entries []*poolEntry) entryIndex {
	x := entryIndex{entries: entries, order: make([]entryKey, len(entries)), reach: make([]int32, len(entries))}
	for i, e := range entries {
		v6, from := keyOf(e.r.From)
		x.order[i] = entryKey{v6: v6, from: from, to: toU128(e.r.To), i: int32(i)}
	}
	slices.SortFunc(x.order, func(a, b entryKey) int { return compareAddr(a.v6, a.from, b.v6, b.from) })
	for k, e := range x.order {
		x.reach[k] = int32(k)
		if r := x.order[x.reach[max(k-1, 0)]]; k > 0 && compareAddr(r.v6, r.to, e.v6, e.to) > 0 {
			x.reach[k] = x.reach[k-1]
		}
	}
	return x
}

// sorted returns the entries' ranges in order of their first address.
func (x entryIndex) sorted() []Range {
	rs := make([]Range, len(x.order))
	for k, e := range x.order {
		rs[k] = x.entries[e.i].r
	}
	return rs
}

// find returns an entry holding a, or nil.
func (x entryIndex) find(a netip.Addr) *poolEntry {
	v6, u := keyOf(a)
	// k: the number of entries starting at or before a.
	k, _ := slices.BinarySearchFunc(x.order, a, func(e entryKey, _ netip.Addr) int {
		if compareAddr(e.v6, e.from, v6, u) <= 0 {
			return -1
		}
		return 1
	})
	if k == 0 {
		return nil
	}
	if e := x.order[x.reach[k-1]]; e.v6 == v6 && e.to.compare(u) >= 0 {
		return x.entries[e.i]
	}
	return nil
}

func (v *validator) l2Advertisements(raw []rawL2Advertisement, pools poolSet, cfg *Config) {
	used := names{}
	for _, ra := range raw {
		at := ra.at
		v.name(at, ra.Name, used)
		seen := map[string]bool{}
		for i, ifi := range ra.Interfaces {
			if v.probs.full() {
				break
			}
			switch {
			case !validInterface(ifi):
				v.probs.addf(at.item("interfaces", i), "%s: not an interface name (1-15 characters, no '/', ':' or spaces)", quote(ifi))
			case seen[ifi]:
				v.probs.addf(at.item("interfaces", i), "%s listed twice", quote(ifi))
			default:
				seen[ifi] = true
			}
		}
		var ifis []string
		if len(ra.Interfaces) > 0 {
			ifis = slices.Compact(slices.Sorted(slices.Values(ra.Interfaces)))
		}
		cfg.L2Advertisements = append(cfg.L2Advertisements, L2Advertisement{
			Name:         ra.Name,
			Pools:        v.refs(at, "pools", ra.Pools, pools.names, "pools"),
			NodeSelector: v.selector(at.sub("nodeSelector"), ra.NodeSelector),
			Interfaces:   ifis,
		})
	}
}

// validInterface follows the kernel's rule for network interface names.
func validInterface(s string) bool {
	if s == "" || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool { return r == '/' || r == ':' || unicode.IsSpace(r) })
}
