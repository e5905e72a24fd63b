package bgp

import (
	"net/netip"
	"time"
)

// Desired is everything this node should say over BGP. Server.Set takes a
// whole Desired and applies only the difference from the last one.
type Desired struct {
	// RouterID identifies this speaker (normally the node's IPv4 address).
	// Changing it restarts every session.
	RouterID netip.Addr
	// NextHopV4 and NextHopV6 are this node's addresses, used as next hop for
	// prefixes of a family the session's own address is not of (an IPv6
	// prefix over an IPv4 session). Either may be invalid when the node has
	// no address of that family; such prefixes then go only over sessions of
	// their own family.
	NextHopV4, NextHopV6 netip.Addr
	// Peers are the sessions to hold, by unique Name.
	Peers []Peer
	// Advertisements are the attribute sets routes are sent with, by unique Name.
	Advertisements []Advertisement
	// Routes maps each prefix to the names of the advertisements that carry
	// it. A peer receives a prefix if at least one of its advertisements
	// selects that peer; it then carries the union of their communities and
	// the highest of their local preferences.
	Routes map[netip.Prefix][]string
}

// Peer is one BGP session (RFC 4271).
type Peer struct {
	Name          string // unique; labels metrics and logs
	Address       netip.Addr
	Port          uint16 // 0: 179
	ASN           uint32 // the peer's; equal to MyASN makes the session iBGP
	MyASN         uint32
	SourceAddress netip.Addr    // invalid: the kernel chooses
	HoldTime      time.Duration // 0: no keepalives (RFC 4271 4.2); else whole seconds ≥ 3 s
	KeepaliveTime time.Duration // rounded down to whole seconds, at least 1 s
	ConnectTime   time.Duration // how often a connection is retried
	EBGPMultihop  bool
	// Password is the TCP-MD5 key (RFC 2385); "" for none. It is never logged.
	Password        string
	BFD             *BFD // nil: no BFD
	GracefulRestart bool // RFC 4724: the peer keeps our routes across a restart
	// Families are offered in the OPEN (RFC 4760); nil offers both. The
	// session then carries those the router offers too, and nothing of
	// another family is ever sent. A restarting speaker with graceful
	// restart sends End-of-RIB for every family it offers (GoBGP's
	// restart path takes them from the configuration), so a peer's families
	// should be those its router offered last time (PeerStatus.RouterFamilies).
	Families []Family
}

// Family is a unicast address family (AFI/SAFI, RFC 4760).
type Family string

// The families Herald carries.
const (
	IPv4Unicast Family = "ipv4-unicast"
	IPv6Unicast Family = "ipv6-unicast"
)

// BFD holds one session's BFD timers (RFC 5880).
type BFD struct {
	ReceiveInterval  time.Duration
	TransmitInterval time.Duration
	DetectMultiplier uint8
}

// Advertisement is a set of attributes and the peers they go to.
type Advertisement struct {
	Name string
	// Peers names the peers that receive these routes; empty means every peer.
	Peers []string
	// LocalPref is sent to iBGP peers only; 0: not set.
	LocalPref        uint32
	Communities      []uint32    // RFC 1997: high 16 bits ":" low 16 bits
	LargeCommunities [][3]uint32 // RFC 8092
}

// PeerStatus is one session as the server sees it now.
type PeerStatus struct {
	Name        string
	Address     netip.Addr
	State       string // idle, connect, active, opensent, openconfirm, established
	Since       time.Time
	Advertised  int    // prefixes sent on the session
	BFD         string // "" without BFD; else down, init, up, admindown
	LastError   string // why the session last went down, if known
	Established bool
	// RouterFamilies are the unicast families the router offered in its
	// last OPEN, sorted; nil until a session first came up. They stay
	// while the session is down.
	RouterFamilies []Family
}
