package config

import (
	"math"
	"net/netip"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// BGP's hold time is whole seconds in a 16-bit field (RFC 4271 4.2).
const (
	minHoldTime = 3 * time.Second
	maxHoldTime = math.MaxUint16 * time.Second
)

// peerSet is what validation keeps of the peers to check advertisements.
type peerSet struct {
	names names
	// ibgp tells, by name, whether a peer is in our AS (asn == myASN):
	// only such a peer is sent LOCAL_PREF.
	ibgp    map[string]bool
	anyIBGP bool
}

// peers checks the BGP peers. Peers may share an address and port only
// when their nodeSelectors can select different nodes (see share). No pool
// may hold a peer's address, source address or router ID: Herald would
// hand it to a Service.
func (v *validator) peers(raw []rawPeer, bfdProfiles names, pools poolSet, cfg *Config) peerSet {
	set := peerSet{names: names{}, ibgp: map[string]bool{}}
	endpoints := endpointUse{count: map[endpoint]int{}, first: map[endpointNodes]string{}}
	var holders *entryIndex // built for the first peer that has an address
	outsidePools := func(at string, a netip.Addr) {
		if !a.IsValid() || len(pools.entries) == 0 {
			return
		}
		if holders == nil {
			x := newEntryIndex(pools.entries)
			holders = &x
		}
		if e := holders.find(a); e != nil {
			v.probs.addf(e.at(), "%s holds %s (%s); a pool must not hold a BGP peer's address, sourceAddress or routerID",
				quote(e.text), at, a)
		}
	}
	for _, rp := range raw {
		if v.probs.full() {
			break
		}
		at := rp.at
		v.name(at, rp.Name, set.names)
		p := BGPPeer{
			Name:            rp.Name,
			EBGPMultihop:    rp.EBGPMultihop,
			GracefulRestart: rp.GracefulRestart,
			NodeSelector:    v.selector(at.sub("nodeSelector"), rp.NodeSelector),
		}
		if rp.Address == "" {
			v.probs.addf(at.field("address"), "required")
		} else {
			p.Address = v.unicast(at.field("address"), rp.Address)
		}
		port, portOK := v.integer(at.field("port"), rp.Port, DefaultBGPPort, 1, math.MaxUint16)
		p.Port = uint16(port)
		asnOK, myASNOK := false, false
		p.ASN, asnOK = v.asn(at.field("asn"), rp.ASN)
		p.MyASN, myASNOK = v.asn(at.field("myASN"), rp.MyASN)
		if _, dup := set.ibgp[rp.Name]; !dup && asnOK && myASNOK {
			set.ibgp[rp.Name] = p.ASN == p.MyASN
			set.anyIBGP = set.anyIBGP || p.ASN == p.MyASN
		}
		if rp.RouterID != "" {
			p.RouterID = v.routerID(at.field("routerID"), rp.RouterID)
		}
		if rp.SourceAddress != "" {
			p.SourceAddress = v.unicast(at.field("sourceAddress"), rp.SourceAddress)
			if p.Address.IsValid() && p.SourceAddress.IsValid() && p.Address.Is4() != p.SourceAddress.Is4() {
				v.probs.addf(at.field("sourceAddress"), "%s is not of the family of address %s", p.SourceAddress, p.Address)
			}
		}
		outsidePools(at.field("address"), p.Address)
		outsidePools(at.field("sourceAddress"), p.SourceAddress)
		outsidePools(at.field("routerID"), p.RouterID)
		p.HoldTime, p.KeepaliveTime = v.timers(at, rp)
		if d, ok := v.duration(at.field("connectTime"), rp.ConnectTime, DefaultConnectTime); ok && d == 0 {
			v.probs.addf(at.field("connectTime"), "must be more than 0")
		} else {
			p.ConnectTime = d
		}
		if rp.PasswordSecret != nil {
			p.PasswordSecret = v.secretRef(at.sub("passwordSecret"), *rp.PasswordSecret)
		}
		if rp.BFDProfile != "" {
			if _, ok := bfdProfiles[rp.BFDProfile]; !ok {
				v.probs.addf(at.field("bfdProfile"), "%s is not defined in bfdProfiles", quote(rp.BFDProfile))
			}
			p.BFDProfile = rp.BFDProfile
		}
		if p.Address.IsValid() && portOK {
			v.share(at, &p, endpoints)
		}
		cfg.BGPPeers = append(cfg.BGPPeers, p)
	}
	return set
}

// endpoint is the address and port of a peer.
type endpoint struct {
	addr netip.Addr
	port uint16
}

// endpointUse is what share keeps of the peers before: how many at each
// endpoint, and the first at each endpoint with each node selector.
type endpointUse struct {
	count map[endpoint]int
	first map[endpointNodes]string // its place
}

type endpointNodes struct {
	endpoint
	nodes string // the selector's String()
}

// share ranks peer p, at place at, among the peers before it at its
// address and port. Several peers at one address are one per rack, at an
// anycast gateway that each rack reaches with its own AS numbers; a node
// that two of them select peers with the first (PeersFor). Only an overlap
// certain from the document alone is refused: two peers that both select
// every node, or have the same selector. Whether other selectors overlap
// depends on the nodes' labels; the speakers report it when they do.
func (v *validator) share(at place, p *BGPPeer, use endpointUse) {
	e := endpoint{p.Address, p.Port}
	p.Rank = use.count[e]
	use.count[e]++
	if p.NodeSelector == nil {
		return // not valid, and reported
	}
	k := endpointNodes{e, p.NodeSelector.String()}
	first, dup := use.first[k]
	if !dup {
		use.first[k] = at.path
		return
	}
	nodes := "every node"
	if k.nodes != "" {
		nodes = "nodeSelector " + quote(k.nodes)
	}
	v.probs.addf(at.field("address"), "%s port %d is already the peer of %s for the same nodes (%s); peers may share an address and port only when their nodeSelectors select different nodes, as one peer per rack",
		p.Address, p.Port, first, nodes)
}

// routerID reads a BGP identifier: RFC 4271 makes it a non-zero 32-bit
// number, written as an IPv4 address.
func (v *validator) routerID(at, s string) netip.Addr {
	id, err := parseAddr(s)
	switch {
	case err != nil:
		v.probs.addf(at, "%s: %w", quote(s), err)
	case !id.Is4() || id.IsUnspecified():
		v.probs.addf(at, "%s: must be a non-zero IPv4 address", id)
	default:
		return id
	}
	return netip.Addr{}
}

// secretRef checks a reference to a key of a Secret.
func (v *validator) secretRef(at place, s rawSecretRef) *SecretRef {
	if s.Name == "" {
		v.probs.addf(at.field("name"), "required")
	} else if len(s.Name) > validation.DNS1123SubdomainMaxLength || len(validation.IsDNS1123Subdomain(s.Name)) > 0 {
		v.probs.addf(at.field("name"), "%s: not a Secret name (a DNS subdomain: at most 253 characters, lowercase letters, digits, '-' and '.')", quote(s.Name))
	}
	if s.Key == "" {
		v.probs.addf(at.field("key"), "required")
	} else if len(s.Key) > validation.DNS1123SubdomainMaxLength || len(validation.IsConfigMapKey(s.Key)) > 0 {
		v.probs.addf(at.field("key"), "%s: not a Secret key (at most 253 characters: letters, digits, '-', '_' and '.')", quote(s.Key))
	}
	return &SecretRef{Name: s.Name, Key: s.Key}
}

var broadcast4 = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// unicast reads the address of a BGP speaker.
func (v *validator) unicast(at, s string) netip.Addr {
	a, err := parseAddr(s)
	switch {
	case err != nil:
		v.probs.addf(at, "%s: %w", quote(s), err)
	case a.IsUnspecified() || a.IsMulticast() || a == broadcast4:
		v.probs.addf(at, "%s: not a unicast address", a)
	default:
		return a
	}
	return netip.Addr{}
}

// reservedASNs are the AS numbers no BGP speaker may use, and why.
var reservedASNs = map[int64]string{
	0:          "AS 0 is reserved (RFC 7607)",
	23456:      "AS 23456 is AS_TRANS, which stands in for 4-byte AS numbers towards old speakers (RFC 6793)",
	65535:      "AS 65535 is reserved (RFC 7300)",
	4294967295: "AS 4294967295 is reserved (RFC 7300)",
}

// asn reads a required AS number and reports whether it is usable.
func (v *validator) asn(at string, n *int64) (uint32, bool) {
	if n == nil {
		v.probs.addf(at, "required")
		return 0, false
	}
	if why, ok := reservedASNs[*n]; ok {
		v.probs.addf(at, "%d: %s; use your network's AS number", *n, why)
		return 0, false
	}
	asn, ok := v.integer(at, n, 0, 1, math.MaxUint32-1)
	return uint32(asn), ok
}

// timers reads a peer's hold and keepalive times. BGP carries both in
// whole seconds; the default keepalive is a third of the hold time,
// rounded down to whole seconds and at least 1s.
func (v *validator) timers(at place, rp rawPeer) (hold, keepalive time.Duration) {
	hf, kf := at.field("holdTime"), at.field("keepaliveTime")
	hold, holdOK := v.duration(hf, rp.HoldTime, DefaultHoldTime)
	if holdOK && hold != 0 {
		switch {
		case hold < minHoldTime || hold > maxHoldTime:
			v.probs.addf(hf, "%s: must be 0 or %s", quote(*rp.HoldTime), between(minHoldTime, maxHoldTime))
			holdOK = false
		case hold%time.Second != 0:
			v.probs.addf(hf, "%s: must be whole seconds (BGP carries seconds)", quote(*rp.HoldTime))
			holdOK = false
		}
	}
	if rp.KeepaliveTime == nil {
		return hold, defaultKeepalive(hold)
	}
	keepalive, ok := v.duration(kf, rp.KeepaliveTime, 0)
	text := quote(*rp.KeepaliveTime)
	switch {
	case !ok:
	case keepalive%time.Second != 0:
		v.probs.addf(kf, "%s: must be whole seconds (BGP carries seconds)", text)
	case !holdOK:
	case hold == 0 && keepalive != 0:
		v.probs.addf(kf, "%s: must be 0 when holdTime is 0 (no keepalives without a hold timer)", text)
	case hold != 0 && (keepalive == 0 || keepalive >= hold):
		v.probs.addf(kf, "%s: must be more than 0 and less than holdTime (%s)", text, short(hold))
	}
	return hold, keepalive
}

// defaultKeepalive is a third of the hold time in whole seconds, at least
// 1s; 0 when the hold time is 0 (no keepalives).
func defaultKeepalive(hold time.Duration) time.Duration {
	if hold == 0 {
		return 0
	}
	return max(hold/3/time.Second*time.Second, time.Second)
}
