package speaker

import (
	"net/netip"
	"slices"

	"github.com/heraldlb/herald/bgp"
	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/speaker/state"
)

// publish hands the reporter what this node does now; it writes the
// node's SpeakerState only when that changed.
func (s *Speaker) publish(cfg config.State, nodes []NodeInfo) {
	st := state.Status{
		Version:     s.opts.Version,
		Joined:      s.members.Joined(),
		Isolated:    s.members.Isolated(),
		Config:      cfg.Hash,
		ConfigError: s.cfgErr,
		BGP:         s.bgpState.routes,
	}
	for _, n := range nodes {
		if n.Alive {
			st.Members = append(st.Members, n.Name)
		}
	}
	for _, mac := range s.members.MACs() {
		st.MACs = append(st.MACs, mac.String())
	}
	s.mu.Lock()
	st.DataPathDown = s.dataPathWhy
	st.Conflicts = s.conflicts.published()
	for addr, o := range s.owned {
		if o.until.IsZero() { // not a hand-back: the new owner reports it
			st.L2 = append(st.L2, state.L2Address{Address: addr.String(), Interfaces: slices.Clone(o.ifaces), Services: slices.Clone(o.services)})
		}
	}
	s.mu.Unlock()
	if s.bgp != nil {
		st.Sessions = sessions(s.bgp.Sessions(), s.bgpState.asns, s.publishedFamilies)
	}
	node, _ := s.nodes.Get(s.opts.Node)
	s.report.publish(st, node)
}

// sessions are the BGP server's sessions as published: Established or
// Connecting, so that a peer that is away does not cause a write at each
// attempt to reach it.
func sessions(peers []bgp.PeerStatus, asns map[string]uint32, families func(bgp.PeerStatus) []string) []state.Session {
	out := make([]state.Session, 0, len(peers))
	for _, p := range peers {
		ss := state.Session{Peer: p.Name, Address: p.Address.String(), ASN: asns[p.Name], State: state.SessionConnecting, Reason: p.LastError, Families: families(p)}
		if p.Established {
			ss.State = state.SessionEstablished
		}
		out = append(out, ss)
	}
	return out
}

// publishedRoutes lists the prefixes a decision advertises, each with the
// peers it goes to and the Services it serves.
func publishedRoutes(d BGPDecision, desired bgp.Desired) []state.Route {
	services := map[netip.Prefix][]string{}
	for key, bs := range d.Services {
		for _, p := range bs.Prefixes {
			services[p] = append(services[p], key)
		}
	}
	var all []string
	for _, p := range desired.Peers {
		all = append(all, p.Name)
	}
	advPeers := map[string][]string{}
	for _, a := range desired.Advertisements {
		advPeers[a.Name] = a.Peers
		if len(a.Peers) == 0 {
			advPeers[a.Name] = all
		}
	}
	out := make([]state.Route, 0, len(desired.Routes))
	for pfx, advs := range desired.Routes {
		var peers []string
		for _, a := range advs {
			peers = append(peers, advPeers[a]...)
		}
		slices.Sort(peers)
		out = append(out, state.Route{Prefix: pfx.String(), Peers: slices.Compact(peers), Services: services[pfx]})
	}
	return out
}

// bgpChanges wakes the loop when a BGP session goes up or down.
func (s *Speaker) bgpChanges() <-chan struct{} {
	if s.bgp == nil {
		return nil
	}
	return s.bgp.Changes()
}
