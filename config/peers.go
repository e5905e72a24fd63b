package config

import (
	"cmp"
	"net/netip"
	"slices"

	"k8s.io/apimachinery/pkg/labels"
)

// PeerConflict is an address and port at which more than one BGP peer
// selects a node: the node peers with Kept, the first of them in the
// document, and not with Dropped.
type PeerConflict struct {
	Address netip.Addr
	Port    uint16
	Kept    string
	Dropped []string // in document order
}

// PeersFor returns the BGP peers that a node with the given labels opens
// sessions to, in c.BGPPeers order, and the conflicts among them, sorted
// by address and port.
//
// The rule: a node peers with each peer whose nodeSelector selects it, but
// at one address and port only with the first such peer in the document
// (the lowest Rank); the others at that address and port are dropped, and
// a conflict names them. A router could not tell two sessions from one node
// to one address apart. Peers share an address when every rack reaches one
// anycast gateway with its own AS numbers, one peer per rack; Parse refuses
// two that select every node or have the same selector, and leaves other
// overlaps, which depend on the nodes' labels, to this rule.
//
// It takes time linear in the number of peers, plus matching their selectors.
func (c *Config) PeersFor(node labels.Labels) ([]BGPPeer, []PeerConflict) {
	var peers []BGPPeer
	at := map[endpoint][]int{} // indexes in peers
	shared := false
	for _, p := range c.BGPPeers {
		if p.NodeSelector != nil && !p.NodeSelector.Matches(node) {
			continue
		}
		e := endpoint{p.Address, p.Port}
		at[e] = append(at[e], len(peers))
		shared = shared || len(at[e]) > 1
		peers = append(peers, p)
	}
	if !shared {
		return peers, nil
	}
	var conflicts []PeerConflict
	dropped := map[string]bool{}
	for e, idx := range at {
		if len(idx) < 2 {
			continue
		}
		slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(peers[a].Rank, peers[b].Rank) })
		pc := PeerConflict{Address: e.addr, Port: e.port, Kept: peers[idx[0]].Name}
		for _, i := range idx[1:] {
			pc.Dropped = append(pc.Dropped, peers[i].Name)
			dropped[peers[i].Name] = true
		}
		conflicts = append(conflicts, pc)
	}
	slices.SortFunc(conflicts, func(a, b PeerConflict) int {
		return cmp.Or(a.Address.Compare(b.Address), cmp.Compare(a.Port, b.Port))
	})
	peers = slices.DeleteFunc(peers, func(p BGPPeer) bool { return dropped[p.Name] })
	return peers, conflicts
}
