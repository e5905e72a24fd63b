package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// MetalLB's custom resources as written (the spec fields the migration
// reads; the field lists name every field it knows).

type mlSelector struct {
	MatchLabels      map[string]string `yaml:"matchLabels"`
	MatchExpressions []rawRequirement  `yaml:"matchExpressions"`
}

func (s mlSelector) raw() *rawSelector {
	return &rawSelector{MatchLabels: s.MatchLabels, MatchExpressions: s.MatchExpressions}
}

type mlPool struct {
	Addresses         []string `yaml:"addresses"`
	AutoAssign        *bool    `yaml:"autoAssign"`
	AvoidBuggyIPs     bool     `yaml:"avoidBuggyIPs"`
	ServiceAllocation *struct {
		Priority           int64        `yaml:"priority"`
		Namespaces         []string     `yaml:"namespaces"`
		NamespaceSelectors []mlSelector `yaml:"namespaceSelectors"`
		ServiceSelectors   []mlSelector `yaml:"serviceSelectors"`
	} `yaml:"serviceAllocation"`
	name   string
	labels map[string]string
}

var mlPoolFields = []string{"addresses", "autoAssign", "avoidBuggyIPs", "serviceAllocation"}

type mlL2Adv struct {
	IPAddressPools         []string     `yaml:"ipAddressPools"`
	IPAddressPoolSelectors []mlSelector `yaml:"ipAddressPoolSelectors"`
	NodeSelectors          []mlSelector `yaml:"nodeSelectors"`
	Interfaces             []string     `yaml:"interfaces"`
	name                   string
}

var mlL2Fields = []string{"ipAddressPools", "ipAddressPoolSelectors", "nodeSelectors", "interfaces"}

type mlBGPAdv struct {
	AggregationLength      *int64       `yaml:"aggregationLength"`
	AggregationLengthV6    *int64       `yaml:"aggregationLengthV6"`
	LocalPref              *int64       `yaml:"localPref"`
	Communities            []string     `yaml:"communities"`
	IPAddressPools         []string     `yaml:"ipAddressPools"`
	IPAddressPoolSelectors []mlSelector `yaml:"ipAddressPoolSelectors"`
	NodeSelectors          []mlSelector `yaml:"nodeSelectors"`
	Peers                  []string     `yaml:"peers"`
	name                   string
}

var mlBGPAdvFields = []string{"aggregationLength", "aggregationLengthV6", "localPref", "communities",
	"ipAddressPools", "ipAddressPoolSelectors", "nodeSelectors", "peers"}

type mlPeer struct {
	MyASN          *int64       `yaml:"myASN"`
	PeerASN        *int64       `yaml:"peerASN"`
	PeerAddress    string       `yaml:"peerAddress"`
	SourceAddress  string       `yaml:"sourceAddress"`
	PeerPort       *int64       `yaml:"peerPort"`
	HoldTime       *string      `yaml:"holdTime"`
	KeepaliveTime  *string      `yaml:"keepaliveTime"`
	ConnectTime    *string      `yaml:"connectTime"`
	RouterID       string       `yaml:"routerID"`
	NodeSelectors  []mlSelector `yaml:"nodeSelectors"`
	Password       string       `yaml:"password"`
	PasswordSecret *struct {
		Name string `yaml:"name"`
	} `yaml:"passwordSecret"`
	BFDProfile            string `yaml:"bfdProfile"`
	EBGPMultiHop          bool   `yaml:"ebgpMultiHop"`
	EnableGracefulRestart bool   `yaml:"enableGracefulRestart"`
	VRF                   string `yaml:"vrf"`
	DynamicASN            string `yaml:"dynamicASN"`
	Interface             string `yaml:"interface"`
	DisableMP             bool   `yaml:"disableMP"`
	name                  string
}

var mlPeerFields = []string{"myASN", "peerASN", "peerAddress", "sourceAddress", "peerPort", "holdTime",
	"keepaliveTime", "connectTime", "routerID", "nodeSelectors", "password", "passwordSecret", "bfdProfile",
	"ebgpMultiHop", "enableGracefulRestart", "vrf", "dynamicASN", "interface", "disableMP"}

type mlBFD struct {
	ReceiveInterval  *int64 `yaml:"receiveInterval"`
	TransmitInterval *int64 `yaml:"transmitInterval"`
	DetectMultiplier *int64 `yaml:"detectMultiplier"`
	EchoInterval     *int64 `yaml:"echoInterval"`
	EchoMode         bool   `yaml:"echoMode"`
	PassiveMode      bool   `yaml:"passiveMode"`
	MinimumTTL       *int64 `yaml:"minimumTtl"`
	name             string
}

var mlBFDFields = []string{"receiveInterval", "transmitInterval", "detectMultiplier", "echoInterval",
	"echoMode", "passiveMode", "minimumTtl"}

type mlCommunity struct {
	Communities []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"communities"`
}

// convert turns the collected resources into Herald's sections.
func (m *migrator) convert() {
	for _, p := range m.pools {
		m.pool(p)
	}
	for _, a := range m.l2 {
		at := "L2Advertisement/" + a.name
		adv := rawL2Advertisement{Name: a.name, Pools: m.poolsOf(at, a.IPAddressPools, a.IPAddressPoolSelectors), Interfaces: a.Interfaces}
		adv.NodeSelector = m.firstSelector(at+".spec.nodeSelectors", a.NodeSelectors, "nodes")
		m.doc.L2Advertisements = append(m.doc.L2Advertisements, adv)
	}
	for _, a := range m.bgpAdv {
		at := "BGPAdvertisement/" + a.name
		adv := rawBGPAdvertisement{Name: a.name, Pools: m.poolsOf(at, a.IPAddressPools, a.IPAddressPoolSelectors),
			Peers: a.Peers, AggregationLength: a.AggregationLength, AggregationLengthV6: a.AggregationLengthV6,
			LocalPref: a.LocalPref, Communities: a.Communities}
		adv.NodeSelector = m.firstSelector(at+".spec.nodeSelectors", a.NodeSelectors, "nodes")
		m.doc.BGPAdvertisements = append(m.doc.BGPAdvertisements, adv)
	}
	for _, p := range m.peers {
		m.peer(p)
	}
	for _, b := range m.bfd {
		m.bfdProfile(b)
	}
}

func (m *migrator) pool(p mlPool) {
	at := "IPAddressPool/" + p.name
	rp := rawPool{Name: p.name, AutoAssign: p.AutoAssign, AvoidBuggyIPs: p.AvoidBuggyIPs}
	for _, s := range p.Addresses {
		if pfx, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil && pfx.Masked() != pfx {
			m.skip(at+".spec.addresses", "%s is taken as its network %s, as MetalLB took it", quote(s), pfx.Masked())
			s = pfx.Masked().String()
		}
		rp.Addresses = append(rp.Addresses, s)
	}
	if a := p.ServiceAllocation; a != nil {
		rp.Allocation = &rawAllocation{Priority: a.Priority, Namespaces: a.Namespaces}
		if len(a.Namespaces) > 0 && len(a.NamespaceSelectors) > 0 {
			m.skip(at+".spec.serviceAllocation", "namespaces and namespaceSelectors are both kept, and Herald serves a namespace only when it is listed and selected; check that this is what you want")
		}
		rp.Allocation.NamespaceSelector = m.firstSelector(at+".spec.serviceAllocation.namespaceSelectors", a.NamespaceSelectors, "namespaces")
		rp.Allocation.ServiceSelector = m.firstSelector(at+".spec.serviceAllocation.serviceSelectors", a.ServiceSelectors, "Services")
	}
	m.doc.Pools = append(m.doc.Pools, rp)
}

// firstSelector keeps the first of MetalLB's selectors (any of which
// selects) and says so when there are more: Herald takes one.
func (m *migrator) firstSelector(at string, sels []mlSelector, what string) *rawSelector {
	if len(sels) == 0 {
		return nil
	}
	if len(sels) > 1 {
		m.skip(at, "only the first of %d selectors is kept (Herald takes one): %s only the others select are no longer selected; write one selector that says both", len(sels), what)
	}
	return sels[0].raw()
}

// poolsOf names the pools an advertisement covers: those it names, those
// its selectors match by the pools' labels, or every pool when it says
// neither (MetalLB's rule).
func (m *migrator) poolsOf(at string, names []string, sels []mlSelector) []string {
	out := append([]string{}, names...)
	for _, s := range sels {
		if len(s.MatchExpressions) > 0 {
			m.skip(at+".spec.ipAddressPoolSelectors", "matchExpressions are not resolved; the pools they select must be listed by hand")
		}
		for _, p := range m.pools {
			if matchesLabels(s.MatchLabels, p.labels) && len(s.MatchExpressions) == 0 && !slices.Contains(out, p.name) {
				out = append(out, p.name)
			}
		}
	}
	if len(names) == 0 && len(sels) == 0 {
		for _, p := range m.pools {
			out = append(out, p.name)
		}
	}
	return out
}

func matchesLabels(want, have map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func (m *migrator) peer(p mlPeer) {
	at := "BGPPeer/" + p.name
	rp := rawPeer{Name: p.name, Address: p.PeerAddress, Port: p.PeerPort, ASN: p.PeerASN, MyASN: p.MyASN,
		RouterID: p.RouterID, SourceAddress: p.SourceAddress, HoldTime: p.HoldTime, KeepaliveTime: p.KeepaliveTime,
		ConnectTime: p.ConnectTime, EBGPMultihop: p.EBGPMultiHop, BFDProfile: p.BFDProfile, GracefulRestart: p.EnableGracefulRestart}
	rp.NodeSelector = m.firstSelector(at+".spec.nodeSelectors", p.NodeSelectors, "nodes")
	if p.Password != "" {
		m.skip(at+".spec.password", "Herald reads passwords only from a Secret: put it under key %s of Secret herald-bgp-passwords in herald-system and set passwordSecret: {name: herald-bgp-passwords, key: %s}", quote(p.name), quote(p.name))
	}
	if s := p.PasswordSecret; s != nil {
		rp.PasswordSecret = &rawSecretRef{Name: "herald-bgp-passwords", Key: p.name}
		m.skip(at+".spec.passwordSecret", "copy key \"password\" of Secret %s to key %s of Secret herald-bgp-passwords in herald-system (the one Secret the speaker may read)", quote(s.Name), quote(p.name))
	}
	for _, f := range []struct {
		set         bool
		field, what string
	}{
		{p.VRF != "", "vrf", "Herald peers from the default VRF only"},
		{p.DynamicASN != "", "dynamicASN", "Herald needs the peer's ASN; set asn"},
		{p.Interface != "", "interface", "Herald has no unnumbered BGP; set the peer's address"},
		{p.DisableMP, "disableMP", "Herald always negotiates multiprotocol BGP"},
	} {
		if f.set {
			m.skip(at+".spec."+f.field, "not carried over: %s", f.what)
		}
	}
	m.doc.BGPPeers = append(m.doc.BGPPeers, rp)
}

func (m *migrator) bfdProfile(b mlBFD) {
	at := "BFDProfile/" + b.name
	ms := func(n *int64) *string {
		if n == nil {
			return nil
		}
		s := fmt.Sprintf("%dms", *n)
		return &s
	}
	for _, f := range []struct {
		set   bool
		field string
	}{{b.EchoInterval != nil, "echoInterval"}, {b.EchoMode, "echoMode"}, {b.PassiveMode, "passiveMode"}, {b.MinimumTTL != nil, "minimumTtl"}} {
		if f.set {
			m.skip(at+".spec."+f.field, "not carried over: Herald's BFD sends no echo packets, is always active and does not check TTLs")
		}
	}
	m.doc.BFDProfiles = append(m.doc.BFDProfiles, rawBFDProfile{Name: b.name, ReceiveInterval: ms(b.ReceiveInterval),
		TransmitInterval: ms(b.TransmitInterval), DetectMultiplier: b.DetectMultiplier})
}
