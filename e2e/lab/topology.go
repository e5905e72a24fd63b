package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// Lab network plan. Everything lives in namespaces the lab creates: the bridge
// has its own namespace, so the root namespace gets no link, address or route
// and any number of labs can run side by side.
var (
	LabNet4    = netip.MustParsePrefix("198.51.100.0/24")
	LabNet6    = netip.MustParsePrefix("2001:db8:1::/64")
	ExtNet4    = netip.MustParsePrefix("203.0.113.0/24")
	ExtNet6    = netip.MustParsePrefix("2001:db8:2::/64")
	Router4    = netip.MustParseAddr("198.51.100.1")
	Router6    = netip.MustParseAddr("2001:db8:1::1")
	APIServer4 = netip.MustParseAddr("198.51.100.2")
	APIServer6 = netip.MustParseAddr("2001:db8:1::2")
	Client4    = netip.MustParseAddr("198.51.100.3")
	Client6    = netip.MustParseAddr("2001:db8:1::3")
	RouterExt4 = netip.MustParseAddr("203.0.113.1")
	RouterExt6 = netip.MustParseAddr("2001:db8:2::1")
	External4  = netip.MustParseAddr("203.0.113.2")
	External6  = netip.MustParseAddr("2001:db8:2::2")

	ServiceCIDRs = []string{"10.96.0.0/16", "2001:db8:96::/112"}
	ClusterCIDRs = []string{"10.244.0.0/16", "2001:db8:244::/48"}
)

// RouterASN is the autonomous system FRR runs in the router namespace.
const RouterASN = 64500

// Node is one lab node: a network namespace that plays a Kubernetes node.
type Node struct {
	Name  string       `json:"name"` // Kubernetes node name
	NS    string       `json:"ns"`   // network namespace
	Index int          `json:"index"`
	IPv4  netip.Addr   `json:"ipv4"`
	IPv6  netip.Addr   `json:"ipv6"`
	Pod4  netip.Prefix `json:"pod4"`
	Pod6  netip.Prefix `json:"pod6"`
}

func newNode(prefix string, i int) Node {
	return Node{
		Name:  fmt.Sprintf("node%d", i),
		NS:    fmt.Sprintf("%s-node%d", prefix, i),
		Index: i,
		IPv4:  netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)}),
		IPv6:  netip.MustParseAddr(fmt.Sprintf("2001:db8:1::%d", 10+i)),
		Pod4:  netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", i)),
		Pod6:  netip.MustParsePrefix(fmt.Sprintf("2001:db8:244:%d::/64", i)),
	}
}

// Namespace names, all under the lab's prefix.
func (l *Lab) nsName(role string) string { return l.Prefix + "-" + role }

// NetNS is the namespace holding the lab bridge.
func (l *Lab) NetNS() string { return l.nsName("net") }

// ControlPlaneNS runs etcd, kube-apiserver and kube-controller-manager.
func (l *Lab) ControlPlaneNS() string { return l.nsName("cp") }

// ClientNS is a client on the lab bridge, next to the nodes.
func (l *Lab) ClientNS() string { return l.nsName("client") }

// RouterNS runs FRR, with one leg on the bridge and one on the external network.
func (l *Lab) RouterNS() string { return l.nsName("router") }

// ExternalNS is a client behind the router, on 203.0.113.0/24.
func (l *Lab) ExternalNS() string { return l.nsName("ext") }

// member is one namespace attached to the lab bridge.
type member struct {
	ns, port   string
	ipv4, ipv6 netip.Addr
	routes     []string // `ip route add` arguments
}

// buildNetwork creates every namespace and link of the lab.
func (l *Lab) buildNetwork(ctx context.Context) error {
	cp := member{ns: l.ControlPlaneNS(), port: "cp", ipv4: APIServer4, ipv6: APIServer6, routes: defaultRoutes()}
	for _, n := range l.Nodes { // pods with a namespace of their own reach the API server
		cp.routes = append(cp.routes, n.Pod4.String()+" via "+n.IPv4.String(), n.Pod6.String()+" via "+n.IPv6.String())
	}
	members := []member{cp}
	if !l.Minimal {
		members = append(members,
			member{ns: l.RouterNS(), port: "router", ipv4: Router4, ipv6: Router6},
			member{ns: l.ClientNS(), port: "client", ipv4: Client4, ipv6: Client6, routes: defaultRoutes()})
	}
	if l.BIRD {
		members = append(members, l.birdMember())
	}
	for _, n := range l.Nodes {
		m := member{ns: n.NS, port: n.Name, ipv4: n.IPv4, ipv6: n.IPv6, routes: defaultRoutes()}
		if l.BIRD {
			m.routes = append(m.routes, birdNodeRoutes()...)
		}
		for _, o := range l.Nodes {
			if o.Name != n.Name {
				m.routes = append(m.routes, o.Pod4.String()+" via "+o.IPv4.String(), o.Pod6.String()+" via "+o.IPv6.String())
			}
		}
		members = append(members, m)
	}
	all := []string{l.NetNS()}
	if !l.Minimal {
		all = append(all, l.ExternalNS())
	}
	for _, m := range members {
		all = append(all, m.ns)
	}
	for _, ns := range all {
		if _, err := run(ctx, "ip", "netns", "add", ns); err != nil {
			return err
		}
	}
	bridge := []string{
		"link set lo up",
		"link add br0 type bridge mcast_snooping 0",
		"link set br0 up",
	}
	for _, m := range members {
		bridge = append(bridge,
			fmt.Sprintf("link add %s type veth peer name eth0 netns %s", m.port, m.ns),
			fmt.Sprintf("link set %s master br0 up", m.port))
	}
	if err := ipBatch(ctx, l.NetNS(), bridge); err != nil {
		return err
	}
	for _, m := range members {
		lines := []string{
			"link set lo up",
			"link set eth0 up",
			fmt.Sprintf("addr add %s/24 dev eth0", m.ipv4),
			fmt.Sprintf("addr add %s/64 dev eth0 nodad", m.ipv6),
		}
		for _, r := range m.routes {
			lines = append(lines, "route add "+r)
		}
		if err := ipBatch(ctx, m.ns, lines); err != nil {
			return err
		}
	}
	if l.Minimal {
		return nil
	}
	ext := []string{
		fmt.Sprintf("link add eth1 type veth peer name eth0 netns %s", l.ExternalNS()),
		"link set eth1 up",
		fmt.Sprintf("addr add %s/24 dev eth1", RouterExt4),
		fmt.Sprintf("addr add %s/64 dev eth1 nodad", RouterExt6),
	}
	if err := ipBatch(ctx, l.RouterNS(), ext); err != nil {
		return err
	}
	if err := ipBatch(ctx, l.ExternalNS(), []string{
		"link set lo up", "link set eth0 up",
		fmt.Sprintf("addr add %s/24 dev eth0", External4),
		fmt.Sprintf("addr add %s/64 dev eth0 nodad", External6),
		"route add default via " + RouterExt4.String(),
		"route add ::/0 via " + RouterExt6.String(),
	}); err != nil {
		return err
	}
	if l.BIRD {
		if err := l.buildBIRDNetwork(ctx); err != nil {
			return err
		}
	}
	forwarding := []string{"sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"}
	for _, ns := range append([]string{l.RouterNS()}, l.nodeNSs()...) {
		if _, err := inNS(ctx, ns, forwarding...); err != nil {
			return err
		}
	}
	return nil
}

func defaultRoutes() []string {
	return []string{"0.0.0.0/0 via " + Router4.String(), "::/0 via " + Router6.String()}
}

func (l *Lab) nodeNSs() []string {
	out := make([]string, len(l.Nodes))
	for i, n := range l.Nodes {
		out[i] = n.NS
	}
	return out
}

// ipBatch runs `ip` commands in one process inside ns.
func ipBatch(ctx context.Context, ns string, lines []string) error {
	cmd := exec.CommandContext(ctx, "ip", "-n", ns, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip -n %s -batch: %w: %s", ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}
