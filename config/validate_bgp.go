package config

import (
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// communityDef is a defined community name; ok is false when its value is bad.
type communityDef struct {
	value CommunityValue
	ok    bool
}

// communities checks the community definitions and returns them by name,
// so that advertisements can refer to them.
func (v *validator) communities(raw []rawCommunity, cfg *Config) map[string]communityDef {
	used := names{}
	defs := make(map[string]communityDef, len(raw))
	for _, rc := range raw {
		v.name(rc.at, rc.Name, used)
		var def communityDef
		if rc.Value == "" {
			v.probs.addf(rc.at.field("value"), "required")
		} else if c, err := ParseCommunity(rc.Value); err != nil {
			v.probs.add(rc.at.field("value"), err)
		} else {
			def = communityDef{value: c, ok: true}
			cfg.Communities = append(cfg.Communities, Community{Name: rc.Name, Value: c})
		}
		if _, dup := defs[rc.Name]; !dup {
			defs[rc.Name] = def
		}
	}
	return defs
}

// BFD timers: RFC 5880 carries microseconds; these bounds keep to what
// BFD implementations accept and what makes sense on a network.
const (
	minBFDInterval = 10 * time.Millisecond
	maxBFDInterval = 60 * time.Second
)

func (v *validator) bfdProfiles(raw []rawBFDProfile, cfg *Config) names {
	used := names{}
	for _, rb := range raw {
		at := rb.at
		v.name(at, rb.Name, used)
		p := BFDProfile{Name: rb.Name}
		for _, t := range []struct {
			field string
			raw   *string
			out   *time.Duration
		}{
			{"receiveInterval", rb.ReceiveInterval, &p.ReceiveInterval},
			{"transmitInterval", rb.TransmitInterval, &p.TransmitInterval},
		} {
			d, ok := v.duration(at.field(t.field), t.raw, DefaultBFDInterval)
			if ok && (d < minBFDInterval || d > maxBFDInterval) {
				v.probs.addf(at.field(t.field), "%s: must be %s", quote(*t.raw), between(minBFDInterval, maxBFDInterval))
			}
			*t.out = d
		}
		m, _ := v.integer(at.field("detectMultiplier"), rb.DetectMultiplier, DefaultDetectMultiplier, 2, 255)
		p.DetectMultiplier = uint32(m)
		cfg.BFDProfiles = append(cfg.BFDProfiles, p)
	}
	return used
}

func (v *validator) bgpAdvertisements(raw []rawBGPAdvertisement, pools poolSet, peers peerSet, communities map[string]communityDef, cfg *Config) {
	used := names{}
	for _, ra := range raw {
		if v.probs.full() {
			return
		}
		at := ra.at
		v.name(at, ra.Name, used)
		a := BGPAdvertisement{
			Name:         ra.Name,
			Pools:        v.refs(at, "pools", ra.Pools, pools.names, "pools"),
			Peers:        v.refs(at, "peers", ra.Peers, peers.names, "bgpPeers"),
			NodeSelector: v.selector(at.sub("nodeSelector"), ra.NodeSelector),
		}
		lengths := [2]struct {
			field string
			raw   *int64
			bits  int64
			out   *int
		}{
			{"aggregationLength", ra.AggregationLength, 32, &a.AggregationLength},
			{"aggregationLengthV6", ra.AggregationLengthV6, 128, &a.AggregationLengthV6},
		}
		for f, l := range lengths {
			n, ok := v.integer(at.field(l.field), l.raw, l.bits, 0, l.bits)
			*l.out = int(n)
			if ok {
				v.aggregation(at.field(l.field), f, int(n), a.Pools, pools)
			}
		}
		pref, _ := v.integer(at.field("localPref"), ra.LocalPref, 0, 0, math.MaxUint32)
		a.LocalPref = uint32(pref)
		if pref != 0 && allEBGP(a.Peers, peers) {
			v.probs.warn(at.field("localPref"), "%d is sent to no peer: LOCAL_PREF goes only to iBGP peers (asn equal to myASN), and every peer of this advertisement is eBGP", pref)
		}
		for i, s := range ra.Communities {
			if v.probs.full() {
				break
			}
			if c, ok := v.community(at.item("communities", i), s, communities); ok {
				a.Communities = append(a.Communities, c)
			}
		}
		slices.SortFunc(a.Communities, compareCommunities)
		a.Communities = slices.Compact(a.Communities)
		cfg.BGPAdvertisements = append(cfg.BGPAdvertisements, a)
	}
}

// allEBGP reports whether every peer of an advertisement, the listed ones
// or all when none is listed, is known to be eBGP; false when there is none.
func allEBGP(listed []string, peers peerSet) bool {
	if len(listed) == 0 {
		return len(peers.ibgp) > 0 && !peers.anyIBGP
	}
	for _, name := range listed {
		if ibgp, known := peers.ibgp[name]; !known || ibgp {
			return false
		}
	}
	return true
}

// aggregation checks that aggregating to length n never covers an address
// outside any pool advertised (the listed ones, or all when none is listed):
// every range of the family must be made of whole /n blocks. Each pool is
// scanned at most once per family and length, however many advertisements
// list it.
func (v *validator) aggregation(at string, f, n int, listed []string, pools poolSet) {
	check := func(p *poolInfo) {
		if p.minAgg[f] <= n {
			return
		}
		r := v.unfit(p, f, n)
		edge := r.From
		if netip.PrefixFrom(edge, n).Masked().Addr() == edge {
			edge = r.To
		}
		v.probs.addf(at, "%d does not fit pool %s: %s is not made of whole /%d blocks, so the aggregate %s would cover addresses outside the pool; use %d or more",
			n, quote(p.name), r, n, netip.PrefixFrom(edge, n).Masked(), p.minAgg[f])
	}
	if len(listed) == 0 {
		// byAgg is sorted longest first: stop at the first pool that fits.
		for _, p := range pools.byAgg[f] {
			if p.minAgg[f] <= n || v.probs.full() {
				return
			}
			check(p)
		}
		return
	}
	for _, name := range listed {
		if v.probs.full() {
			return
		}
		if p, ok := pools.byName[name]; ok {
			check(p)
		}
	}
}

// unfit returns the first range of family f of pool p that is not made of
// whole /n blocks; there is one, since p.minAgg[f] > n.
func (v *validator) unfit(p *poolInfo, f, n int) Range {
	k := unfitKey{p, f, n}
	if r, ok := v.unfitMemo[k]; ok {
		return r
	}
	var found Range
	for _, r := range p.ranges {
		if family(r) == f && r.minAggregation() > n {
			found = r
			break
		}
	}
	if v.unfitMemo == nil {
		v.unfitMemo = map[unfitKey]Range{}
	}
	v.unfitMemo[k] = found
	return found
}

type unfitKey struct {
	pool *poolInfo
	f, n int
}

// community resolves a community literal or a defined name.
func (v *validator) community(at, s string, defs map[string]communityDef) (CommunityValue, bool) {
	if strings.Contains(s, ":") {
		c, err := ParseCommunity(s)
		if err != nil {
			v.probs.add(at, err)
			return CommunityValue{}, false
		}
		return c, true
	}
	def, ok := defs[s]
	if !ok {
		v.probs.addf(at, "%s is not defined in communities, nor of the form a:b or large:a:b:c", quote(s))
	}
	return def.value, def.ok
}
