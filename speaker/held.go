package speaker

import (
	"net/netip"
	"slices"

	"github.com/heraldlb/herald/config"
)

// A configuration change that the user has not confirmed stops nothing:
// each address that the accepted configuration announces by a protocol and
// the configuration in force does not is still announced by that protocol,
// as the accepted configuration says (config.State.Accepted).

// HeldAdvertisement prefixes the names of the accepted configuration's BGP
// advertisements in a decision, so they never mix with the ones in force.
const HeldAdvertisement = "held:"

// keptServices restricts svcs to the addresses that cur does not announce
// by the protocol (BGP when bgp is true, else L2) and accepted does.
func keptServices(cur, accepted *config.Config, svcs []ServiceInfo, bgp bool) []ServiceInfo {
	var out []ServiceInfo
	for _, s := range svcs {
		var kept []netip.Addr
		for _, a := range s.Addrs {
			l2Now, bgpNow := cur.Announces(a)
			l2Was, bgpWas := accepted.Announces(a)
			if (bgp && bgpWas && !bgpNow) || (!bgp && l2Was && !l2Now) {
				kept = append(kept, a)
			}
		}
		if len(kept) > 0 {
			s.Addrs = kept
			out = append(out, s)
		}
	}
	return out
}

// DecideL2Kept is DecideL2 under cur, and under accepted (nil: none) for the
// addresses only accepted announces by L2.
func DecideL2Kept(cur, accepted *config.Config, svcs []ServiceInfo, nodes []NodeInfo) map[netip.Addr]L2Owner {
	out := DecideL2(cur, svcs, nodes)
	if accepted == nil {
		return out
	}
	for addr, o := range DecideL2(accepted, keptServices(cur, accepted, svcs, false), nodes) {
		out[addr] = o
	}
	return out
}

// DecideBGPKept is DecideBGP under cur, plus what accepted (nil: none) has
// node self advertise for the addresses only accepted announces by BGP,
// with the sessions that takes. Accepted's advertisements are named with
// HeldAdvertisement in front.
func DecideBGPKept(cur, accepted *config.Config, svcs []ServiceInfo, self NodeInfo) BGPDecision {
	d := DecideBGP(cur, svcs, self)
	if accepted == nil {
		return d
	}
	kept := keptServices(cur, accepted, svcs, true)
	if len(kept) == 0 {
		return d
	}
	h := DecideBGP(accepted, kept, self)
	for prefix, advs := range h.Routes {
		for _, a := range advs {
			d.Routes[prefix] = append(d.Routes[prefix], HeldAdvertisement+a)
		}
		slices.Sort(d.Routes[prefix])
		d.Routes[prefix] = slices.Compact(d.Routes[prefix])
	}
	for key, hs := range h.Services {
		bs, ok := d.Services[key]
		if !ok || len(bs.Prefixes) == 0 {
			d.Services[key] = hs
			continue
		}
		bs.Prefixes = append(bs.Prefixes, hs.Prefixes...)
		slices.SortFunc(bs.Prefixes, comparePrefixes)
		bs.Prefixes = slices.Compact(bs.Prefixes)
		d.Services[key] = bs
	}
	for _, p := range h.Peers {
		// A held peer at an address a current one holds is the same
		// router (renamed, or another rack's entry): one session to it.
		if !slices.ContainsFunc(d.Peers, func(q config.BGPPeer) bool {
			return q.Name == p.Name || (q.Address == p.Address && q.Port == p.Port)
		}) {
			d.Peers = append(d.Peers, p)
		}
	}
	return d
}
