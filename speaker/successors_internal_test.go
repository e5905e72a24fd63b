package speaker

import (
	"fmt"
	"net/netip"
	"testing"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/heraldlb/herald/config"
)

// successors names the node that takes an address over when its owner
// dies: the second of the rendezvous ranking among the eligible nodes.
func TestSuccessors(t *testing.T) {
	cfg, err := config.Parse([]byte(`
pools:
- name: lan
  addresses: ["198.51.100.200-198.51.100.250"]
l2Advertisements:
- name: lan
  pools: [lan]
`))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"node1", "node2", "node3"}
	var nodes []NodeInfo
	for _, n := range names {
		nodes = append(nodes, NodeInfo{Name: n, Labels: labels.Set{"kubernetes.io/hostname": n}, Alive: true, Settled: true})
	}
	var cluster, local []ServiceInfo
	a := netip.MustParseAddr("198.51.100.200")
	for i := range 30 {
		cluster = append(cluster, ServiceInfo{Key: fmt.Sprintf("ns/c%d", i), Addrs: []netip.Addr{a}, ReadyNodes: names})
		local = append(local, ServiceInfo{Key: fmt.Sprintf("ns/l%d", i), Addrs: []netip.Addr{a}, Local: true, ReadyNodes: []string{"node2", "node3"}})
		a = a.Next()
	}
	st := config.State{Config: cfg}

	t.Run("cluster policy: the runner-up of the ranking", func(t *testing.T) {
		owners := DecideL2Kept(cfg, nil, cluster, nodes)
		next := successors(st, cluster, nodes, owners, "node1")
		for addr, o := range owners {
			rank := Ranked(names, addr)
			switch got, ok := next[addr]; {
			case o.Node == "node1" && ok:
				t.Errorf("%s: this node owns it, yet a successor %q", addr, got)
			case o.Node != "node1" && got != rank[1]:
				t.Errorf("%s (owner %s, ranking %v): successor %q, want %q", addr, o.Node, rank, got, rank[1])
			}
		}
	})
	t.Run("local policy: only a node with a ready pod", func(t *testing.T) {
		owners := DecideL2Kept(cfg, nil, local, nodes)
		next := successors(st, local, nodes, owners, "node1")
		for addr, o := range owners {
			want := map[string]string{"node2": "node3", "node3": "node2"}[o.Node]
			if got := next[addr]; got != want {
				t.Errorf("%s (owner %s): successor %q, want %q", addr, o.Node, got, want)
			}
		}
	})
}
