package bgp

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// GoBGP applies per-peer policies only to route-server clients, and locally
// originated paths never reach those. So every peer shares the global export
// policy; its conditions are evaluated with the target peer, so a neighbor
// set restricts a statement to some peers. The policy is
//
//  1. next hops across families: an IPv4 prefix to an IPv6 session gets
//     Desired.NextHopV4 (or is rejected without one), and the reverse;
//  2. per advertisement and family, statements without a route action that
//     add its communities and set its local preference towards its iBGP
//     peers (ordered by local preference, so the highest is set last and
//     wins; GoBGP strips LOCAL_PREF for eBGP before the export policy runs,
//     so a statement setting it must not match eBGP peers);
//  3. per advertisement and family, the same conditions accepting the path;
//
// and everything else is rejected by the default action.

// exportPolicy is the export policy a Desired needs, in our own terms.
type exportPolicy struct {
	// NeighborSets maps a neighbor-set name to its addresses; never empty,
	// because GoBGP matches every peer against an empty neighbor set.
	NeighborSets map[string][]netip.Addr
	Statements   []statement
}

type statement struct {
	Name        string
	PrefixSet   string // "": any prefix
	NeighborSet string // "": any peer
	Family      string // "": any; else "ipv4-unicast" or "ipv6-unicast"

	Communities      []string // "65000:100"
	LargeCommunities []string // "1:2:3"
	LocalPref        uint32
	NextHop          netip.Addr
	Action           string // "": continue to the next statement; "accept"; "reject"
}

const (
	familyV4 = "ipv4-unicast"
	familyV6 = "ipv6-unicast"
)

// prefixSetName is the stable name of an advertisement's prefix set, kept
// up to date incrementally as routes come and go.
func prefixSetName(k setKey) string {
	if k.V6 {
		return "herald-a-" + k.Adv + "-v6"
	}
	return "herald-a-" + k.Adv + "-v4"
}

// buildExport computes the export policy for d. Statement and neighbor-set
// names are relative; the caller prefixes them with a generation so that a
// new policy can be installed next to the old one. Pure.
func buildExport(d Desired) exportPolicy {
	pol := exportPolicy{NeighborSets: map[string][]netip.Addr{}}
	addrOf := make(map[string]netip.Addr, len(d.Peers))
	internal := map[netip.Addr]bool{} // iBGP peers: LOCAL_PREF goes only to them (RFC 4271 5.1.5)
	var v4, v6 []netip.Addr
	for _, p := range d.Peers {
		addrOf[p.Name] = p.Address
		internal[p.Address] = p.ASN == p.MyASN
		if p.Address.Is4() {
			v4 = append(v4, p.Address)
		} else {
			v6 = append(v6, p.Address)
		}
	}
	cross := func(name string, peers []netip.Addr, family string, nh netip.Addr) {
		if len(peers) == 0 {
			return
		}
		slices.SortFunc(peers, netip.Addr.Compare)
		pol.NeighborSets[name] = peers
		st := statement{Name: "nh-" + family, NeighborSet: name, Family: family}
		if nh.IsValid() {
			st.NextHop = nh
		} else {
			st.Action = "reject"
		}
		pol.Statements = append(pol.Statements, st)
	}
	cross("peers-v6", v6, familyV4, d.NextHopV4)
	cross("peers-v4", v4, familyV6, d.NextHopV6)

	advs := slices.Clone(d.Advertisements)
	slices.SortFunc(advs, func(a, b Advertisement) int {
		return cmp.Or(cmp.Compare(a.LocalPref, b.LocalPref), cmp.Compare(a.Name, b.Name))
	})
	var mods, accepts []statement
	for _, a := range advs {
		nset := ""
		targets := slices.Collect(maps.Values(addrOf))
		if len(a.Peers) > 0 {
			targets = nil
			for _, n := range a.Peers {
				if ad, ok := addrOf[n]; ok && !slices.Contains(targets, ad) {
					targets = append(targets, ad)
				}
			}
			if len(targets) == 0 {
				continue // its peers do not exist: it goes nowhere
			}
			slices.SortFunc(targets, netip.Addr.Compare)
			nset = "n-" + a.Name
			pol.NeighborSets[nset] = targets
		}
		iset := ""
		if ibgp := slices.DeleteFunc(slices.Clone(targets), func(ad netip.Addr) bool { return !internal[ad] }); a.LocalPref > 0 && len(ibgp) > 0 {
			slices.SortFunc(ibgp, netip.Addr.Compare)
			iset = "i-" + a.Name
			pol.NeighborSets[iset] = ibgp
		}
		var comms, large []string
		for _, c := range a.Communities {
			comms = append(comms, fmt.Sprintf("%d:%d", c>>16, c&0xffff))
		}
		for _, c := range a.LargeCommunities {
			large = append(large, fmt.Sprintf("%d:%d:%d", c[0], c[1], c[2]))
		}
		for _, v6 := range []bool{false, true} {
			k := setKey{a.Name, v6}
			fam := "v4"
			if v6 {
				fam = "v6"
			}
			if len(comms) > 0 || len(large) > 0 {
				mods = append(mods, statement{
					Name: "mod-" + a.Name + "-" + fam, PrefixSet: prefixSetName(k), NeighborSet: nset,
					Communities: comms, LargeCommunities: large,
				})
			}
			if iset != "" {
				mods = append(mods, statement{
					Name: "pref-" + a.Name + "-" + fam, PrefixSet: prefixSetName(k), NeighborSet: iset, LocalPref: a.LocalPref,
				})
			}
			accepts = append(accepts, statement{
				Name: "acc-" + a.Name + "-" + fam, PrefixSet: prefixSetName(k), NeighborSet: nset, Action: "accept",
			})
		}
	}
	pol.Statements = append(pol.Statements, mods...)
	pol.Statements = append(pol.Statements, accepts...)
	return pol
}

// peerView describes what the policy does for one peer, so that a soft
// reset out is sent only to peers whose view changed.
func (p exportPolicy) peerView(addr netip.Addr) string {
	var b strings.Builder
	for _, st := range p.Statements {
		if st.NeighborSet != "" && !slices.Contains(p.NeighborSets[st.NeighborSet], addr) {
			continue
		}
		fmt.Fprintf(&b, "%s|%s|%s|%v|%v|%d|%s|%s;", st.Name, st.PrefixSet, st.Family,
			st.Communities, st.LargeCommunities, st.LocalPref, st.NextHop, st.Action)
	}
	return b.String()
}

// equal reports whether two policies are the same.
func (p exportPolicy) equal(q exportPolicy) bool {
	if len(p.NeighborSets) != len(q.NeighborSets) || len(p.Statements) != len(q.Statements) {
		return false
	}
	for k, v := range p.NeighborSets {
		if !slices.Equal(v, q.NeighborSets[k]) {
			return false
		}
	}
	for i := range p.Statements {
		a, b := p.Statements[i], q.Statements[i]
		if a.Name != b.Name || a.PrefixSet != b.PrefixSet || a.NeighborSet != b.NeighborSet ||
			a.Family != b.Family || !slices.Equal(a.Communities, b.Communities) ||
			!slices.Equal(a.LargeCommunities, b.LargeCommunities) || a.LocalPref != b.LocalPref ||
			a.NextHop != b.NextHop || a.Action != b.Action {
			return false
		}
	}
	return true
}

// prefixSets lists the prefix sets the policy refers to.
func (p exportPolicy) prefixSets() []string {
	var out []string
	for _, st := range p.Statements {
		if st.PrefixSet != "" && !slices.Contains(out, st.PrefixSet) {
			out = append(out, st.PrefixSet)
		}
	}
	slices.Sort(out)
	return out
}
