package speaker

import (
	"net/netip"
	"slices"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/heraldlb/herald/config"
)

// LabelExclude keeps a node from announcing any load-balancer address.
const LabelExclude = "node.kubernetes.io/exclude-from-external-load-balancers"

// NodeInfo is what the decision needs to know of a node.
type NodeInfo struct {
	Name               string
	Labels             labels.Set
	NetworkUnavailable bool
	Alive              bool // a live memberlist member
	Settled            bool // alive for at least the hold-down
	// DataPathDown: kube-proxy on the node does not answer healthy (or
	// did not for long enough yet): the node must not announce.
	DataPathDown bool
}

// ServiceInfo is what the decision needs to know of a Service.
type ServiceInfo struct {
	Key        string // namespace/name
	Addrs      []netip.Addr
	Local      bool     // externalTrafficPolicy: Local
	ReadyNodes []string // nodes with at least one ready endpoint, sorted
}

// L2Owner says which node answers for an address.
type L2Owner struct {
	Node string // "" when nobody may announce it
	// Interfaces narrows where the owner answers; empty means every
	// eligible interface.
	Interfaces []string
	Services   []string // the Services showing the address, sorted
	Why        string   // when Node is "": why nobody announces
}

// DecideL2 chooses the owner of every address of svcs. An address is
// announced when one of its Services has a ready endpoint and an L2
// advertisement covers its pool; its candidates are the live nodes that an
// advertisement selects, that are not excluded or NetworkUnavailable and,
// for a Local Service, that have a ready endpoint of it. Settled candidates
// (alive for the hold-down) are preferred, so a returning node takes its
// addresses back only once it has proved stable. Pure: same inputs, same answer.
func DecideL2(cfg *config.Config, svcs []ServiceInfo, nodes []NodeInfo) map[netip.Addr]L2Owner {
	byAddr := map[netip.Addr][]ServiceInfo{}
	for _, s := range svcs {
		for _, a := range s.Addrs {
			byAddr[a] = append(byAddr[a], s)
		}
	}
	out := make(map[netip.Addr]L2Owner, len(byAddr))
	for addr, users := range byAddr {
		out[addr] = decideAddr(cfg, addr, users, nodes)
	}
	return out
}

func decideAddr(cfg *config.Config, addr netip.Addr, users []ServiceInfo, nodes []NodeInfo) L2Owner {
	var o L2Owner
	for _, s := range users {
		o.Services = append(o.Services, s.Key)
	}
	slices.Sort(o.Services)
	pool, ok := cfg.PoolOf(addr)
	if !ok {
		o.Why = "no pool contains the address"
		return o
	}
	advs := advertisementsOf(cfg, pool.Name)
	if len(advs) == 0 {
		o.Why = "no L2 advertisement covers pool " + pool.Name
		return o
	}
	if !slices.ContainsFunc(users, func(s ServiceInfo) bool { return len(s.ReadyNodes) > 0 }) {
		o.Why = "no ready endpoint"
		return o
	}
	var candidates, settled []string
	for _, n := range nodes {
		if !eligible(n, advs) || !servesFrom(users, n.Name) {
			continue
		}
		candidates = append(candidates, n.Name)
		if n.Settled {
			settled = append(settled, n.Name)
		}
	}
	if len(settled) > 0 {
		candidates = settled
	}
	o.Node = Winner(candidates, addr)
	if o.Node == "" {
		o.Why = "no eligible node"
		return o
	}
	o.Interfaces = interfacesOn(advs, nodeNamed(nodes, o.Node))
	return o
}

func advertisementsOf(cfg *config.Config, pool string) []config.L2Advertisement {
	var out []config.L2Advertisement
	for _, a := range cfg.L2Advertisements {
		if len(a.Pools) == 0 || slices.Contains(a.Pools, pool) {
			out = append(out, a)
		}
	}
	return out
}

// eligible: a live node, not excluded or NetworkUnavailable, selected by an advertisement.
func eligible(n NodeInfo, advs []config.L2Advertisement) bool {
	if !n.Alive || n.NetworkUnavailable || n.DataPathDown || n.Labels.Has(LabelExclude) {
		return false
	}
	return slices.ContainsFunc(advs, func(a config.L2Advertisement) bool { return selects(a.NodeSelector, n.Labels) })
}

// servesFrom: some Service of the address can deliver from the node — a
// Cluster one with a ready endpoint anywhere, a Local one with one on it.
func servesFrom(users []ServiceInfo, node string) bool {
	return slices.ContainsFunc(users, func(s ServiceInfo) bool {
		if !s.Local {
			return len(s.ReadyNodes) > 0
		}
		_, found := slices.BinarySearch(s.ReadyNodes, node)
		return found
	})
}

// interfacesOn merges the interface lists of the advertisements selecting
// the node; any of them without a list means every interface.
func interfacesOn(advs []config.L2Advertisement, n NodeInfo) []string {
	var out []string
	for _, a := range advs {
		if !selects(a.NodeSelector, n.Labels) {
			continue
		}
		if len(a.Interfaces) == 0 {
			return nil
		}
		out = append(out, a.Interfaces...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func selects(sel labels.Selector, l labels.Set) bool {
	return sel == nil || sel.Matches(l)
}

func nodeNamed(nodes []NodeInfo, name string) NodeInfo {
	for _, n := range nodes {
		if n.Name == name {
			return n
		}
	}
	return NodeInfo{}
}
