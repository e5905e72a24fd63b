package speaker

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/heraldlb/herald/config"
)

// BGPDecision is what one node says over BGP.
type BGPDecision struct {
	// Peers are the sessions the node holds: the peers whose nodeSelector
	// selects it (whatever it advertises, so a route can come back at once),
	// but at one address and port only the first in the document
	// (config.Config.PeersFor).
	Peers []config.BGPPeer
	// PeerConflicts are the addresses and ports at which more than one peer
	// selects the node, for the caller to report.
	PeerConflicts []config.PeerConflict
	// Routes maps each prefix the node advertises to the names of the BGP
	// advertisements carrying it, sorted.
	Routes map[netip.Prefix][]string
	// Services covers every Service with an address in a pool that has a
	// BGP advertisement: what the node advertises for it, or why nothing.
	Services map[string]BGPService
}

// BGPService is one Service's part of a BGPDecision.
type BGPService struct {
	Prefixes []netip.Prefix // advertised from this node, sorted; empty: not advertised
	Why      string         // when Prefixes is empty: every reason, "; "-separated
}

// DecideBGP decides what node self advertises. Every node speaks for
// itself: an address goes out from each eligible node (not excluded, not
// NetworkUnavailable, selected by an advertisement of its pool) while one of
// its Services can deliver from there — a Cluster Service with a ready
// endpoint anywhere, a Local one with a ready endpoint on the node. An
// advertisement naming peers of which this node holds none sends nothing.
// At an address and port where several peers select the node, it holds a
// session with the first of them in the document only (PeerConflicts).
// Pure: same inputs, same answer.
func DecideBGP(cfg *config.Config, svcs []ServiceInfo, self NodeInfo) BGPDecision {
	d := BGPDecision{Routes: map[netip.Prefix][]string{}, Services: map[string]BGPService{}}
	d.Peers, d.PeerConflicts = cfg.PeersFor(self.Labels)
	names := make(map[string]bool, len(d.Peers))
	for _, p := range d.Peers {
		names[p.Name] = true
	}
	for _, s := range svcs {
		var bs BGPService
		var whys []string
		covered := false
		for _, addr := range s.Addrs {
			pool, ok := cfg.PoolOf(addr)
			if !ok {
				continue
			}
			for _, adv := range cfg.BGPAdvertisements {
				if len(adv.Pools) > 0 && !slices.Contains(adv.Pools, pool.Name) {
					continue
				}
				covered = true
				if why := whyNotBGP(adv, s, self, names); why != "" {
					if !slices.Contains(whys, why) {
						whys = append(whys, why)
					}
					continue
				}
				prefix := aggregate(addr, adv)
				if !slices.Contains(d.Routes[prefix], adv.Name) {
					d.Routes[prefix] = append(d.Routes[prefix], adv.Name)
				}
				if !slices.Contains(bs.Prefixes, prefix) {
					bs.Prefixes = append(bs.Prefixes, prefix)
				}
			}
		}
		if !covered {
			continue
		}
		if len(bs.Prefixes) > 0 {
			slices.SortFunc(bs.Prefixes, comparePrefixes)
		} else {
			bs.Why = strings.Join(whys, "; ")
		}
		d.Services[s.Key] = bs
	}
	for _, advs := range d.Routes {
		slices.Sort(advs)
	}
	return d
}

// whyNotBGP says why adv does not carry Service s from node self ("" if it does).
func whyNotBGP(adv config.BGPAdvertisement, s ServiceInfo, self NodeInfo, peers map[string]bool) string {
	switch {
	case self.Labels.Has(LabelExclude):
		return "node " + self.Name + " is excluded from external load balancers"
	case self.NetworkUnavailable:
		return "node " + self.Name + " has NetworkUnavailable"
	case self.DataPathDown:
		return "node " + self.Name + " has no working data path (kube-proxy not healthy)"
	case !selects(adv.NodeSelector, self.Labels):
		return "BGP advertisement " + adv.Name + " does not select node " + self.Name
	case len(adv.Peers) > 0 && !slices.ContainsFunc(adv.Peers, func(p string) bool { return peers[p] }):
		return "node " + self.Name + " has no session to the peers of BGP advertisement " + adv.Name
	case len(s.ReadyNodes) == 0:
		return "no ready endpoint"
	case s.Local && !slices.Contains(s.ReadyNodes, self.Name):
		return "no ready endpoint on node " + self.Name + " (externalTrafficPolicy: Local)"
	}
	return ""
}

// aggregate is the prefix adv sends for addr.
func aggregate(addr netip.Addr, adv config.BGPAdvertisement) netip.Prefix {
	bits := adv.AggregationLength
	if addr.Is6() {
		bits = adv.AggregationLengthV6
	}
	p, _ := addr.Prefix(bits) // lengths are validated to fit the family
	return p
}

func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
