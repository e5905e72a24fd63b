package bgp

import (
	"cmp"
	"maps"
	"net/netip"
	"reflect"
	"slices"
)

// peerDiff is what Set must do to the sessions.
type peerDiff struct {
	Add    []Peer // new names
	Delete []Peer // names no longer wanted (the old configuration)
	Change []Peer // same name, new configuration: delete and re-add
}

// sameSession reports whether b needs no new session where a runs: they
// differ at most in BFD, which changes in place.
func sameSession(a, b Peer) bool {
	a.BFD, b.BFD = nil, nil
	return reflect.DeepEqual(a, b)
}

// diffPeers compares sessions by Name. A peer whose configuration is equal
// is left alone, so its session never resets. O(n log n).
func diffPeers(old, new []Peer) peerDiff {
	var d peerDiff
	was := make(map[string]Peer, len(old))
	for _, p := range old {
		was[p.Name] = p
	}
	is := make(map[string]bool, len(new))
	for _, p := range new {
		is[p.Name] = true
		o, ok := was[p.Name]
		switch {
		case !ok:
			d.Add = append(d.Add, p)
		case !sameSession(o, p):
			d.Change = append(d.Change, p)
		}
	}
	for _, p := range old {
		if !is[p.Name] {
			d.Delete = append(d.Delete, p)
		}
	}
	byName := func(a, b Peer) int { return cmp.Compare(a.Name, b.Name) }
	slices.SortFunc(d.Add, byName)
	slices.SortFunc(d.Delete, byName)
	slices.SortFunc(d.Change, byName)
	return d
}

// setKey names one advertisement's prefix set of one family: GoBGP prefix
// sets hold a single address family.
type setKey struct {
	Adv string
	V6  bool
}

// routeDiff is what Set must do to the RIB and the advertisements' prefix sets.
type routeDiff struct {
	// Announce holds new prefixes; they are added in one AddPath call.
	Announce []netip.Prefix
	// Changed holds prefixes carried by another set of advertisements than
	// before. Their path is the same, so adding it again would propagate
	// nothing: the peers whose view changed get a soft reset out instead.
	Changed []netip.Prefix
	// Withdraw holds prefixes that are no longer wanted.
	Withdraw []netip.Prefix
	// Join and Leave are changes to prefix-set membership: Join before the
	// paths are announced, Leave after they are withdrawn.
	Join, Leave map[setKey][]netip.Prefix
}

// members returns the advertisements that carry p and exist, sorted.
func members(d Desired, known map[string]bool, p netip.Prefix) []string {
	var out []string
	for _, a := range d.Routes[p] {
		if known[a] && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

func advNames(d Desired) map[string]bool {
	m := make(map[string]bool, len(d.Advertisements))
	for _, a := range d.Advertisements {
		m[a.Name] = true
	}
	return m
}

// diffRoutes compares the routes of two Desired states. A prefix is in an
// advertisement's set when its Routes entry names an advertisement that
// exists. O(p·a) for p prefixes of a advertisements each.
func diffRoutes(old, new Desired) routeDiff {
	d := routeDiff{Join: map[setKey][]netip.Prefix{}, Leave: map[setKey][]netip.Prefix{}}
	oldKnown, newKnown := advNames(old), advNames(new)
	for p := range new.Routes {
		now := members(new, newKnown, p)
		_, had := old.Routes[p]
		was := members(old, oldKnown, p)
		switch {
		case !had:
			d.Announce = append(d.Announce, p)
		case !slices.Equal(was, now):
			d.Changed = append(d.Changed, p)
		}
		for _, a := range now {
			if !slices.Contains(was, a) {
				k := setKey{a, p.Addr().Is6()}
				d.Join[k] = append(d.Join[k], p)
			}
		}
		for _, a := range was {
			if !slices.Contains(now, a) {
				k := setKey{a, p.Addr().Is6()}
				d.Leave[k] = append(d.Leave[k], p)
			}
		}
	}
	for p := range old.Routes {
		if _, ok := new.Routes[p]; ok {
			continue
		}
		d.Withdraw = append(d.Withdraw, p)
		for _, a := range members(old, oldKnown, p) {
			k := setKey{a, p.Addr().Is6()}
			d.Leave[k] = append(d.Leave[k], p)
		}
	}
	slices.SortFunc(d.Announce, comparePrefix)
	slices.SortFunc(d.Changed, comparePrefix)
	slices.SortFunc(d.Withdraw, comparePrefix)
	for _, m := range []map[setKey][]netip.Prefix{d.Join, d.Leave} {
		for k := range maps.Keys(m) {
			slices.SortFunc(m[k], comparePrefix)
		}
	}
	return d
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// carriers returns the advertisements that carry prefix pfx to peer p
// under d; none when no next hop of the prefix's family exists on the
// peer's session.
func carriers(d Desired, p Peer, pfx netip.Prefix) []string {
	if pfx.Addr().Is4() != p.Address.Is4() {
		nh := d.NextHopV4
		if pfx.Addr().Is6() {
			nh = d.NextHopV6
		}
		if !nh.IsValid() {
			return nil
		}
	}
	var out []string
	for _, name := range members(d, advNames(d), pfx) {
		for _, a := range d.Advertisements {
			if a.Name == name && (len(a.Peers) == 0 || slices.Contains(a.Peers, p.Name)) {
				out = append(out, name)
			}
		}
	}
	return out
}

// affectedPeers returns the names of peers, unchanged between old and new,
// for which one of the changed prefixes is carried by other advertisements
// under new than under old: they gain it, lose it, or its attributes change.
func affectedPeers(old, new Desired, changed []netip.Prefix) []string {
	var out []string
	oldPeers := make(map[string]Peer, len(old.Peers))
	for _, p := range old.Peers {
		oldPeers[p.Name] = p
	}
	for _, p := range new.Peers {
		if o, ok := oldPeers[p.Name]; !ok || !reflect.DeepEqual(o, p) {
			continue // a new or re-added session gets the table from scratch
		}
		for _, pfx := range changed {
			if !slices.Equal(carriers(old, p, pfx), carriers(new, p, pfx)) {
				out = append(out, p.Name)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}
