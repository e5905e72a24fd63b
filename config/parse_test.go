package config_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/heraldlb/herald/config"
	"k8s.io/apimachinery/pkg/labels"
)

// fullDoc uses every field of the document.
const fullDoc = `
pools:
- name: lan
  addresses: ["198.51.100.200-198.51.100.250", "2001:db8:1::100/120", "203.0.113.7"]
  autoAssign: true
  avoidBuggyIPs: false
  allocation:
    namespaces: [shop, checkout]
    namespaceSelector: {matchLabels: {team: a}}
    serviceSelector: {matchExpressions: [{key: tier, operator: In, values: [web, api]}]}
    priority: 10
- name: dmz
  addresses: ["192.0.2.0/25", "192.0.2.128 - 192.0.2.255"]
  autoAssign: false
  avoidBuggyIPs: true
l2Advertisements:
- name: lan
  pools: [lan]
  nodeSelector: {matchLabels: {node-role.kubernetes.io/edge: ""}}
  interfaces: [eth1, eth0]
- name: all
bgpPeers:
- name: tor-a
  address: 198.51.100.1
  port: 179
  asn: 64500
  myASN: 64501
  routerID: 198.51.100.11
  sourceAddress: 198.51.100.11
  holdTime: 9s
  keepaliveTime: 3s
  connectTime: 2s
  ebgpMultihop: true
  passwordSecret: {name: tor-a, key: password}
  bfdProfile: fast
  gracefulRestart: true
  nodeSelector: {matchLabels: {rack: r1}}
- name: tor-6
  address: 2001:db8::1
  asn: 4200000000
  myASN: 64501
bfdProfiles:
- {name: fast, receiveInterval: 100ms, transmitInterval: 50ms, detectMultiplier: 5}
- {name: slow}
communities:
- {name: no-export, value: "65535:65281"}
- {name: mine, value: "large:64500:1:2"}
bgpAdvertisements:
- name: default
  pools: [lan]
  peers: [tor-a]
  aggregationLength: 32
  aggregationLengthV6: 120
  localPref: 100
  communities: ["64500:100", mine, no-export, "65535:65281"]
  nodeSelector: {matchLabels: {bgp: "on"}}
- name: dmz
  pools: [dmz]
  aggregationLength: 24
`

func fullConfig(t *testing.T) *config.Config {
	return &config.Config{
		Pools: []config.Pool{
			{
				Name:          "dmz",
				Ranges:        []config.Range{rng("192.0.2.0", "192.0.2.255")},
				AvoidBuggyIPs: true,
			},
			{
				Name: "lan",
				Ranges: []config.Range{
					rng("198.51.100.200", "198.51.100.250"),
					rng("203.0.113.7", "203.0.113.7"),
					rng("2001:db8:1::100", "2001:db8:1::1ff"),
				},
				AutoAssign: true,
				Allocation: &config.Allocation{
					Namespaces:        []string{"checkout", "shop"},
					NamespaceSelector: sel(t, "team=a"),
					ServiceSelector:   sel(t, "tier in (api,web)"),
					Priority:          10,
				},
			},
		},
		L2Advertisements: []config.L2Advertisement{
			{Name: "all", NodeSelector: labels.Everything()},
			{
				Name:         "lan",
				Pools:        []string{"lan"},
				NodeSelector: sel(t, "node-role.kubernetes.io/edge="),
				Interfaces:   []string{"eth0", "eth1"},
			},
		},
		BGPPeers: []config.BGPPeer{
			{
				Name:          "tor-6",
				Address:       addr("2001:db8::1"),
				Port:          179,
				ASN:           4200000000,
				MyASN:         64501,
				HoldTime:      90 * time.Second,
				KeepaliveTime: 30 * time.Second,
				ConnectTime:   5 * time.Second,
				NodeSelector:  labels.Everything(),
			},
			{
				Name:            "tor-a",
				Address:         addr("198.51.100.1"),
				Port:            179,
				ASN:             64500,
				MyASN:           64501,
				RouterID:        addr("198.51.100.11"),
				SourceAddress:   addr("198.51.100.11"),
				HoldTime:        9 * time.Second,
				KeepaliveTime:   3 * time.Second,
				ConnectTime:     2 * time.Second,
				EBGPMultihop:    true,
				PasswordSecret:  &config.SecretRef{Name: "tor-a", Key: "password"},
				BFDProfile:      "fast",
				GracefulRestart: true,
				NodeSelector:    sel(t, "rack=r1"),
			},
		},
		BFDProfiles: []config.BFDProfile{
			{Name: "fast", ReceiveInterval: 100 * time.Millisecond, TransmitInterval: 50 * time.Millisecond, DetectMultiplier: 5},
			{Name: "slow", ReceiveInterval: 300 * time.Millisecond, TransmitInterval: 300 * time.Millisecond, DetectMultiplier: 3},
		},
		Communities: []config.Community{
			{Name: "mine", Value: config.CommunityValue{Large: true, Parts: [3]uint32{64500, 1, 2}}},
			{Name: "no-export", Value: config.CommunityValue{Standard: 65535<<16 | 65281}},
		},
		BGPAdvertisements: []config.BGPAdvertisement{
			{
				Name:                "default",
				Pools:               []string{"lan"},
				Peers:               []string{"tor-a"},
				AggregationLength:   32,
				AggregationLengthV6: 120,
				LocalPref:           100,
				Communities: []config.CommunityValue{
					{Standard: 64500<<16 | 100},
					{Standard: 65535<<16 | 65281},
					{Large: true, Parts: [3]uint32{64500, 1, 2}},
				},
				NodeSelector: sel(t, "bgp=on"),
			},
			{
				Name:                "dmz",
				Pools:               []string{"dmz"},
				AggregationLength:   24,
				AggregationLengthV6: 128,
				NodeSelector:        labels.Everything(),
			},
		},
		Warnings: []string{
			"bgpAdvertisements[0].localPref: 100 is sent to no peer: LOCAL_PREF goes only to iBGP peers (asn equal to myASN), and every peer of this advertisement is eBGP",
		},
	}
}

func TestParseFullDocument(t *testing.T) {
	got, err := config.Parse([]byte(fullDoc))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if diff := cmp.Diff(fullConfig(t), got, cmpOpts); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
}

func TestParseDefaults(t *testing.T) {
	tests := []struct {
		name string
		doc  []byte
		want *config.Config
	}{
		{
			name: "no pools at all",
			doc:  []byte("pools: []\n"),
			want: &config.Config{},
		},
		{
			name: "null sections",
			doc:  []byte("pools:\nbgpPeers: ~\n"),
			want: &config.Config{},
		},
		{
			name: "pool",
			doc:  pools(pool("a", "10.0.0.0/24")),
			want: &config.Config{Pools: []config.Pool{
				{Name: "a", Ranges: []config.Range{rng("10.0.0.0", "10.0.0.255")}, AutoAssign: true},
			}},
		},
		{
			name: "empty allocation selects everything",
			doc:  pools(with(pool("a", "10.0.0.1"), "allocation", obj{})),
			want: &config.Config{Pools: []config.Pool{{
				Name: "a", Ranges: []config.Range{rng("10.0.0.1", "10.0.0.1")}, AutoAssign: true,
				Allocation: &config.Allocation{NamespaceSelector: labels.Everything(), ServiceSelector: labels.Everything()},
			}}},
		},
		{
			name: "peer",
			doc:  peers(peer("p", "192.0.2.1")),
			want: &config.Config{BGPPeers: []config.BGPPeer{{
				Name: "p", Address: addr("192.0.2.1"), Port: 179, ASN: 64500, MyASN: 64501,
				HoldTime: 90 * time.Second, KeepaliveTime: 30 * time.Second, ConnectTime: 5 * time.Second,
				NodeSelector: labels.Everything(),
			}}},
		},
		{
			name: "keepalive follows holdTime",
			doc:  peers(with(peer("p", "192.0.2.1"), "holdTime", "12s")),
			want: &config.Config{BGPPeers: []config.BGPPeer{{
				Name: "p", Address: addr("192.0.2.1"), Port: 179, ASN: 64500, MyASN: 64501,
				HoldTime: 12 * time.Second, KeepaliveTime: 4 * time.Second, ConnectTime: 5 * time.Second,
				NodeSelector: labels.Everything(),
			}}},
		},
		{
			name: "keepalive rounds down to whole seconds",
			doc:  peers(with(peer("p", "192.0.2.1"), "holdTime", "10s")),
			want: &config.Config{BGPPeers: []config.BGPPeer{{
				Name: "p", Address: addr("192.0.2.1"), Port: 179, ASN: 64500, MyASN: 64501,
				HoldTime: 10 * time.Second, KeepaliveTime: 3 * time.Second, ConnectTime: 5 * time.Second,
				NodeSelector: labels.Everything(),
			}}},
		},
		{
			name: "keepalive at least 1s",
			doc:  peers(with(peer("p", "192.0.2.1"), "holdTime", "4s")),
			want: &config.Config{BGPPeers: []config.BGPPeer{{
				Name: "p", Address: addr("192.0.2.1"), Port: 179, ASN: 64500, MyASN: 64501,
				HoldTime: 4 * time.Second, KeepaliveTime: 1 * time.Second, ConnectTime: 5 * time.Second,
				NodeSelector: labels.Everything(),
			}}},
		},
		{
			name: "holdTime 0 means no keepalives",
			doc:  peers(with(peer("p", "192.0.2.1"), "holdTime", 0)),
			want: &config.Config{BGPPeers: []config.BGPPeer{{
				Name: "p", Address: addr("192.0.2.1"), Port: 179, ASN: 64500, MyASN: 64501,
				ConnectTime: 5 * time.Second, NodeSelector: labels.Everything(),
			}}},
		},
		{
			name: "bfd profile",
			doc:  doc("bfdProfiles", list(obj{"name": "b"})),
			want: &config.Config{BFDProfiles: []config.BFDProfile{
				{Name: "b", ReceiveInterval: 300 * time.Millisecond, TransmitInterval: 300 * time.Millisecond, DetectMultiplier: 3},
			}},
		},
		{
			name: "bgp advertisement",
			doc:  doc("bgpAdvertisements", list(bgpAdv("a"))),
			want: &config.Config{BGPAdvertisements: []config.BGPAdvertisement{
				{Name: "a", AggregationLength: 32, AggregationLengthV6: 128, NodeSelector: labels.Everything()},
			}},
		},
		{
			name: "l2 advertisement",
			doc:  doc("l2Advertisements", list(obj{"name": "a"})),
			want: &config.Config{L2Advertisements: []config.L2Advertisement{
				{Name: "a", NodeSelector: labels.Everything()},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := config.Parse(tt.doc)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpOpts); diff != "" {
				t.Errorf("Parse (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseAccepts holds documents at the edge of a rule that must still parse.
func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name string
		doc  []byte
		get  func(*config.Config) any
		want any
	}{
		{
			name: "overlapping and adjacent ranges of one pool are merged",
			doc:  pools(pool("a", "10.0.0.0/25", "10.0.0.100-10.0.0.200", "10.0.0.201", "10.0.0.202-10.0.0.255", "10.0.0.7")),
			get:  func(c *config.Config) any { return c.Pools[0].Ranges },
			want: []config.Range{rng("10.0.0.0", "10.0.0.255")},
		},
		{
			name: "ranges sorted, IPv4 first",
			doc:  pools(pool("a", "2001:db8::1", "10.0.0.9", "10.0.0.1")),
			get:  func(c *config.Config) any { return c.Pools[0].Ranges },
			want: []config.Range{rng("10.0.0.1", "10.0.0.1"), rng("10.0.0.9", "10.0.0.9"), rng("2001:db8::1", "2001:db8::1")},
		},
		{
			name: "a /8 and a /32 are not too wide",
			doc:  pools(pool("a", "10.0.0.0/8", "2001:db8::/32")),
			get:  func(c *config.Config) any { return len(c.Pools[0].Ranges) },
			want: 2,
		},
		{
			name: "pools touching but not overlapping",
			doc:  pools(pool("a", "10.0.0.0/25"), pool("b", "10.0.0.128/25")),
			get:  func(c *config.Config) any { return len(c.Pools) },
			want: 2,
		},
		{
			name: "same peer address on another port",
			doc:  peers(peer("a", "192.0.2.1"), with(peer("b", "192.0.2.1"), "port", 1179)),
			get:  func(c *config.Config) any { return c.BGPPeers[1].Port },
			want: uint16(1179),
		},
		{
			name: "peers at one address, one per rack, ranked in document order",
			doc: peers(with(peer("rack-b", "192.0.2.1"), "nodeSelector", selector("matchLabels", obj{"rack": "b"})),
				with(peer("rack-a", "192.0.2.1"), "nodeSelector", selector("matchLabels", obj{"rack": "a"})), peer("all", "192.0.2.1")),
			get: func(c *config.Config) any {
				return map[string]int{c.BGPPeers[0].Name: c.BGPPeers[0].Rank, c.BGPPeers[1].Name: c.BGPPeers[1].Rank, c.BGPPeers[2].Name: c.BGPPeers[2].Rank}
			},
			want: map[string]int{"rack-b": 0, "rack-a": 1, "all": 2},
		},
		{
			name: "sections may share names",
			doc:  doc("pools", list(pool("x", "10.0.0.1")), "l2Advertisements", list(obj{"name": "x"}), "bgpAdvertisements", list(bgpAdv("x"))),
			get:  func(c *config.Config) any { return c.L2Advertisements[0].Name + c.BGPAdvertisements[0].Name },
			want: "xx",
		},
		{
			name: "aggregation over merged ranges of all pools",
			doc: doc("pools", list(pool("a", "10.0.0.0/25", "10.0.0.128-10.0.0.255"), pool("b", "10.0.1.0/24")),
				"bgpAdvertisements", list(with(bgpAdv("agg"), "aggregationLength", 24))),
			get:  func(c *config.Config) any { return c.BGPAdvertisements[0].AggregationLength },
			want: 24,
		},
		{
			name: "YAML 1.2 scalars: no is a string",
			doc:  []byte("l2Advertisements:\n- name: \"n\"\n  interfaces: [no, on]\n"),
			get:  func(c *config.Config) any { return c.L2Advertisements[0].Interfaces },
			want: []string{"no", "on"},
		},
		{
			name: "aliases",
			doc:  []byte("l2Advertisements:\n- name: a\n  nodeSelector: &s {matchLabels: {x: y}}\n- name: b\n  nodeSelector: *s\n"),
			get:  func(c *config.Config) any { return c.L2Advertisements[1].NodeSelector.String() },
			want: "x=y",
		},
		{
			name: "largest ASN and port",
			doc:  peers(with(peer("p", "192.0.2.1"), "asn", 4294967294, "port", 65535)),
			get:  func(c *config.Config) any { return [2]uint32{c.BGPPeers[0].ASN, uint32(c.BGPPeers[0].Port)} },
			want: [2]uint32{4294967294, 65535},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse(tt.doc)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, tt.get(cfg), cmpOpts); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseMultipleProblems(t *testing.T) {
	d := doc(
		"pools", list(pool("a", "10.0.0.5-10.0.0.1"), pool("a", "10.0.1.0/24"), with(pool("b", "10.0.1.128/25"), "autoAssign", "yes")),
		"bgpPeers", list(with(peer("p", "192.0.2.1"), "asn", 0, "holdTime", "1s", "color", "blue")),
		"bgpAdvertisements", list(with(bgpAdv("x", "missing"), "communities", []string{"nope"})),
	)
	want := []string{
		`bgpPeers[0].color: unknown field`,
		`pools[2].autoAssign: want true or false, got "yes"`,
		`pools[0].addresses[0]: "10.0.0.5-10.0.0.1": range start after end`,
		`pools[1].name: "a" already used by pools[0]`,
		`pools[2].addresses[0]: "10.0.1.128/25" overlaps "10.0.1.0/24" of pool "a" (pools[1].addresses[0]): an address belongs to one pool only`,
		`bgpPeers[0].asn: 0: AS 0 is reserved (RFC 7607); use your network's AS number`,
		`bgpPeers[0].holdTime: "1s": must be 0 or 3s-65535s`,
		`bgpAdvertisements[0].pools[0]: "missing" is not defined in pools`,
		`bgpAdvertisements[0].communities[0]: "nope" is not defined in communities, nor of the form a:b or large:a:b:c`,
	}
	_, err := config.Parse(d)
	if diff := cmp.Diff(want, lines(err)); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

func TestParseTooManyProblems(t *testing.T) {
	var ps []obj
	for range 300 {
		ps = append(ps, pool("Bad"))
	}
	_, err := config.Parse(pools(ps...))
	got := lines(err)
	if len(got) != 101 || !strings.HasPrefix(got[100], "too many problems") {
		t.Errorf("got %d problems ending %q; want 100 and a note", len(got), got[len(got)-1])
	}
}

// TestParseReportsOnce checks that a value of the wrong kind is not
// reported a second time as missing.
func TestParseReportsOnce(t *testing.T) {
	tests := []struct {
		name string
		doc  []byte
		want []string
	}{
		{
			name: "integer",
			doc:  peers(with(peer("p", "192.0.2.1"), "asn", "abc")),
			want: []string{`bgpPeers[0].asn: want an integer, got "abc"`},
		},
		{
			name: "list",
			doc:  pools(obj{"name": "a", "addresses": obj{"from": "10.0.0.1"}}),
			want: []string{`pools[0].addresses: want a list, got a mapping`},
		},
		{
			name: "whole element",
			doc:  doc("bgpPeers", []any{"tor-a"}),
			want: []string{`bgpPeers[0]: want a mapping, got "tor-a"`},
		},
		{
			name: "long value",
			doc:  pools(with(pool("a", "10.0.0.1"), "autoAssign", strings.Repeat("é", 50))),
			want: []string{`pools[0].autoAssign: want true or false, got "` + strings.Repeat("é", 40) + `…"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse(tt.doc)
			if diff := cmp.Diff(tt.want, lines(err)); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseWarnings checks what is valid but reported, and that a
// document without such a thing has no warning.
func TestParseWarnings(t *testing.T) {
	ebgp := peer("ebgp", "192.0.2.1") // asn 64500, myASN 64501
	ibgp := with(peer("ibgp", "192.0.2.2"), "asn", 64501)
	lan := list(pool("lan", "10.0.0.0/24"))
	const want = "bgpAdvertisements[0].localPref: 100 is sent to no peer: LOCAL_PREF goes only to iBGP peers (asn equal to myASN), and every peer of this advertisement is eBGP"
	tests := []struct {
		name string
		doc  []byte
		want []string
	}{
		{"localPref to listed eBGP peers", doc("pools", lan, "bgpPeers", list(ebgp, ibgp), "bgpAdvertisements", list(with(bgpAdv("a"), "peers", []string{"ebgp"}, "localPref", 100))), []string{want}},
		{"localPref to all peers, all eBGP", doc("pools", lan, "bgpPeers", list(ebgp), "bgpAdvertisements", list(with(bgpAdv("a"), "localPref", 100))), []string{want}},
		{"localPref to all peers, one iBGP", doc("pools", lan, "bgpPeers", list(ebgp, ibgp), "bgpAdvertisements", list(with(bgpAdv("a"), "localPref", 100))), nil},
		{"localPref to a listed iBGP peer", doc("pools", lan, "bgpPeers", list(ebgp, ibgp), "bgpAdvertisements", list(with(bgpAdv("a"), "peers", []string{"ebgp", "ibgp"}, "localPref", 100))), nil},
		{"localPref without peers", doc("pools", lan, "bgpAdvertisements", list(with(bgpAdv("a"), "localPref", 100))), nil},
		{"localPref 0", doc("pools", lan, "bgpPeers", list(ebgp), "bgpAdvertisements", list(with(bgpAdv("a"), "localPref", 0))), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse(tt.doc)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, cfg.Warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseTooManyWarnings(t *testing.T) {
	var ads []obj
	for i := range 150 {
		ads = append(ads, with(bgpAdv(fmt.Sprint("a", i)), "localPref", 100))
	}
	cfg, err := config.Parse(doc("bgpPeers", list(peer("ebgp", "192.0.2.1")), "bgpAdvertisements", ads))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(cfg.Warnings); n != 101 || !strings.HasPrefix(cfg.Warnings[100], "too many warnings") {
		t.Errorf("got %d warnings ending %q; want 100 and a note", n, cfg.Warnings[n-1])
	}
}
