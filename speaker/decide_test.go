package speaker_test

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/speaker"
)

func TestWinnerSpreadsEvenly(t *testing.T) {
	nodes := []string{"node1", "node2", "node3"}
	count := map[string]int{}
	base := netip.MustParseAddr("198.51.100.0")
	a := base
	for range 300 {
		a = a.Next()
		count[speaker.Winner(nodes, a)]++
	}
	lo, hi := 300, 0
	for _, n := range nodes {
		lo, hi = min(lo, count[n]), max(hi, count[n])
	}
	if float64(hi) > 1.5*float64(lo) {
		t.Fatalf("owners over 300 addresses: %v; the busiest owns more than 1.5x the least busy", count)
	}
}

func TestWinnerIsStable(t *testing.T) {
	all := []string{"node1", "node2", "node3", "node4"}
	a := netip.MustParseAddr("2001:db8:1::200")
	for range 200 {
		a = a.Next()
		w := speaker.Winner(all, a)
		for _, gone := range all {
			if gone == w {
				continue
			}
			rest := slices.DeleteFunc(slices.Clone(all), func(n string) bool { return n == gone })
			if got := speaker.Winner(rest, a); got != w {
				t.Fatalf("%s: removing %s moved the owner from %s to %s", a, gone, w, got)
			}
		}
		if got := speaker.Winner([]string{all[3], all[1], all[0], all[2]}, a); got != w {
			t.Fatalf("%s: candidate order changed the owner", a)
		}
		if r := speaker.Ranked(all, a); r[0] != w {
			t.Fatalf("%s: Ranked starts with %s, Winner says %s", a, r[0], w)
		}
	}
	if speaker.Winner(nil, a) != "" {
		t.Fatal("a winner without candidates")
	}
}

func mustConfig(t *testing.T, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const decideConfig = `
pools:
- name: lan
  addresses: ["198.51.100.200-198.51.100.250"]
- name: dark
  addresses: ["203.0.113.0/28"]
- name: edge
  addresses: ["2001:db8:1::200/124"]
l2Advertisements:
- name: lan
  pools: [lan]
- name: edge
  pools: [edge]
  nodeSelector: {matchLabels: {edge: "true"}}
  interfaces: [eth1, eth0]
`

func node(name string, mods ...func(*speaker.NodeInfo)) speaker.NodeInfo {
	n := speaker.NodeInfo{Name: name, Labels: labels.Set{"kubernetes.io/hostname": name}, Alive: true, Settled: true}
	for _, m := range mods {
		m(&n)
	}
	return n
}

func TestDecideL2(t *testing.T) {
	cfg := mustConfig(t, decideConfig)
	vip := netip.MustParseAddr("198.51.100.200")
	v6 := netip.MustParseAddr("2001:db8:1::201")
	three := []speaker.NodeInfo{node("node1"), node("node2"), node("node3")}
	names := []string{"node1", "node2", "node3"}
	winner := speaker.Winner(names, vip)
	others := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == winner })
	svc := func(local bool, ready ...string) speaker.ServiceInfo {
		return speaker.ServiceInfo{Key: "shop/web", Addrs: []netip.Addr{vip}, Local: local, ReadyNodes: ready}
	}
	without := func(name string, mod func(*speaker.NodeInfo)) []speaker.NodeInfo {
		out := slices.Clone(three)
		for i := range out {
			if out[i].Name == name {
				mod(&out[i])
			}
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		svcs  []speaker.ServiceInfo
		nodes []speaker.NodeInfo
		addr  netip.Addr
		want  speaker.L2Owner
	}{
		{name: "cluster policy: the election winner", svcs: []speaker.ServiceInfo{svc(false, "node1")}, nodes: three, addr: vip,
			want: speaker.L2Owner{Node: winner, Services: []string{"shop/web"}}},
		{name: "no ready endpoint", svcs: []speaker.ServiceInfo{svc(false)}, nodes: three, addr: vip,
			want: speaker.L2Owner{Services: []string{"shop/web"}, Why: "no ready endpoint"}},
		{name: "local: only nodes with a ready pod", svcs: []speaker.ServiceInfo{svc(true, others[0])}, nodes: three, addr: vip,
			want: speaker.L2Owner{Node: others[0], Services: []string{"shop/web"}}},
		{name: "dead winner", svcs: []speaker.ServiceInfo{svc(false, "node1")}, addr: vip,
			nodes: without(winner, func(n *speaker.NodeInfo) { n.Alive = false }),
			want:  speaker.L2Owner{Node: speaker.Winner(others, vip), Services: []string{"shop/web"}}},
		{name: "excluded winner", svcs: []speaker.ServiceInfo{svc(false, "node1")}, addr: vip,
			nodes: without(winner, func(n *speaker.NodeInfo) { n.Labels = labels.Set{speaker.LabelExclude: ""} }),
			want:  speaker.L2Owner{Node: speaker.Winner(others, vip), Services: []string{"shop/web"}}},
		{name: "network unavailable winner", svcs: []speaker.ServiceInfo{svc(false, "node1")}, addr: vip,
			nodes: without(winner, func(n *speaker.NodeInfo) { n.NetworkUnavailable = true }),
			want:  speaker.L2Owner{Node: speaker.Winner(others, vip), Services: []string{"shop/web"}}},
		{name: "winner without a data path", svcs: []speaker.ServiceInfo{svc(false, "node1")}, addr: vip,
			nodes: without(winner, func(n *speaker.NodeInfo) { n.DataPathDown = true }),
			want:  speaker.L2Owner{Node: speaker.Winner(others, vip), Services: []string{"shop/web"}}},
		{name: "returning winner waits for the hold-down", svcs: []speaker.ServiceInfo{svc(false, "node1")}, addr: vip,
			nodes: without(winner, func(n *speaker.NodeInfo) { n.Settled = false }),
			want:  speaker.L2Owner{Node: speaker.Winner(others, vip), Services: []string{"shop/web"}}},
		{name: "nobody settled (cluster start): everyone counts", svcs: []speaker.ServiceInfo{svc(false, "node1")}, addr: vip,
			nodes: []speaker.NodeInfo{node("node1", unsettled), node("node2", unsettled), node("node3", unsettled)},
			want:  speaker.L2Owner{Node: winner, Services: []string{"shop/web"}}},
		{name: "pool without advertisement", addr: netip.MustParseAddr("203.0.113.1"), nodes: three,
			svcs: []speaker.ServiceInfo{{Key: "a/b", Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.1")}, ReadyNodes: []string{"node1"}}},
			want: speaker.L2Owner{Services: []string{"a/b"}, Why: "no L2 advertisement covers pool dark"}},
		{name: "node selector and interfaces", addr: v6,
			nodes: []speaker.NodeInfo{node("node1"), node("node2", func(n *speaker.NodeInfo) { n.Labels["edge"] = "true" })},
			svcs:  []speaker.ServiceInfo{{Key: "a/b", Addrs: []netip.Addr{v6}, ReadyNodes: []string{"node1"}}},
			want:  speaker.L2Owner{Node: "node2", Interfaces: []string{"eth0", "eth1"}, Services: []string{"a/b"}}},
		{name: "shared address: one owner for all its Services", addr: vip, nodes: three,
			svcs: []speaker.ServiceInfo{
				{Key: "shop/dns-tcp", Addrs: []netip.Addr{vip}, ReadyNodes: []string{"node2"}},
				{Key: "shop/dns-udp", Addrs: []netip.Addr{vip}},
			},
			want: speaker.L2Owner{Node: winner, Services: []string{"shop/dns-tcp", "shop/dns-udp"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := speaker.DecideL2(cfg, tc.svcs, tc.nodes)[tc.addr]
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("DecideL2 (-want +got):\n%s", diff)
			}
		})
	}
}

func unsettled(n *speaker.NodeInfo) { n.Settled = false }

// An unrelated change (another Service, a node the address does not need)
// never moves an address whose owner is still eligible.
func TestDecideL2Stability(t *testing.T) {
	cfg := mustConfig(t, decideConfig)
	var svcs []speaker.ServiceInfo
	a := netip.MustParseAddr("198.51.100.200")
	for i := range 40 {
		svcs = append(svcs, speaker.ServiceInfo{Key: fmt.Sprintf("ns/s%d", i), Addrs: []netip.Addr{a}, ReadyNodes: []string{"node1"}})
		a = a.Next()
	}
	nodes := []speaker.NodeInfo{node("node1"), node("node2"), node("node3"), node("node4")}
	before := speaker.DecideL2(cfg, svcs, nodes)
	after := speaker.DecideL2(cfg, svcs[1:], nodes[:3]) // a Service deleted, node4 gone
	for addr, o := range after {
		if b := before[addr]; b.Node != "node4" && b.Node != o.Node {
			t.Errorf("%s moved from %s to %s", addr, b.Node, o.Node)
		}
	}
}
