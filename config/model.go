// Package config parses Herald's ConfigMap text (herald-system/herald, key
// config.yaml) into a validated, normalised model: address pools, L2 and BGP
// advertisements, BGP peers, BFD profiles and communities. Parse is pure and
// reports every problem at once; nothing downstream validates again.
// ParseMetalLB reads MetalLB's legacy ConfigMap format into the same model.
package config

import (
	"net/netip"
	"time"

	"k8s.io/apimachinery/pkg/labels"
)

// Config is a whole, valid configuration. Every slice is sorted by name and
// every reference between sections has been resolved and checked.
type Config struct {
	Pools             []Pool
	L2Advertisements  []L2Advertisement
	BGPPeers          []BGPPeer
	BFDProfiles       []BFDProfile
	Communities       []Community
	BGPAdvertisements []BGPAdvertisement
	// Warnings name what is valid but probably not what was meant, each
	// starting with its place, as problems do; at most 100 and a note.
	Warnings []string
}

// Pool is a named set of addresses Services may be given.
type Pool struct {
	Name string
	// Ranges are the pool's addresses, sorted, non-overlapping and merged
	// where adjacent; each range is of one family.
	Ranges []Range
	// AutoAssign false: the pool only serves Services that ask for it by
	// name or ask for one of its addresses.
	AutoAssign bool
	// AvoidBuggyIPs skips the .0 and .255 address of every IPv4 /24.
	AvoidBuggyIPs bool
	// Allocation restricts who may take from the pool; nil means anyone.
	Allocation *Allocation
}

// Allocation says which Services a pool serves and how it ranks against other pools.
type Allocation struct {
	// Namespaces, if not empty, lists the namespaces served.
	Namespaces []string
	// NamespaceSelector and ServiceSelector match namespace and Service
	// labels; labels.Everything() when not given.
	NamespaceSelector labels.Selector
	ServiceSelector   labels.Selector
	// Priority orders matching pools: lower first, then by name.
	Priority int
}

// Range is an inclusive range of addresses of one family, From <= To.
type Range struct {
	From, To netip.Addr
}

// L2Advertisement announces pools' addresses by ARP/NDP from selected nodes.
type L2Advertisement struct {
	Name string
	// Pools lists the pools advertised; empty means every pool.
	Pools []string
	// NodeSelector picks the nodes that may announce; labels.Everything() when not given.
	NodeSelector labels.Selector
	// Interfaces narrows the interfaces answered on; empty means every eligible one.
	Interfaces []string
}

// BGPPeer is a router each selected node opens a BGP session to.
type BGPPeer struct {
	Name          string
	Address       netip.Addr
	Port          uint16 // default 179
	ASN           uint32 // the peer's
	MyASN         uint32
	RouterID      netip.Addr // zero: the node's IPv4 address
	SourceAddress netip.Addr // zero: chosen by the kernel
	HoldTime      time.Duration
	KeepaliveTime time.Duration
	ConnectTime   time.Duration
	EBGPMultihop  bool
	// PasswordSecret names the Secret (in Herald's namespace) holding the TCP-MD5 password.
	PasswordSecret  *SecretRef
	BFDProfile      string // "" for none
	GracefulRestart bool
	NodeSelector    labels.Selector
	// Rank is the peer's place, in document order, among the peers that
	// share its address and port (0: the first, or the only one). A node
	// selected by several of them peers with the lowest ranked (PeersFor).
	Rank int
}

// SecretRef points at one key of a Secret in Herald's namespace.
type SecretRef struct {
	Name, Key string
}

// BFDProfile holds the timers of BFD sessions (RFC 5880).
type BFDProfile struct {
	Name             string
	ReceiveInterval  time.Duration
	TransmitInterval time.Duration
	DetectMultiplier uint32
}

// Community gives a community value a name usable in BGP advertisements.
type Community struct {
	Name  string
	Value CommunityValue
}

// CommunityValue is a standard (RFC 1997) or large (RFC 8092) BGP community.
type CommunityValue struct {
	Large    bool
	Standard uint32    // high 16 bits : low 16 bits
	Parts    [3]uint32 // large: global admin, local 1, local 2
}

// BGPAdvertisement announces pools' addresses over BGP.
type BGPAdvertisement struct {
	Name string
	// Pools lists the pools advertised; empty means every pool.
	Pools []string
	// Peers lists the peers sent to; empty means every peer.
	Peers               []string
	AggregationLength   int    // IPv4 prefix length, default 32
	AggregationLengthV6 int    // IPv6 prefix length, default 128
	LocalPref           uint32 // 0: not sent (LOCAL_PREF only goes to iBGP peers)
	// Communities are resolved values (names replaced by their value).
	Communities  []CommunityValue
	NodeSelector labels.Selector
}
