package speaker_test

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/speaker"
)

const decideBGPConfig = `
pools:
- name: web
  addresses: ["203.0.113.0/24", "2001:db8:2::/64"]
- name: lan
  addresses: ["198.51.100.200-198.51.100.250"]
- name: rack
  addresses: ["198.51.100.96/28"]
bgpPeers:
- {name: tor-a, address: 198.51.100.1, asn: 64500, myASN: 64501}
- {name: tor-b, address: 198.51.100.2, asn: 64500, myASN: 64501, nodeSelector: {matchLabels: {rack: b}}}
- {name: rack-2, address: 198.51.100.3, asn: 64502, myASN: 64501, nodeSelector: {matchLabels: {rack2: "true"}}}
- {name: rack-1, address: 198.51.100.3, asn: 64503, myASN: 64501, nodeSelector: {matchLabels: {rack1: "true"}}}
bgpAdvertisements:
- name: all
  pools: [web]
- name: agg
  pools: [web]
  peers: [tor-a]
  aggregationLength: 24
  aggregationLengthV6: 64
- name: rack-b
  pools: [rack]
  peers: [tor-b]
- name: edge-only
  pools: [rack]
  nodeSelector: {matchLabels: {edge: "true"}}
`

var netipEqual = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})

func TestDecideBGP(t *testing.T) {
	cfg := mustConfig(t, decideBGPConfig)
	web := netip.MustParseAddr("203.0.113.201")
	web6 := netip.MustParseAddr("2001:db8:2::5")
	rack := netip.MustParseAddr("198.51.100.101")
	pfx := netip.MustParsePrefix
	svc := func(addr netip.Addr, local bool, ready ...string) speaker.ServiceInfo {
		return speaker.ServiceInfo{Key: "shop/web", Addrs: []netip.Addr{addr}, Local: local, ReadyNodes: ready}
	}
	webRoutes := map[netip.Prefix][]string{pfx("203.0.113.201/32"): {"all"}, pfx("203.0.113.0/24"): {"agg"}}
	webPrefixes := []netip.Prefix{pfx("203.0.113.0/24"), pfx("203.0.113.201/32")}
	inRacks := func(racks ...string) func(*speaker.NodeInfo) {
		return func(n *speaker.NodeInfo) {
			for _, r := range racks {
				n.Labels[r] = "true"
			}
		}
	}
	for _, tc := range []struct {
		name          string
		svcs          []speaker.ServiceInfo
		self          speaker.NodeInfo
		wantPeers     []string
		wantConflicts []config.PeerConflict
		wantRoutes    map[netip.Prefix][]string
		want          map[string]speaker.BGPService
	}{
		{name: "cluster: every node, every advertisement of the pool", svcs: []speaker.ServiceInfo{svc(web, false, "node2")}, self: node("node1"),
			wantPeers: []string{"tor-a"}, wantRoutes: webRoutes,
			want: map[string]speaker.BGPService{"shop/web": {Prefixes: webPrefixes}}},
		{name: "dual-stack, IPv6 aggregation", self: node("node1"), wantPeers: []string{"tor-a"},
			svcs:       []speaker.ServiceInfo{{Key: "shop/web", Addrs: []netip.Addr{web, web6}, ReadyNodes: []string{"node1"}}},
			wantRoutes: map[netip.Prefix][]string{pfx("203.0.113.201/32"): {"all"}, pfx("203.0.113.0/24"): {"agg"}, pfx("2001:db8:2::5/128"): {"all"}, pfx("2001:db8:2::/64"): {"agg"}},
			want: map[string]speaker.BGPService{"shop/web": {Prefixes: []netip.Prefix{
				pfx("203.0.113.0/24"), pfx("203.0.113.201/32"), pfx("2001:db8:2::/64"), pfx("2001:db8:2::5/128")}}}},
		{name: "no ready endpoint", svcs: []speaker.ServiceInfo{svc(web, false)}, self: node("node1"), wantPeers: []string{"tor-a"},
			want: map[string]speaker.BGPService{"shop/web": {Why: "no ready endpoint"}}},
		{name: "local: not from a node without a ready pod", svcs: []speaker.ServiceInfo{svc(web, true, "node2")}, self: node("node1"), wantPeers: []string{"tor-a"},
			want: map[string]speaker.BGPService{"shop/web": {Why: "no ready endpoint on node node1 (externalTrafficPolicy: Local)"}}},
		{name: "local: from the node with the pod", svcs: []speaker.ServiceInfo{svc(web, true, "node1", "node3")}, self: node("node1"),
			wantPeers: []string{"tor-a"}, wantRoutes: webRoutes,
			want: map[string]speaker.BGPService{"shop/web": {Prefixes: webPrefixes}}},
		{name: "excluded node keeps its sessions, sends nothing", svcs: []speaker.ServiceInfo{svc(web, false, "node1")},
			self: node("node1", func(n *speaker.NodeInfo) { n.Labels[speaker.LabelExclude] = "" }), wantPeers: []string{"tor-a"},
			want: map[string]speaker.BGPService{"shop/web": {Why: "node node1 is excluded from external load balancers"}}},
		{name: "network unavailable", svcs: []speaker.ServiceInfo{svc(web, false, "node1")},
			self: node("node1", func(n *speaker.NodeInfo) { n.NetworkUnavailable = true }), wantPeers: []string{"tor-a"},
			want: map[string]speaker.BGPService{"shop/web": {Why: "node node1 has NetworkUnavailable"}}},
		{name: "data path down (kube-proxy not healthy)", svcs: []speaker.ServiceInfo{svc(web, false, "node1")},
			self: node("node1", func(n *speaker.NodeInfo) { n.DataPathDown = true }), wantPeers: []string{"tor-a"},
			want: map[string]speaker.BGPService{"shop/web": {Why: "node node1 has no working data path (kube-proxy not healthy)"}}},
		{name: "advertisement to peers this node has no session with", svcs: []speaker.ServiceInfo{svc(rack, false, "node1")},
			self: node("node1"), wantPeers: []string{"tor-a"},
			want: map[string]speaker.BGPService{"shop/web": {Why: "BGP advertisement edge-only does not select node node1; " +
				"node node1 has no session to the peers of BGP advertisement rack-b"}}},
		{name: "peer and advertisement node selectors", svcs: []speaker.ServiceInfo{svc(rack, false, "node1")},
			self: node("node1", func(n *speaker.NodeInfo) { n.Labels["rack"] = "b" }), wantPeers: []string{"tor-a", "tor-b"},
			wantRoutes: map[netip.Prefix][]string{pfx("198.51.100.101/32"): {"rack-b"}},
			want:       map[string]speaker.BGPService{"shop/web": {Prefixes: []netip.Prefix{pfx("198.51.100.101/32")}}}},
		{name: "pool without BGP advertisement: no word about it", svcs: []speaker.ServiceInfo{svc(netip.MustParseAddr("198.51.100.201"), false, "node1")},
			self: node("node1"), wantPeers: []string{"tor-a"}, want: map[string]speaker.BGPService{}},
		{name: "shared address advertised once while one Service can deliver", self: node("node1"), wantPeers: []string{"tor-a"},
			svcs: []speaker.ServiceInfo{
				{Key: "shop/dns-tcp", Addrs: []netip.Addr{web}, ReadyNodes: []string{"node2"}},
				{Key: "shop/dns-udp", Addrs: []netip.Addr{web}},
			},
			wantRoutes: webRoutes,
			want:       map[string]speaker.BGPService{"shop/dns-tcp": {Prefixes: webPrefixes}, "shop/dns-udp": {Why: "no ready endpoint"}}},
		{name: "per-rack peers at one address: a node of rack 1 peers with its own", svcs: []speaker.ServiceInfo{svc(web, false, "node1")},
			self: node("node1", inRacks("rack1")), wantPeers: []string{"rack-1", "tor-a"}, wantRoutes: webRoutes,
			want: map[string]speaker.BGPService{"shop/web": {Prefixes: webPrefixes}}},
		{name: "per-rack peers at one address: a node of rack 2 peers with its own", svcs: []speaker.ServiceInfo{svc(web, false, "node1")},
			self: node("node2", inRacks("rack2")), wantPeers: []string{"rack-2", "tor-a"}, wantRoutes: webRoutes,
			want: map[string]speaker.BGPService{"shop/web": {Prefixes: webPrefixes}}},
		{name: "per-rack peers at one address: a node of both peers with the first in the document", svcs: []speaker.ServiceInfo{svc(web, false, "node1")},
			self: node("node3", inRacks("rack1", "rack2")), wantPeers: []string{"rack-2", "tor-a"}, wantRoutes: webRoutes,
			wantConflicts: []config.PeerConflict{{Address: netip.MustParseAddr("198.51.100.3"), Port: 179, Kept: "rack-2", Dropped: []string{"rack-1"}}},
			want:          map[string]speaker.BGPService{"shop/web": {Prefixes: webPrefixes}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := speaker.DecideBGP(cfg, tc.svcs, tc.self)
			var peers []string
			for _, p := range got.Peers {
				peers = append(peers, p.Name)
			}
			if diff := cmp.Diff(tc.wantPeers, peers); diff != "" {
				t.Errorf("peers (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantConflicts, got.PeerConflicts, netipEqual); diff != "" {
				t.Errorf("peer conflicts (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantRoutes, got.Routes, cmpopts.EquateEmpty(), netipEqual); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want, got.Services, cmpopts.EquateEmpty(), netipEqual); diff != "" {
				t.Errorf("services (-want +got):\n%s", diff)
			}
		})
	}
}

// Aggregated prefixes stay while any address under them is advertised and
// carry every advertisement that produced them.
func TestDecideBGPAggregates(t *testing.T) {
	cfg := mustConfig(t, decideBGPConfig)
	var svcs []speaker.ServiceInfo
	a := netip.MustParseAddr("203.0.113.200")
	for i := range 3 {
		ready := []string{"node1"}
		if i > 0 {
			ready = nil
		}
		svcs = append(svcs, speaker.ServiceInfo{Key: "ns/s" + a.String(), Addrs: []netip.Addr{a}, ReadyNodes: ready})
		a = a.Next()
	}
	got := speaker.DecideBGP(cfg, svcs, speaker.NodeInfo{Name: "node1", Labels: labels.Set{}})
	want := map[netip.Prefix][]string{
		netip.MustParsePrefix("203.0.113.200/32"): {"all"},
		netip.MustParsePrefix("203.0.113.0/24"):   {"agg"},
	}
	if diff := cmp.Diff(want, got.Routes, netipEqual); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}
}
