package config

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode"

	"k8s.io/apimachinery/pkg/util/validation"
)

// poolInfo is what validation keeps of a pool to check other sections against it.
type poolInfo struct {
	name    string
	entries []poolEntry // the addresses that parsed, as written
	ranges  []Range     // merged
	// minAgg is, per family (IPv4, IPv6), the shortest aggregation length
	// that fits every range of the pool; -1 when it has none of the family.
	minAgg [2]int
}

type poolEntry struct {
	at, text string
	r        Range
}

type poolSet struct {
	list   []*poolInfo
	byName map[string]*poolInfo
	names  names
	// byAgg lists, per family, the pools by minAgg, longest first.
	byAgg [2][]*poolInfo
}

// pools checks the pools, merging each one's ranges, and returns what the
// other sections are checked against.
func (v *validator) pools(raw []rawPool, cfg *Config) poolSet {
	set := poolSet{byName: map[string]*poolInfo{}, names: names{}}
	for _, rp := range raw {
		at := rp.at
		v.name(at, rp.Name, set.names)
		info := &poolInfo{name: rp.Name, minAgg: [2]int{-1, -1}}
		if len(rp.Addresses) == 0 {
			v.probs.addf(at.field("addresses"), "required: at least one address, CIDR or range")
		}
		var rs []Range
		for i, s := range rp.Addresses {
			r, err := ParseRange(s)
			if err == nil {
				if err = checkUsable(r); err != nil {
					err = fmt.Errorf("%q: %w", s, err)
				}
			}
			if err != nil {
				v.probs.add(at.item("addresses", i), err)
				continue
			}
			info.entries = append(info.entries, poolEntry{at: at.item("addresses", i), text: s, r: r})
			rs = append(rs, r)
		}
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
		switch {
		case len(validation.IsDNS1123Label(ns)) > 0:
			v.probs.addf(at.item("namespaces", i), "%q: %w", ns, errNotLabel)
		case seen[ns]:
			v.probs.addf(at.item("namespaces", i), "%q listed twice", ns)
		}
		seen[ns] = true
	}
	if len(ra.Namespaces) > 0 {
		a.Namespaces = slices.Compact(slices.Sorted(slices.Values(ra.Namespaces)))
	}
	return a
}

// overlaps reports every pool range that shares addresses with another
// pool's. Ranges are merged within each pool, so any overlap found while
// sweeping the sorted ranges of all pools is between two pools.
func (v *validator) overlaps(pools []*poolInfo) {
	type span struct {
		r    Range
		pool *poolInfo
	}
	var all []span
	for _, p := range pools {
		for _, r := range p.ranges {
			all = append(all, span{r, p})
		}
	}
	slices.SortFunc(all, func(a, b span) int { return a.r.From.Compare(b.r.From) })
	var reach *span // the span reaching furthest so far
	for i := range all {
		s := &all[i]
		if reach != nil && s.r.overlaps(reach.r) {
			v.overlap(s.pool, reach.pool, reach.r)
		}
		if reach == nil || s.r.To.Compare(reach.r.To) > 0 {
			reach = s
		}
	}
}

// overlap reports pool p's first entry that overlaps range r of pool other.
func (v *validator) overlap(p, other *poolInfo, r Range) {
	for _, e := range p.entries {
		if !e.r.overlaps(r) {
			continue
		}
		for _, o := range other.entries {
			if o.r.overlaps(e.r) {
				v.probs.addf(e.at, "%q overlaps %q of pool %q (%s): an address belongs to one pool only", e.text, o.text, other.name, o.at)
				return
			}
		}
	}
}

func (v *validator) l2Advertisements(raw []rawL2Advertisement, pools poolSet, cfg *Config) {
	used := names{}
	for _, ra := range raw {
		at := ra.at
		v.name(at, ra.Name, used)
		seen := map[string]bool{}
		for i, ifi := range ra.Interfaces {
			switch {
			case !validInterface(ifi):
				v.probs.addf(at.item("interfaces", i), "%q: not an interface name (1-15 characters, no '/', ':' or spaces)", ifi)
			case seen[ifi]:
				v.probs.addf(at.item("interfaces", i), "%q listed twice", ifi)
			}
			seen[ifi] = true
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
