package config_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/heraldlb/herald/config"
)

// TestParseRejects has a row for every rule; each checks that a problem
// names its place and says what is wrong.
func TestParseRejects(t *testing.T) {
	okPool := pool("lan", "10.0.0.0/24")
	tests := []struct {
		name string
		doc  []byte
		want string // the start of one problem
	}{
		// The document.
		{"too large", append([]byte("pools: []\n#"), strings.Repeat("x", config.MaxDocumentSize)...), "document: 1048587 bytes, more than the limit of 1048576 (1 MiB)"},
		{"not YAML", []byte("pools: [\n"), "document: not YAML: line"},
		{"two documents", []byte("pools: []\n---\npools: []\n"), "document: more than one YAML document"},
		{"empty", nil, `document: empty; Herald keeps the last valid configuration (to configure no pools at all, write "pools: []")`},
		{"only white space", []byte("  \n\n"), "document: empty; Herald keeps the last valid configuration"},
		{"only comments", []byte("# nothing yet\n# really\n"), "document: empty; Herald keeps the last valid configuration"},
		{"null", []byte("null\n"), "document: empty"},
		{"tilde", []byte("~"), "document: empty"},
		{"too many values", []byte("x: [" + strings.Repeat("0,", 40000) + "]\n"), "document: more than 32768 values, the most Herald reads"},
		{"long key", []byte(strings.Repeat("k", 100) + ": 1\n"), `document["` + strings.Repeat("k", 40) + `…"]: unknown field`},
		{"not a mapping", []byte("- a\n"), "document: want a mapping, got a list"},
		{"unknown section", doc("pool", list(okPool)), "pool: unknown field"},
		{"unknown field", pools(with(okPool, "adresses", []string{"10.0.0.1"})), "pools[0].adresses: unknown field"},
		{"unknown nested field", peers(with(peer("p", "192.0.2.1"), "passwordSecret", obj{"name": "s", "key": "k", "namespace": "x"})), "bgpPeers[0].passwordSecret.namespace: unknown field"},
		{"field given twice", []byte("pools:\n- name: a\n  name: b\n  addresses: [10.0.0.1]\n"), "pools[0].name: given twice"},
		{"merge key", []byte("x: &p {name: a}\npools:\n- <<: *p\n  addresses: [10.0.0.1]\n"), "pools[0].<<: merge keys are not supported"},
		{"list for a string", pools(obj{"name": []string{"a"}, "addresses": []string{"10.0.0.1"}}), "pools[0].name: want a string, got a list"},
		{"string for a list", pools(obj{"name": "a", "addresses": "10.0.0.1"}), `pools[0].addresses: want a list, got "10.0.0.1"`},
		{"string for a bool", pools(with(okPool, "autoAssign", "yes")), `pools[0].autoAssign: want true or false, got "yes"`},
		{"string for an integer", peers(with(peer("p", "192.0.2.1"), "asn", "64500")), `bgpPeers[0].asn: want an integer, got "64500"`},
		{"integer too large", []byte("bgpPeers:\n- {name: p, address: 192.0.2.1, myASN: 1, asn: 99999999999999999999}\n"), `bgpPeers[0].asn: want an integer, got "99999999999999999999"`},

		// Pools.
		{"pool without name", pools(obj{"addresses": []string{"10.0.0.1"}}), "pools[0].name: required"},
		{"pool name not a label", pools(pool("Lan", "10.0.0.1")), `pools[0].name: "Lan": not a DNS label`},
		{"pool name too long", pools(pool(strings.Repeat("a", 64), "10.0.0.1")), `pools[0].name: "aaaa`},
		{"pool name twice", pools(pool("a", "10.0.0.1"), pool("a", "10.0.0.2")), `pools[1].name: "a" already used by pools[0]`},
		{"pool without addresses", pools(pool("a")), "pools[0].addresses: required"},
		{"address does not parse", pools(pool("a", "10.0.0.300")), `pools[0].addresses[0]: "10.0.0.300": not an IP address`},
		{"empty address", pools(pool("a", "")), `pools[0].addresses[0]: "": empty`},
		{"range reversed", pools(pool("a", "10.0.0.0/24", "10.0.0.5-10.0.0.1")), `pools[0].addresses[1]: "10.0.0.5-10.0.0.1": range start after end`},
		{"range of two families", pools(pool("a", "10.0.0.1-2001:db8::1")), `pools[0].addresses[0]: "10.0.0.1-2001:db8::1": range start and end are of different families`},
		{"range end does not parse", pools(pool("a", "10.0.0.1-10.0.0")), `pools[0].addresses[0]: "10.0.0.1-10.0.0": range end: not an IP address`},
		{"CIDR with host bits", pools(pool("a", "198.51.100.5/24")), `pools[0].addresses[0]: "198.51.100.5/24": not a network address; write 198.51.100.0/24`},
		{"zone", pools(pool("a", "2001:db8::1%eth0")), `pools[0].addresses[0]: "2001:db8::1%eth0": zones are not allowed`},
		{"IPv4-mapped", pools(pool("a", "::ffff:10.0.0.1")), `pools[0].addresses[0]: "::ffff:10.0.0.1": IPv4-mapped IPv6 addresses are not allowed`},
		{"IPv4-mapped prefix", pools(pool("a", "::ffff:10.0.0.0/120")), `pools[0].addresses[0]: "::ffff:10.0.0.0/120": IPv4-mapped`},
		{"all of IPv4", pools(pool("a", "0.0.0.0/0")), `pools[0].addresses[0]: "0.0.0.0/0": wider than a /8`},
		{"all of IPv6", pools(pool("a", "::/0")), `pools[0].addresses[0]: "::/0": wider than a /32`},
		{"IPv4 wider than a /8", pools(pool("a", "10.0.0.0/7")), `pools[0].addresses[0]: "10.0.0.0/7": wider than a /8`},
		{"IPv4 range wider than a /8", pools(pool("a", "10.0.0.0-11.0.0.0")), `pools[0].addresses[0]: "10.0.0.0-11.0.0.0": wider than a /8`},
		{"IPv6 wider than a /32", pools(pool("a", "2001:db8::/31")), `pools[0].addresses[0]: "2001:db8::/31": wider than a /32`},
		{"IPv4 loopback", pools(pool("a", "127.0.0.1")), `pools[0].addresses[0]: "127.0.0.1": includes loopback addresses (127.0.0.0/8)`},
		{"IPv6 loopback", pools(pool("a", "::1")), `pools[0].addresses[0]: "::1": includes the loopback address ::1`},
		{"IPv4 multicast", pools(pool("a", "239.1.1.0/24")), `pools[0].addresses[0]: "239.1.1.0/24": includes multicast addresses (224.0.0.0/4)`},
		{"range into multicast", pools(pool("a", "223.255.255.250-224.0.0.5")), `pools[0].addresses[0]: "223.255.255.250-224.0.0.5": includes multicast addresses`},
		{"IPv6 multicast", pools(pool("a", "ff02::1")), `pools[0].addresses[0]: "ff02::1": includes multicast addresses (ff00::/8)`},
		{"IPv4 link-local", pools(pool("a", "169.254.0.0/24")), `pools[0].addresses[0]: "169.254.0.0/24": includes link-local addresses (169.254.0.0/16)`},
		{"IPv6 link-local", pools(pool("a", "fe80::1-fe80::9")), `pools[0].addresses[0]: "fe80::1-fe80::9": includes link-local addresses (fe80::/10)`},
		{"IPv4 unspecified", pools(pool("a", "0.0.0.0")), `pools[0].addresses[0]: "0.0.0.0": includes “this network” addresses`},
		{"IPv6 unspecified", pools(pool("a", "::-::5")), `pools[0].addresses[0]: "::-::5": includes the unspecified address ::`},
		{"IPv4 broadcast", pools(pool("a", "255.255.255.0/24")), `pools[0].addresses[0]: "255.255.255.0/24": includes the broadcast address 255.255.255.255`},
		{"IPv6 range over IPv4-mapped", pools(pool("a", "::fffe:ffff:ffff-::1:0:0:5")), `pools[0].addresses[0]: "::fffe:ffff:ffff-::1:0:0:5": includes IPv4-mapped addresses`},
		{"address in two pools", pools(pool("a", "10.0.0.0/24"), pool("b", "10.0.1.0/24", "10.0.0.128-10.0.0.130")), `pools[1].addresses[1]: "10.0.0.128-10.0.0.130" overlaps "10.0.0.0/24" of pool "a" (pools[0].addresses[0]): an address belongs to one pool only`},
		{"IPv6 address in two pools", pools(pool("a", "2001:db8::/64"), pool("b", "2001:db8::1")), `pools[1].addresses[0]: "2001:db8::1" overlaps "2001:db8::/64" of pool "a" (pools[0].addresses[0])`},
		{"pool inside another", pools(pool("a", "10.0.0.0/16"), pool("b", "10.0.9.0/24"), pool("c", "10.0.200.7")), `pools[2].addresses[0]: "10.0.200.7" overlaps "10.0.0.0/16" of pool "a"`},
		{"hostname in a pool", pools(pool("a", "lb.example.com")), `pools[0].addresses[0]: "lb.example.com": hostnames are not supported; write an IP address`},
		{"hostname as a range end", pools(pool("a", "10.0.0.1-lb.example.com")), `pools[0].addresses[0]: "10.0.0.1-lb.example.com": hostnames are not supported`},
		{"long address", pools(pool("a", strings.Repeat("9", 100))), `pools[0].addresses[0]: "` + strings.Repeat("9", 40) + `…": not an IP address`},
		{"pool holds a peer's address", doc("pools", list(pool("lan", "10.0.0.5", "192.0.2.0/24")), "bgpPeers", list(peer("tor", "192.0.2.1"))),
			`pools[0].addresses[1]: "192.0.2.0/24" holds bgpPeers[0].address (192.0.2.1); a pool must not hold a BGP peer's address, sourceAddress or routerID`},
		{"pool holds a peer's sourceAddress", doc("pools", list(pool("lan", "10.0.0.0/24")), "bgpPeers", list(with(peer("tor", "192.0.2.1"), "sourceAddress", "10.0.0.9"))),
			`pools[0].addresses[0]: "10.0.0.0/24" holds bgpPeers[0].sourceAddress (10.0.0.9)`},
		{"pool holds a peer's routerID", doc("pools", list(pool("lan", "10.0.0.1-10.0.0.20")), "bgpPeers", list(with(peer("tor", "192.0.2.1"), "routerID", "10.0.0.20"))),
			`pools[0].addresses[0]: "10.0.0.1-10.0.0.20" holds bgpPeers[0].routerID (10.0.0.20)`},
		{"pool holds an IPv6 peer", doc("pools", list(pool("a", "10.0.0.1"), pool("b", "2001:db8::/120")), "bgpPeers", list(peer("tor", "2001:db8::7"))),
			`pools[1].addresses[0]: "2001:db8::/120" holds bgpPeers[0].address (2001:db8::7)`},

		// Allocation.
		{"namespace not a label", pools(with(okPool, "allocation", obj{"namespaces": []string{"Shop"}})), `pools[0].allocation.namespaces[0]: "Shop": not a DNS label`},
		{"namespace twice", pools(with(okPool, "allocation", obj{"namespaces": []string{"a", "a"}})), `pools[0].allocation.namespaces[1]: "a" listed twice`},
		{"namespace selector label", pools(with(okPool, "allocation", obj{"namespaceSelector": selector("matchLabels", obj{"a b": "c"})})), `pools[0].allocation.namespaceSelector.matchLabels["a b"]: not a label key`},
		{"service selector operator", pools(with(okPool, "allocation", obj{"serviceSelector": selector("matchExpressions", list(obj{"key": "a", "operator": "Near"}))})), `pools[0].allocation.serviceSelector.matchExpressions[0].operator: "Near": not an operator; want In, NotIn, Exists or DoesNotExist`},
		{"priority out of range", pools(with(okPool, "allocation", obj{"priority": int64(1) << 40})), `pools[0].allocation.priority: 1099511627776: must be -2147483648-2147483647`},

		// L2 advertisements.
		{"l2 name twice", doc("l2Advertisements", list(obj{"name": "x"}, obj{"name": "x"})), `l2Advertisements[1].name: "x" already used by l2Advertisements[0]`},
		{"l2 without name", doc("l2Advertisements", list(obj{"pools": []string{}})), `l2Advertisements[0].name: required`},
		{"l2 unknown pool", doc("pools", list(okPool), "l2Advertisements", list(obj{"name": "x", "pools": []string{"lan", "wan"}})), `l2Advertisements[0].pools[1]: "wan" is not defined in pools`},
		{"l2 pool twice", doc("pools", list(okPool), "l2Advertisements", list(obj{"name": "x", "pools": []string{"lan", "lan"}})), `l2Advertisements[0].pools[1]: "lan" listed twice`},
		{"l2 interface with slash", doc("l2Advertisements", list(obj{"name": "x", "interfaces": []string{"eth0/1"}})), `l2Advertisements[0].interfaces[0]: "eth0/1": not an interface name`},
		{"l2 interface too long", doc("l2Advertisements", list(obj{"name": "x", "interfaces": []string{"abcdefghijklmnop"}})), `l2Advertisements[0].interfaces[0]: "abcdefghijklmnop": not an interface name`},
		{"l2 interface twice", doc("l2Advertisements", list(obj{"name": "x", "interfaces": []string{"eth0", "eth0"}})), `l2Advertisements[0].interfaces[1]: "eth0" listed twice`},
		{"l2 node selector", doc("l2Advertisements", list(obj{"name": "x", "nodeSelector": selector("matchExpressions", list(obj{"key": "a", "operator": "In"}))})), `l2Advertisements[0].nodeSelector.matchExpressions[0].values: required for operator In`},

		// BGP peers.
		{"peer name twice", peers(peer("p", "192.0.2.1"), peer("p", "192.0.2.2")), `bgpPeers[1].name: "p" already used by bgpPeers[0]`},
		{"peer without address", peers(obj{"name": "p", "asn": 1, "myASN": 2}), `bgpPeers[0].address: required`},
		{"peer address does not parse", peers(peer("p", "router")), `bgpPeers[0].address: "router": hostnames are not supported; write an IP address`},
		{"peer address multicast", peers(peer("p", "224.0.0.5")), `bgpPeers[0].address: 224.0.0.5: not a unicast address`},
		{"peer address with zone", peers(peer("p", "fe80::1%eth0")), `bgpPeers[0].address: "fe80::1%eth0": zones are not allowed`},
		{"peer twice", peers(peer("a", "192.0.2.1"), with(peer("b", "192.0.2.1"), "port", 179)), `bgpPeers[1].address: 192.0.2.1 port 179 is already the peer of bgpPeers[0]`},
		{"peer twice, both every node", peers(peer("a", "192.0.2.1"), with(peer("b", "192.0.2.1"), "nodeSelector", obj{})),
			`bgpPeers[1].address: 192.0.2.1 port 179 is already the peer of bgpPeers[0] for the same nodes (every node); peers may share an address and port only when their nodeSelectors select different nodes, as one peer per rack`},
		{"peer twice, same nodeSelector", peers(peer("c", "192.0.2.9"),
			with(peer("a", "192.0.2.1"), "nodeSelector", selector("matchExpressions", list(obj{"key": "rack", "operator": "In", "values": []string{"a", "b"}}))),
			with(peer("b", "192.0.2.1"), "nodeSelector", selector("matchExpressions", list(obj{"key": "rack", "operator": "In", "values": []string{"b", "a"}})))),
			`bgpPeers[2].address: 192.0.2.1 port 179 is already the peer of bgpPeers[1] for the same nodes (nodeSelector "rack in (a,b)")`},
		{"port 0", peers(with(peer("p", "192.0.2.1"), "port", 0)), `bgpPeers[0].port: 0: must be 1-65535`},
		{"port too large", peers(with(peer("p", "192.0.2.1"), "port", 65536)), `bgpPeers[0].port: 65536: must be 1-65535`},
		{"asn 0", peers(with(peer("p", "192.0.2.1"), "asn", 0)), `bgpPeers[0].asn: 0: AS 0 is reserved (RFC 7607)`},
		{"asn too large", peers(with(peer("p", "192.0.2.1"), "asn", int64(1)<<32)), `bgpPeers[0].asn: 4294967296: must be 1-4294967294`},
		{"asn missing", peers(obj{"name": "p", "address": "192.0.2.1", "myASN": 1}), `bgpPeers[0].asn: required`},
		{"myASN missing", peers(obj{"name": "p", "address": "192.0.2.1", "asn": 1}), `bgpPeers[0].myASN: required`},
		{"myASN negative", peers(with(peer("p", "192.0.2.1"), "myASN", -1)), `bgpPeers[0].myASN: -1: must be 1-4294967294`},
		{"asn AS_TRANS", peers(with(peer("p", "192.0.2.1"), "asn", 23456)), `bgpPeers[0].asn: 23456: AS 23456 is AS_TRANS, which stands in for 4-byte AS numbers towards old speakers (RFC 6793)`},
		{"asn 65535", peers(with(peer("p", "192.0.2.1"), "asn", 65535)), `bgpPeers[0].asn: 65535: AS 65535 is reserved (RFC 7300)`},
		{"asn 4294967295", peers(with(peer("p", "192.0.2.1"), "asn", 4294967295)), `bgpPeers[0].asn: 4294967295: AS 4294967295 is reserved (RFC 7300)`},
		{"myASN 0", peers(with(peer("p", "192.0.2.1"), "myASN", 0)), `bgpPeers[0].myASN: 0: AS 0 is reserved (RFC 7607)`},
		{"myASN AS_TRANS", peers(with(peer("p", "192.0.2.1"), "myASN", 23456)), `bgpPeers[0].myASN: 23456: AS 23456 is AS_TRANS`},
		{"myASN 65535", peers(with(peer("p", "192.0.2.1"), "myASN", 65535)), `bgpPeers[0].myASN: 65535: AS 65535 is reserved (RFC 7300)`},
		{"myASN 4294967295", peers(with(peer("p", "192.0.2.1"), "myASN", 4294967295)), `bgpPeers[0].myASN: 4294967295: AS 4294967295 is reserved (RFC 7300)`},
		{"peer address a hostname", peers(peer("p", "tor1.example.com")), `bgpPeers[0].address: "tor1.example.com": hostnames are not supported; write an IP address`},
		{"sourceAddress a hostname", peers(with(peer("p", "192.0.2.1"), "sourceAddress", "node1.example.com")), `bgpPeers[0].sourceAddress: "node1.example.com": hostnames are not supported`},
		{"routerID a hostname", peers(with(peer("p", "192.0.2.1"), "routerID", "node1.example.com")), `bgpPeers[0].routerID: "node1.example.com": hostnames are not supported`},
		{"peer address not an address", peers(peer("p", "192.0.2.1/32")), `bgpPeers[0].address: "192.0.2.1/32": not an IP address`},
		{"keepalive not whole seconds", peers(with(peer("p", "192.0.2.1"), "holdTime", "9s", "keepaliveTime", "1500ms")), `bgpPeers[0].keepaliveTime: "1500ms": must be whole seconds (BGP carries seconds)`},
		{"duration echoes a long text", peers(with(peer("p", "192.0.2.1"), "holdTime", strings.Repeat("1", 50)+"s")), `bgpPeers[0].holdTime: "` + strings.Repeat("1", 40) + `…": not a duration`},
		{"routerID IPv6", peers(with(peer("p", "192.0.2.1"), "routerID", "2001:db8::1")), `bgpPeers[0].routerID: 2001:db8::1: must be a non-zero IPv4 address`},
		{"routerID zero", peers(with(peer("p", "192.0.2.1"), "routerID", "0.0.0.0")), `bgpPeers[0].routerID: 0.0.0.0: must be a non-zero IPv4 address`},
		{"routerID does not parse", peers(with(peer("p", "192.0.2.1"), "routerID", "me")), `bgpPeers[0].routerID: "me": hostnames are not supported; write an IP address`},
		{"sourceAddress does not parse", peers(with(peer("p", "192.0.2.1"), "sourceAddress", "eth0")), `bgpPeers[0].sourceAddress: "eth0": hostnames are not supported`},
		{"sourceAddress of the other family", peers(with(peer("p", "192.0.2.1"), "sourceAddress", "2001:db8::2")), `bgpPeers[0].sourceAddress: 2001:db8::2 is not of the family of address 192.0.2.1`},
		{"holdTime too short", peers(with(peer("p", "192.0.2.1"), "holdTime", "2s")), `bgpPeers[0].holdTime: "2s": must be 0 or 3s-65535s`},
		{"holdTime too long", peers(with(peer("p", "192.0.2.1"), "holdTime", "24h")), `bgpPeers[0].holdTime: "24h": must be 0 or 3s-65535s`},
		{"holdTime not whole seconds", peers(with(peer("p", "192.0.2.1"), "holdTime", "3500ms")), `bgpPeers[0].holdTime: "3500ms": must be whole seconds`},
		{"holdTime negative", peers(with(peer("p", "192.0.2.1"), "holdTime", "-9s")), `bgpPeers[0].holdTime: "-9s": must not be negative`},
		{"holdTime does not parse", peers(with(peer("p", "192.0.2.1"), "holdTime", "soon")), `bgpPeers[0].holdTime: "soon": not a duration; write a number and a unit, as in 90s, 1m30s or 300ms`},
		{"keepalive not below holdTime", peers(with(peer("p", "192.0.2.1"), "holdTime", "9s", "keepaliveTime", "9s")), `bgpPeers[0].keepaliveTime: "9s": must be more than 0 and less than holdTime (9s)`},
		{"keepalive 0", peers(with(peer("p", "192.0.2.1"), "keepaliveTime", "0s")), `bgpPeers[0].keepaliveTime: "0s": must be more than 0 and less than holdTime (90s)`},
		{"keepalive without holdTime", peers(with(peer("p", "192.0.2.1"), "holdTime", "0s", "keepaliveTime", "3s")), `bgpPeers[0].keepaliveTime: "3s": must be 0 when holdTime is 0`},
		{"connectTime 0", peers(with(peer("p", "192.0.2.1"), "connectTime", "0s")), `bgpPeers[0].connectTime: must be more than 0`},
		{"connectTime does not parse", peers(with(peer("p", "192.0.2.1"), "connectTime", "5")), `bgpPeers[0].connectTime: "5": not a duration`},
		{"secret without name", peers(with(peer("p", "192.0.2.1"), "passwordSecret", obj{"key": "k"})), `bgpPeers[0].passwordSecret.name: required`},
		{"secret without key", peers(with(peer("p", "192.0.2.1"), "passwordSecret", obj{"name": "s"})), `bgpPeers[0].passwordSecret.key: required`},
		{"secret name invalid", peers(with(peer("p", "192.0.2.1"), "passwordSecret", obj{"name": "S_1", "key": "k"})), `bgpPeers[0].passwordSecret.name: "S_1": not a Secret name`},
		{"secret key invalid", peers(with(peer("p", "192.0.2.1"), "passwordSecret", obj{"name": "s", "key": "a/b"})), `bgpPeers[0].passwordSecret.key: "a/b": not a Secret key`},
		{"unknown bfdProfile", peers(with(peer("p", "192.0.2.1"), "bfdProfile", "fast")), `bgpPeers[0].bfdProfile: "fast" is not defined in bfdProfiles`},
		{"peer node selector", peers(with(peer("p", "192.0.2.1"), "nodeSelector", selector("matchLabels", obj{"rack": "a b"}))), `bgpPeers[0].nodeSelector.matchLabels.rack: "a b": not a label value`},

		// BFD profiles.
		{"bfd name twice", doc("bfdProfiles", list(obj{"name": "b"}, obj{"name": "b"})), `bfdProfiles[1].name: "b" already used by bfdProfiles[0]`},
		{"bfd receive too fast", doc("bfdProfiles", list(obj{"name": "b", "receiveInterval": "5ms"})), `bfdProfiles[0].receiveInterval: "5ms": must be 10ms-60s`},
		{"bfd transmit too slow", doc("bfdProfiles", list(obj{"name": "b", "transmitInterval": "61s"})), `bfdProfiles[0].transmitInterval: "61s": must be 10ms-60s`},
		{"bfd interval does not parse", doc("bfdProfiles", list(obj{"name": "b", "receiveInterval": 300})), `bfdProfiles[0].receiveInterval: "300": not a duration`},
		{"bfd multiplier too small", doc("bfdProfiles", list(obj{"name": "b", "detectMultiplier": 1})), `bfdProfiles[0].detectMultiplier: 1: must be 2-255`},
		{"bfd multiplier too large", doc("bfdProfiles", list(obj{"name": "b", "detectMultiplier": 256})), `bfdProfiles[0].detectMultiplier: 256: must be 2-255`},

		// Communities.
		{"community name twice", doc("communities", list(obj{"name": "c", "value": "1:1"}, obj{"name": "c", "value": "1:2"})), `communities[1].name: "c" already used by communities[0]`},
		{"community name not a label", doc("communities", list(obj{"name": "no_export", "value": "1:1"})), `communities[0].name: "no_export": not a DNS label`},
		{"community without value", doc("communities", list(obj{"name": "c"})), `communities[0].value: required`},
		{"community part too large", doc("communities", list(obj{"name": "c", "value": "65536:1"})), `communities[0].value: "65536:1": part "65536" is not a number 0-65535`},
		{"community of three parts", doc("communities", list(obj{"name": "c", "value": "1:2:3"})), `communities[0].value: "1:2:3": a community is a:b or large:a:b:c`},
		{"community value a name", doc("communities", list(obj{"name": "c", "value": "other"})), `communities[0].value: "other": a community is a:b or large:a:b:c`},
		{"large community of two parts", doc("communities", list(obj{"name": "c", "value": "large:1:2"})), `communities[0].value: "large:1:2": a large community is large:a:b:c`},
		{"large community part too large", doc("communities", list(obj{"name": "c", "value": "large:1:4294967296:3"})), `communities[0].value: "large:1:4294967296:3": part "4294967296" is not a number 0-4294967295`},

		// BGP advertisements.
		{"bgp name twice", doc("bgpAdvertisements", list(bgpAdv("a"), bgpAdv("a"))), `bgpAdvertisements[1].name: "a" already used by bgpAdvertisements[0]`},
		{"bgp unknown pool", doc("bgpAdvertisements", list(bgpAdv("a", "lan"))), `bgpAdvertisements[0].pools[0]: "lan" is not defined in pools`},
		{"bgp unknown peer", doc("bgpAdvertisements", list(with(bgpAdv("a"), "peers", []string{"tor"}))), `bgpAdvertisements[0].peers[0]: "tor" is not defined in bgpPeers`},
		{"bgp peer twice", doc("bgpPeers", list(peer("tor", "192.0.2.1")), "bgpAdvertisements", list(with(bgpAdv("a"), "peers", []string{"tor", "tor"}))), `bgpAdvertisements[0].peers[1]: "tor" listed twice`},
		{"aggregationLength too long", doc("bgpAdvertisements", list(with(bgpAdv("a"), "aggregationLength", 33))), `bgpAdvertisements[0].aggregationLength: 33: must be 0-32`},
		{"aggregationLength negative", doc("bgpAdvertisements", list(with(bgpAdv("a"), "aggregationLength", -1))), `bgpAdvertisements[0].aggregationLength: -1: must be 0-32`},
		{"aggregationLengthV6 too long", doc("bgpAdvertisements", list(with(bgpAdv("a"), "aggregationLengthV6", 129))), `bgpAdvertisements[0].aggregationLengthV6: 129: must be 0-128`},
		{"aggregate beyond a range", doc("pools", list(pool("lan", "10.0.0.10-10.0.0.20")), "bgpAdvertisements", list(with(bgpAdv("a", "lan"), "aggregationLength", 24))),
			`bgpAdvertisements[0].aggregationLength: 24 does not fit pool "lan": 10.0.0.10-10.0.0.20 is not made of whole /24 blocks, so the aggregate 10.0.0.0/24 would cover addresses outside the pool; use 32 or more`},
		{"aggregate beyond a CIDR", doc("pools", list(pool("lan", "10.0.0.0/25")), "bgpAdvertisements", list(with(bgpAdv("a", "lan"), "aggregationLength", 24))),
			`bgpAdvertisements[0].aggregationLength: 24 does not fit pool "lan": 10.0.0.0/25 is not made of whole /24 blocks, so the aggregate 10.0.0.0/24 would cover addresses outside the pool; use 25 or more`},
		{"aggregate beyond the end of a range", doc("pools", list(pool("lan", "10.0.0.0-10.0.1.127")), "bgpAdvertisements", list(with(bgpAdv("a", "lan"), "aggregationLength", 24))),
			`bgpAdvertisements[0].aggregationLength: 24 does not fit pool "lan": 10.0.0.0-10.0.1.127 is not made of whole /24 blocks, so the aggregate 10.0.1.0/24 would cover addresses outside the pool; use 25 or more`},
		{"aggregate beyond an IPv6 range", doc("pools", list(pool("lan", "2001:db8::/120")), "bgpAdvertisements", list(with(bgpAdv("a", "lan"), "aggregationLengthV6", 64))),
			`bgpAdvertisements[0].aggregationLengthV6: 64 does not fit pool "lan": 2001:db8::/120 is not made of whole /64 blocks, so the aggregate 2001:db8::/64 would cover addresses outside the pool; use 120 or more`},
		{"aggregate of every pool", doc("pools", list(pool("a", "10.0.0.0/24"), pool("b", "10.0.1.0/26")), "bgpAdvertisements", list(with(bgpAdv("all"), "aggregationLength", 24))),
			`bgpAdvertisements[0].aggregationLength: 24 does not fit pool "b"`},
		{"aggregation length 0", doc("pools", list(pool("a", "10.0.0.0/24")), "bgpAdvertisements", list(with(bgpAdv("all"), "aggregationLength", 0))),
			`bgpAdvertisements[0].aggregationLength: 0 does not fit pool "a"`},
		{"localPref negative", doc("bgpAdvertisements", list(with(bgpAdv("a"), "localPref", -1))), `bgpAdvertisements[0].localPref: -1: must be 0-4294967295`},
		{"localPref too large", doc("bgpAdvertisements", list(with(bgpAdv("a"), "localPref", int64(1)<<32))), `bgpAdvertisements[0].localPref: 4294967296: must be 0-4294967295`},
		{"community literal", doc("bgpAdvertisements", list(with(bgpAdv("a"), "communities", []string{"1:2", "1:70000"}))), `bgpAdvertisements[0].communities[1]: "1:70000": part "70000" is not a number 0-65535`},
		{"large community literal", doc("bgpAdvertisements", list(with(bgpAdv("a"), "communities", []string{"large:1:2:x"}))), `bgpAdvertisements[0].communities[0]: "large:1:2:x": part "x" is not a number 0-4294967295`},
		{"undefined community", doc("bgpAdvertisements", list(with(bgpAdv("a"), "communities", []string{"no-export"}))), `bgpAdvertisements[0].communities[0]: "no-export" is not defined in communities`},
		{"bgp node selector", doc("bgpAdvertisements", list(with(bgpAdv("a"), "nodeSelector", selector("matchExpressions", list(obj{"key": "k", "operator": "Exists", "values": []string{"v"}}))))), `bgpAdvertisements[0].nodeSelector.matchExpressions[0].values: must be empty for operator Exists`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse(tt.doc)
			if cfg != nil {
				t.Errorf("Parse returned a configuration with its error")
			}
			wantProblem(t, err, tt.want)
		})
	}
}

// TestParseAliasBomb checks that a small document whose aliases expand to
// billions of values is refused quickly.
func TestParseAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("pools:\n- name: a\n  addresses: [10.0.0.1]\n  allocation:\n    serviceSelector:\n      matchExpressions: &m\n")
	fmt.Fprintf(&b, "      - {key: k, operator: In, values: &v [%s]}\n", strings.TrimSuffix(strings.Repeat("x,", 1000), ","))
	for range 1000 {
		b.WriteString("      - {key: k, operator: In, values: *v}\n")
	}
	for i := range 1000 {
		fmt.Fprintf(&b, "- {name: p%d, addresses: [10.1.0.%d], allocation: {serviceSelector: {matchExpressions: *m}}}\n", i, i%250)
	}
	_, err := config.Parse([]byte(b.String()))
	if diff := cmp.Diff([]string{"document: more than 32768 values once aliases are expanded"}, lines(err)); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}
