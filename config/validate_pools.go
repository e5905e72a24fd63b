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
	// entries indexes the entries of every pool.
	entries entryIndex
}

// pools checks the pools, merging each one's ranges, and returns what the
// other sections are checked against.
func (v *validator) pools(raw []rawPool, cfg *Config) poolSet {
	set := poolSet{byName: map[string]*poolInfo{}, names: names{}}
	var all []*poolEntry
	for _, rp := range raw {
		at := rp.at
		v.name(at, rp.Name, set.names)
		info := &poolInfo{name: rp.Name, at: at, minAgg: [2]int{-1, -1}}
		if len(rp.Addresses) == 0 {
			v.probs.addf(at.field("addresses"), "required: at least one address, CIDR or range")
		}
		rs := make([]Range, 0, len(rp.Addresses))
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
			rs = append(rs, r)
		}
		info.index = newEntryIndex(info.entries)
		all = append(all, info.entries...)
		info.ranges = mergeRanges(rs)
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
	set.entries = newEntryIndex(all)
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
	type span struct {
		r    Range
		pool *poolInfo
	}
	n := 0
	for _, p := range pools {
		n += len(p.ranges)
	}
	all := make([]span, 0, n)
	for _, p := range pools {
		for _, r := range p.ranges {
			all = append(all, span{r, p})
		}
	}
	slices.SortFunc(all, func(a, b span) int { return a.r.From.Compare(b.r.From) })
	var reach *span // the span reaching furthest so far
	for i := range all {
		if v.probs.full() {
			return
		}
		s := &all[i]
		if reach != nil && s.r.overlaps(reach.r) {
			// s starts inside reach: its first address is in both pools.
			e, o := s.pool.index.find(s.r.From), reach.pool.index.find(s.r.From)
			v.probs.addf(e.at(), "%s overlaps %s of pool %s (%s): an address belongs to one pool only",
				quote(e.text), quote(o.text), quote(reach.pool.name), o.at())
		}
		if reach == nil || s.r.To.Compare(reach.r.To) > 0 {
			reach = s
		}
	}
}

// entryIndex finds the pool entry that holds an address in O(log n) time,
// after sorting the entries once. Entries of one pool may overlap, so it
// keeps, for each entry in order, the one reaching furthest up to it.
type entryIndex struct {
	entries []*poolEntry // sorted by first address
	reach   []int32      // reach[i]: index of the entry of entries[:i+1] whose last address is highest
}

func newEntryIndex(entries []*poolEntry) entryIndex {
	x := entryIndex{entries: slices.Clone(entries), reach: make([]int32, len(entries))}
	slices.SortFunc(x.entries, func(a, b *poolEntry) int { return a.r.From.Compare(b.r.From) })
	for i, e := range x.entries {
		x.reach[i] = int32(i)
		if i > 0 && x.entries[x.reach[i-1]].r.To.Compare(e.r.To) > 0 {
			x.reach[i] = x.reach[i-1]
		}
	}
	return x
}

// find returns an entry holding a, or nil.
func (x entryIndex) find(a netip.Addr) *poolEntry {
	i, _ := slices.BinarySearchFunc(x.entries, a, func(e *poolEntry, a netip.Addr) int {
		if e.r.From.Compare(a) <= 0 {
			return -1
		}
		return 1
	})
	if i == 0 {
		return nil
	}
	if e := x.entries[x.reach[i-1]]; e.r.Contains(a) {
		return e
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
