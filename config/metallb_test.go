package config_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/heraldlb/herald/config"
	"k8s.io/apimachinery/pkg/labels"
)

// metalLBDoc uses every field of MetalLB's legacy format.
const metalLBDoc = `
peers:
- peer-address: 10.0.0.1
  peer-asn: 64501
  my-asn: 64500
  peer-port: 1179
  hold-time: 120s
  keepalive-time: 30s
  router-id: 10.0.0.100
  source-address: 10.0.0.2
  password: "yourPassword"
  bfd-profile: fast
  ebgp-multihop: true
  node-selectors:
  - match-labels:
      rack: frontend
    match-expressions:
    - key: kubernetes.io/arch
      operator: In
      values: [amd64, arm64]
  - match-labels:
      rack: backend
- peer-address: "2001:db8::"
  peer-asn: 64501
  my-asn: 64500
bgp-communities:
  no-advertise: 65535:65282
bfd-profiles:
- name: fast
  receive-interval: 100
  transmit-interval: 150
  detect-multiplier: 4
  echo-interval: 50
  echo-mode: true
  passive-mode: true
  minimum-ttl: 254
- name: plain
address-pools:
- name: web
  protocol: layer2
  addresses:
  - 192.168.10.0/24
  - 192.168.11.10-192.168.11.20
  auto-assign: false
- name: public
  protocol: bgp
  addresses: [198.51.100.10/24]
  avoid-buggy-ips: true
  bgp-advertisements:
  - aggregation-length: 32
    localpref: 100
    communities: [no-advertise, "64500:1"]
  - aggregation-length: 24
    aggregation-length-v6: 64
    communities: ["large:64500:2:3"]
- name: v6
  protocol: bgp
  addresses: ["2001:db8:5::/64"]
`

func TestParseMetalLBFullDocument(t *testing.T) {
	want := &config.Config{
		Pools: []config.Pool{
			{Name: "public", Ranges: []config.Range{rng("198.51.100.0", "198.51.100.255")}, AutoAssign: true, AvoidBuggyIPs: true},
			{Name: "v6", Ranges: []config.Range{rng("2001:db8:5::", "2001:db8:5::ffff:ffff:ffff:ffff")}, AutoAssign: true},
			{Name: "web", Ranges: []config.Range{rng("192.168.10.0", "192.168.10.255"), rng("192.168.11.10", "192.168.11.20")}},
		},
		L2Advertisements: []config.L2Advertisement{
			{Name: "web", Pools: []string{"web"}, NodeSelector: labels.Everything()},
		},
		BGPPeers: []config.BGPPeer{
			{
				Name:          "peer-10-0-0-1-p1179",
				Address:       addr("10.0.0.1"),
				Port:          1179,
				ASN:           64501,
				MyASN:         64500,
				RouterID:      addr("10.0.0.100"),
				SourceAddress: addr("10.0.0.2"),
				HoldTime:      120 * time.Second,
				KeepaliveTime: 30 * time.Second,
				ConnectTime:   5 * time.Second,
				EBGPMultihop:  true,
				BFDProfile:    "fast",
				NodeSelector:  sel(t, "kubernetes.io/arch in (amd64,arm64),rack=frontend"),
			},
			{
				Name:          "peer-2001-db8--0",
				Address:       addr("2001:db8::"),
				Port:          179,
				ASN:           64501,
				MyASN:         64500,
				HoldTime:      90 * time.Second,
				KeepaliveTime: 30 * time.Second,
				ConnectTime:   5 * time.Second,
				NodeSelector:  labels.Everything(),
			},
		},
		BFDProfiles: []config.BFDProfile{
			{Name: "fast", ReceiveInterval: 100 * time.Millisecond, TransmitInterval: 150 * time.Millisecond, DetectMultiplier: 4},
			{Name: "plain", ReceiveInterval: 300 * time.Millisecond, TransmitInterval: 300 * time.Millisecond, DetectMultiplier: 3},
		},
		Communities: []config.Community{
			{Name: "no-advertise", Value: config.CommunityValue{Standard: 65535<<16 | 65282}},
		},
		BGPAdvertisements: []config.BGPAdvertisement{
			{
				Name: "public-0", Pools: []string{"public"}, AggregationLength: 32, AggregationLengthV6: 128, LocalPref: 100,
				Communities:  []config.CommunityValue{{Standard: 64500<<16 | 1}, {Standard: 65535<<16 | 65282}},
				NodeSelector: labels.Everything(),
			},
			{
				Name: "public-1", Pools: []string{"public"}, AggregationLength: 24, AggregationLengthV6: 64,
				Communities:  []config.CommunityValue{{Large: true, Parts: [3]uint32{64500, 2, 3}}},
				NodeSelector: labels.Everything(),
			},
			{
				Name: "v6-0", Pools: []string{"v6"}, AggregationLength: 32, AggregationLengthV6: 128,
				NodeSelector: labels.Everything(),
			},
		},
	}
	wantWarnings := []string{
		`peers[0].password: not carried over: Herald takes BGP passwords only from a Secret; put it in a Secret in herald-system and set passwordSecret on bgpPeer "peer-10-0-0-1-p1179"`,
		`peers[0].node-selectors: only the first of 2 selectors is kept (Herald takes one per peer), so nodes that only the others select no longer peer; write one selector that says both`,
		`bfd-profiles[0].echo-mode: ignored: Herald's BFD sends no echo packets; remove it`,
		`bfd-profiles[0].echo-interval: ignored: Herald's BFD sends no echo packets; remove it`,
		`bfd-profiles[0].passive-mode: ignored: Herald's BFD sessions are always active; remove it`,
		`bfd-profiles[0].minimum-ttl: ignored: Herald does not check the TTL of BFD packets; remove it`,
		`address-pools[1].addresses[0]: "198.51.100.10/24" is taken as its network 198.51.100.0/24; write it so`,
		"address-pools[1].bgp-advertisements[0].localpref: 100 is sent to no peer: LOCAL_PREF goes only to iBGP peers (asn equal to myASN), and every peer of this advertisement is eBGP",
	}
	want.Warnings = wantWarnings
	got, warnings, err := config.ParseMetalLB([]byte(metalLBDoc))
	if err != nil {
		t.Fatalf("ParseMetalLB: %v", err)
	}
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Errorf("ParseMetalLB (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantWarnings, warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}

func TestParseMetalLB(t *testing.T) {
	tests := []struct {
		name         string
		doc          string
		get          func(*config.Config) any
		want         any
		wantWarnings []string
	}{
		{
			name: "layer2 pool gets an L2 advertisement of its name",
			doc:  "address-pools:\n- {name: lan, protocol: layer2, addresses: [192.0.2.0/28]}\n",
			get:  func(c *config.Config) any { return [2]any{c.L2Advertisements, len(c.BGPAdvertisements)} },
			want: [2]any{[]config.L2Advertisement{{Name: "lan", Pools: []string{"lan"}, NodeSelector: labels.Everything()}}, 0},
		},
		{
			name: "bgp pool without advertisements gets a default one",
			doc:  "address-pools:\n- {name: lan, protocol: bgp, addresses: [192.0.2.0/28]}\n",
			get:  func(c *config.Config) any { return [2]any{c.BGPAdvertisements, len(c.L2Advertisements)} },
			want: [2]any{[]config.BGPAdvertisement{{Name: "lan-0", Pools: []string{"lan"}, AggregationLength: 32, AggregationLengthV6: 128, NodeSelector: labels.Everything()}}, 0},
		},
		{
			name:         "layer2 pool with bgp-advertisements",
			doc:          "address-pools:\n- {name: lan, protocol: layer2, addresses: [192.0.2.1], bgp-advertisements: [{localpref: 5}]}\n",
			get:          func(c *config.Config) any { return len(c.BGPAdvertisements) },
			want:         0,
			wantWarnings: []string{"address-pools[0].bgp-advertisements: ignored: the pool's protocol is layer2; remove them"},
		},
		{
			name: "peer names",
			doc: "peers:\n- {peer-address: 192.0.2.1, peer-asn: 1, my-asn: 2}\n- {peer-address: 192.0.2.1, peer-asn: 1, my-asn: 2, peer-port: 1179}\n" +
				"- {peer-address: \"::1\", peer-asn: 1, my-asn: 2}\n- {peer-address: \"2001:DB8:0::7\", peer-asn: 1, my-asn: 2, peer-port: 179}\n",
			get: func(c *config.Config) any {
				var names []string
				for _, p := range c.BGPPeers {
					names = append(names, p.Name)
				}
				return names
			},
			want: []string{"peer---1", "peer-192-0-2-1", "peer-192-0-2-1-p1179", "peer-2001-db8--7"},
		},
		{
			name: "echo and passive off need no warning",
			doc:  "bfd-profiles:\n- {name: b, echo-mode: false, passive-mode: false}\n",
			get:  func(c *config.Config) any { return c.BFDProfiles[0].DetectMultiplier },
			want: uint32(3),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, warnings, err := config.ParseMetalLB([]byte(tt.doc))
			if err != nil {
				t.Fatalf("ParseMetalLB: %v", err)
			}
			if diff := cmp.Diff(tt.want, tt.get(cfg), cmpOpts); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantWarnings, warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseMetalLBRejects checks that problems are named in MetalLB's words.
func TestParseMetalLBRejects(t *testing.T) {
	const peer = "{peer-address: 192.0.2.1, peer-asn: 64501, my-asn: 64500"
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{"unknown field", "peers:\n- " + peer + ", peer-adress: 1}\n", "peers[0].peer-adress: unknown field"},
		{"herald section", "pools: []\n", "pools: unknown field"},
		{"empty", "", "document: empty; Herald keeps the last valid configuration"},
		{"only a comment", "# migrated later\n", "document: empty"},
		{"pool holds a peer", "peers:\n- " + peer + "}\naddress-pools:\n- {name: a, protocol: bgp, addresses: [192.0.2.0/24]}\n",
			"address-pools[0].addresses[0]: \"192.0.2.0/24\" holds peers[0].peer-address (192.0.2.1)"},
		{"reserved my-asn", "peers:\n- {peer-address: 192.0.2.1, peer-asn: 1, my-asn: 23456}\n", "peers[0].my-asn: 23456: AS 23456 is AS_TRANS"},
		{"protocol missing", "address-pools:\n- {name: a, addresses: [192.0.2.1]}\n", "address-pools[0].protocol: required: layer2 or bgp"},
		{"protocol unknown", "address-pools:\n- {name: a, protocol: arp, addresses: [192.0.2.1]}\n", `address-pools[0].protocol: "arp": want layer2 or bgp`},
		{"pool name", "address-pools:\n- {name: A, protocol: layer2, addresses: [192.0.2.1]}\n", `address-pools[0].name: "A": not a DNS label`},
		{"pool name twice", "address-pools:\n- {name: a, protocol: layer2, addresses: [192.0.2.1]}\n- {name: a, protocol: layer2, addresses: [192.0.2.2]}\n", `address-pools[1].name: "a" already used by address-pools[0]`},
		{"address", "address-pools:\n- {name: a, protocol: layer2, addresses: [192.0.2.9-192.0.2.1]}\n", `address-pools[0].addresses[0]: "192.0.2.9-192.0.2.1": range start after end`},
		{"overlap", "address-pools:\n- {name: a, protocol: layer2, addresses: [192.0.2.0/24]}\n- {name: b, protocol: bgp, addresses: [192.0.2.9]}\n", `address-pools[1].addresses[0]: "192.0.2.9" overlaps "192.0.2.0/24" of pool "a" (address-pools[0].addresses[0])`},
		{"auto-assign", "address-pools:\n- {name: a, protocol: layer2, addresses: [192.0.2.1], auto-assign: maybe}\n", `address-pools[0].auto-assign: want true or false, got "maybe"`},
		{"peer-asn", "peers:\n- {peer-address: 192.0.2.1, peer-asn: 0, my-asn: 64500}\n", "peers[0].peer-asn: 0: AS 0 is reserved (RFC 7607)"},
		{"my-asn missing", "peers:\n- {peer-address: 192.0.2.1, peer-asn: 1}\n", "peers[0].my-asn: required"},
		{"peer-address", "peers:\n- {peer-address: router, peer-asn: 1, my-asn: 2}\n", `peers[0].peer-address: "router": hostnames are not supported`},
		{"peer twice", "peers:\n- " + peer + "}\n- " + peer + "}\n", `peers[1]: "peer-192-0-2-1" already used by peers[0]`},
		{"peer-port", "peers:\n- " + peer + ", peer-port: 0}\n", "peers[0].peer-port: 0: must be 1-65535"},
		{"hold-time in seconds", "peers:\n- " + peer + ", hold-time: 120}\n", `peers[0].hold-time: "120": not a duration`},
		{"keepalive-time", "peers:\n- " + peer + ", hold-time: 9s, keepalive-time: 10s}\n", `peers[0].keepalive-time: "10s": must be more than 0 and less than holdTime (9s)`},
		{"router-id", "peers:\n- " + peer + ", router-id: \"2001:db8::1\"}\n", "peers[0].router-id: 2001:db8::1: must be a non-zero IPv4 address"},
		{"source-address", "peers:\n- " + peer + ", source-address: x}\n", `peers[0].source-address: "x": hostnames are not supported`},
		{"bfd-profile", "peers:\n- " + peer + ", bfd-profile: nope}\n", `peers[0].bfd-profile: "nope" is not defined in bfdProfiles`},
		{"node selector", "peers:\n- " + peer + ", node-selectors: [{match-labels: {\"a b\": c}}]}\n", `peers[0].node-selectors[0].match-labels["a b"]: not a label key`},
		{"node selector expression", "peers:\n- " + peer + ", node-selectors: [{match-expressions: [{key: k, operator: Near}]}]}\n", `peers[0].node-selectors[0].match-expressions[0].operator: "Near": not an operator`},
		{"community value", "bgp-communities:\n  mine: \"1:2:3\"\n", `bgp-communities.mine: "1:2:3": a community is a:b or large:a:b:c`},
		{"community name", "bgp-communities:\n  my_community: \"1:2\"\n", `bgp-communities.my_community: "my_community": not a DNS label`},
		{"bfd interval", "bfd-profiles:\n- {name: b, receive-interval: 5}\n", `bfd-profiles[0].receive-interval: "5ms": must be 10ms-60s`},
		{"bfd multiplier", "bfd-profiles:\n- {name: b, detect-multiplier: 1}\n", "bfd-profiles[0].detect-multiplier: 1: must be 2-255"},
		{"aggregation-length", "address-pools:\n- {name: a, protocol: bgp, addresses: [192.0.2.0/26], bgp-advertisements: [{aggregation-length: 24}]}\n",
			`address-pools[0].bgp-advertisements[0].aggregation-length: 24 does not fit pool "a"`},
		{"aggregation-length-v6", "address-pools:\n- {name: a, protocol: bgp, addresses: [\"2001:db8::/64\"], bgp-advertisements: [{aggregation-length-v6: 129}]}\n",
			"address-pools[0].bgp-advertisements[0].aggregation-length-v6: 129: must be 0-128"},
		{"localpref", "address-pools:\n- {name: a, protocol: bgp, addresses: [192.0.2.1], bgp-advertisements: [{localpref: -1}]}\n",
			"address-pools[0].bgp-advertisements[0].localpref: -1: must be 0-4294967295"},
		{"advertisement community", "address-pools:\n- {name: a, protocol: bgp, addresses: [192.0.2.1], bgp-advertisements: [{communities: [no-export]}]}\n",
			`address-pools[0].bgp-advertisements[0].communities[0]: "no-export" is not defined in communities`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := config.ParseMetalLB([]byte(tt.doc))
			if cfg != nil {
				t.Errorf("ParseMetalLB returned a configuration with its error")
			}
			wantProblem(t, err, tt.want)
		})
	}
}

func TestParseMetalLBWarningsWithErrors(t *testing.T) {
	doc := "peers:\n- {peer-address: 192.0.2.1, peer-asn: 0, my-asn: 1, password: secret}\n"
	_, warnings, err := config.ParseMetalLB([]byte(doc))
	if err == nil {
		t.Fatal("no error")
	}
	if len(warnings) != 1 {
		t.Errorf("warnings = %q; want the password warning", warnings)
	}
}
