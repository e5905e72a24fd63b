package lab

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Output of BIRD 2.0.12 as the lab runs it (timeformat iso long ms).
const birdProtocolsOutput = `Name       Proto      Table      State  Since         Info
device1    Device     ---        up     2026-12-02 04:01:56.429  
node1      BGP        ---        up     2026-12-02 04:02:00.584  Established   
  BGP state:          Established
    Neighbor address: 198.51.100.11
    Neighbor AS:      64501
    Local AS:         64510
    Neighbor ID:      198.51.100.11
    Local capabilities
      Multiprotocol
        AF announced: ipv4 ipv6
      Route refresh
      4-octet AS numbers
    Neighbor capabilities
      Multiprotocol
        AF announced: ipv4 ipv6
      Route refresh
      Graceful restart
        Restart time: 120
        AF supported: ipv4 ipv6
        AF preserved:
      4-octet AS numbers
    Session:          external AS4
    Source address:   198.51.100.4
    Hold timer:       5.794/9
    Keepalive timer:  0.671/3
  Channel ipv4
    State:          UP
    Table:          master4
    Preference:     100
    Input filter:   ACCEPT
    Output filter:  REJECT
    Routes:         1 imported, 0 exported, 1 preferred
  Channel ipv6
    State:          UP
    Table:          master6
    Routes:         2 imported, 0 exported, 1 preferred

node2      BGP        ---        start  2026-12-02 04:02:09.762  Active        Error: BFD session down
  BGP state:          Active
    Neighbor address: 198.51.100.12
    Neighbor AS:      64501
    Local AS:         64510
    Neighbor graceful restart active
    Connect delay:    3.218/5
    Restart timer:    118.956/-
    Last error:       Error: BFD session down
  Channel ipv4
    State:          START
    Table:          master4

`

func TestParseBIRDProtocols(t *testing.T) {
	want := map[netip.Addr]BIRDProtocol{
		netip.MustParseAddr("198.51.100.11"): {
			Name: "node1", Neighbor: netip.MustParseAddr("198.51.100.11"), State: "Established", Info: "Established",
			NeighborGR: true, Imported: map[string]int{"ipv4": 1, "ipv6": 2},
		},
		netip.MustParseAddr("198.51.100.12"): {
			Name: "node2", Neighbor: netip.MustParseAddr("198.51.100.12"), State: "Active", Info: "Active Error: BFD session down",
			LastError: "Error: BFD session down", Restarting: true, Imported: map[string]int{},
		},
	}
	if diff := cmp.Diff(want, parseBIRDProtocols(birdProtocolsOutput), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("parseBIRDProtocols (-want +got):\n%s", diff)
	}
}

func TestParseBIRDRoutes(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      []BIRDRoute
	}{
		{"none", "Network not found\n", nil},
		{"ecmp", `Table master4:
198.19.0.40/32       unicast [node1 2026-12-02 04:02:03.133] * (100) [AS64501i]
	via 198.51.100.11 on eth0
	Type: BGP univ
	BGP.origin: IGP
	BGP.as_path: 64501
	BGP.next_hop: 198.51.100.11
	BGP.local_pref: 100
	BGP.community: (64500,100) (65535,65281)
	BGP.large_community: (64500, 1, 2)
                     unicast [node2 2026-12-02 04:02:03.140] (100) [AS64501i]
	via 198.51.100.12 on eth0
	Type: BGP univ
	BGP.as_path: 
	BGP.local_pref: 150
`, []BIRDRoute{
			{Protocol: "node1", NextHop: netip.MustParseAddr("198.51.100.11"), Primary: true, ASPath: "64501", LocalPref: 100,
				Communities: []string{"64500:100", "65535:65281"}, LargeCommunities: []string{"64500:1:2"}},
			{Protocol: "node2", NextHop: netip.MustParseAddr("198.51.100.12"), LocalPref: 150},
		}},
		{"ipv6", `Table master6:
2001:db8:100::40/128 unicast [node1 2026-12-02 04:02:03.133 from 198.51.100.11] * (100) [AS64501i]
	via 2001:db8:1::11 on eth0
	BGP.next_hop: 2001:db8:1::11 fe80::e868:bfff:fe6a:61f3
`, []BIRDRoute{{Protocol: "node1", NextHop: netip.MustParseAddr("2001:db8:1::11"), Primary: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, parseBIRDRoutes(tc.out), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("parseBIRDRoutes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseKernelNextHops(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      []string
	}{
		{"none", "[]\n", nil},
		{"empty", "", nil},
		{"one", `[{"dst":"198.19.0.40","gateway":"198.51.100.11","dev":"eth0","protocol":"bird","metric":32,"flags":[]}]`, []string{"198.51.100.11"}},
		{"multipath", `[{"dst":"198.19.0.40","protocol":"bird","metric":32,"flags":[],"nexthops":[{"gateway":"198.51.100.13","dev":"eth0","weight":1,"flags":[]},{"gateway":"198.51.100.11","dev":"eth0","weight":1,"flags":[]}]}]`,
			[]string{"198.51.100.11", "198.51.100.13"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseKernelNextHops(tc.out)
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, a := range got {
				s = append(s, a.String())
			}
			if diff := cmp.Diff(tc.want, s); diff != "" {
				t.Errorf("parseKernelNextHops (-want +got):\n%s", diff)
			}
		})
	}
}

// The configuration the lab writes is one BIRD accepts (bird -p parses
// it and exits).
func TestBIRDConfigParses(t *testing.T) {
	if _, err := exec.LookPath("bird"); err != nil {
		t.Skip("no bird (apt-get install bird2)")
	}
	l := &Lab{Prefix: "x"}
	for i := 1; i <= 3; i++ {
		l.Nodes = append(l.Nodes, newNode("x", i))
	}
	for _, p := range []BIRDPeering{
		{Peering: Peering{NodeASN: 64501}},
		{Peering: Peering{NodeASN: BIRDASN, Password: "s3cret-B", BFD: true, Nodes: []string{"node2"}}, BFDGraceful: true, GracefulRestart: true},
		{Peering: Peering{NodeASN: 64501, IPv6: true, BFD: true}, Families: []string{"ipv6"}},
	} {
		peers, err := l.birdPeers(p)
		if err != nil {
			t.Fatal(err)
		}
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, "peers.conf"), []byte(peers), 0o644); err != nil {
			t.Fatal(err)
		}
		conf := filepath.Join(d, "bird.conf")
		if err := os.WriteFile(conf, []byte(birdConfig(d)), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("bird", "-p", "-c", conf).CombinedOutput(); err != nil {
			t.Errorf("%+v: bird -p: %v: %s\n%s", p, err, out, peers)
		}
		if n := strings.Count(peers, "protocol bgp "); n != len(l.PeerAddresses(p.Peering)) {
			t.Errorf("%+v: %d BGP protocols, want one per node peered", p, n)
		}
	}
	if _, err := l.birdPeers(BIRDPeering{Peering: Peering{NodeASN: 64501, Password: `a"b`}}); err == nil {
		t.Error("a password with a quote: no error")
	}
}
