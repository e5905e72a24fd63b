package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// ParseMetalLB reads the configuration of MetalLB v0.12 and earlier (the
// "config" key of its ConfigMap: peers, bgp-communities, bfd-profiles and
// address-pools, in kebab-case) into Herald's model, so that MetalLB users
// can migrate. The document is converted to Herald's sections and then
// checked exactly as Parse checks, with problems named in the MetalLB
// document's own words (peers[0].peer-asn).
//
// The conversion:
//   - a pool of protocol layer2 gets an L2 advertisement named after the pool;
//   - a pool of protocol bgp gets one BGP advertisement per bgp-advertisements
//     entry, named "<pool>-<index>" ("<pool>-0" for the default advertisement
//     made when the pool lists none), sent to every peer;
//   - a peer is named "peer-<address>" with '.' and ':' written as '-' (and a
//     trailing "::" as "--0"), plus "-p<port>" for a port other than 179;
//     "peer-<index>" when the address does not parse;
//   - bgp-communities keep their names; BFD intervals are milliseconds.
//
// What Herald cannot carry becomes a warning naming its place and what to
// do: a plaintext password (Herald reads passwords only from a Secret), more
// than one node selector on a peer (the first is kept), BFD echo mode,
// passive mode and minimum TTL, bgp-advertisements on a layer2 pool, and a
// CIDR with host bits set (taken as its network). The warnings returned are
// Config.Warnings, with Parse's own after the conversion's; they are
// returned also when there are errors.
func ParseMetalLB(b []byte) (*Config, []string, error) {
	probs := newProblems()
	var ml metalLBDocument
	if !decodeDocument(b, &ml, probs) {
		return nil, nil, probs.err()
	}
	doc := ml.convert(probs)
	cfg := validate(doc, probs)
	if err := probs.err(); err != nil {
		return nil, probs.warningList(), err
	}
	return cfg, cfg.Warnings, nil
}

// metalLBDocument is MetalLB's legacy configuration as written.
type metalLBDocument struct {
	Peers          []metalLBPeer       `yaml:"peers"`
	BGPCommunities map[string]string   `yaml:"bgp-communities"`
	BFDProfiles    []metalLBBFDProfile `yaml:"bfd-profiles"`
	AddressPools   []metalLBPool       `yaml:"address-pools"`
}

type metalLBPeer struct {
	PeerAddress   string            `yaml:"peer-address"`
	PeerASN       *int64            `yaml:"peer-asn"`
	MyASN         *int64            `yaml:"my-asn"`
	PeerPort      *int64            `yaml:"peer-port"`
	HoldTime      *string           `yaml:"hold-time"`
	KeepaliveTime *string           `yaml:"keepalive-time"`
	RouterID      string            `yaml:"router-id"`
	SourceAddress string            `yaml:"source-address"`
	Password      string            `yaml:"password"`
	NodeSelectors []metalLBSelector `yaml:"node-selectors"`
	BFDProfile    string            `yaml:"bfd-profile"`
	EBGPMultihop  bool              `yaml:"ebgp-multihop"`
}

type metalLBSelector struct {
	MatchLabels      map[string]string `yaml:"match-labels"`
	MatchExpressions []rawRequirement  `yaml:"match-expressions"`
}

type metalLBBFDProfile struct {
	Name             string `yaml:"name"`
	ReceiveInterval  *int64 `yaml:"receive-interval"`
	TransmitInterval *int64 `yaml:"transmit-interval"`
	DetectMultiplier *int64 `yaml:"detect-multiplier"`
	EchoInterval     *int64 `yaml:"echo-interval"`
	EchoMode         bool   `yaml:"echo-mode"`
	PassiveMode      bool   `yaml:"passive-mode"`
	MinimumTTL       *int64 `yaml:"minimum-ttl"`
}

type metalLBPool struct {
	Name              string                 `yaml:"name"`
	Protocol          string                 `yaml:"protocol"`
	Addresses         []string               `yaml:"addresses"`
	AutoAssign        *bool                  `yaml:"auto-assign"`
	AvoidBuggyIPs     bool                   `yaml:"avoid-buggy-ips"`
	BGPAdvertisements []metalLBAdvertisement `yaml:"bgp-advertisements"`
}

type metalLBAdvertisement struct {
	AggregationLength   *int64   `yaml:"aggregation-length"`
	AggregationLengthV6 *int64   `yaml:"aggregation-length-v6"`
	LocalPref           *int64   `yaml:"localpref"`
	Communities         []string `yaml:"communities"`
}

// Keys of the MetalLB document for Herald's fields, so that problems are
// reported where the user wrote them. "" marks a field MetalLB has no key for.
var (
	metalLBPeerKeys = map[string]string{
		"name": "", "address": "peer-address", "port": "peer-port", "asn": "peer-asn",
		"myASN": "my-asn", "routerID": "router-id", "sourceAddress": "source-address",
		"holdTime": "hold-time", "keepaliveTime": "keepalive-time", "connectTime": "",
		"bfdProfile": "bfd-profile", "ebgpMultihop": "ebgp-multihop",
		"nodeSelector": "node-selectors[0]", "matchLabels": "match-labels",
		"matchExpressions": "match-expressions",
	}
	metalLBPoolKeys = map[string]string{"autoAssign": "auto-assign", "avoidBuggyIPs": "avoid-buggy-ips"}
	metalLBL2Keys   = map[string]string{"pools": ""}
	metalLBAdvKeys  = map[string]string{
		"name": "", "pools": "", "peers": "",
		"aggregationLength": "aggregation-length", "aggregationLengthV6": "aggregation-length-v6",
		"localPref": "localpref",
	}
	metalLBBFDKeys = map[string]string{
		"receiveInterval": "receive-interval", "transmitInterval": "transmit-interval",
		"detectMultiplier": "detect-multiplier",
	}
	metalLBCommunityKeys = map[string]string{"name": "", "value": ""}
)

// convert builds the Herald document equivalent to ml.
func (ml *metalLBDocument) convert(probs *problems) *document {
	doc := &document{}
	for i, p := range ml.Peers {
		doc.BGPPeers = append(doc.BGPPeers, p.convert(fmt.Sprintf("peers[%d]", i), i, probs))
	}
	for _, name := range sortedKeys(ml.BGPCommunities) {
		doc.Communities = append(doc.Communities, rawCommunity{
			Name:  name,
			Value: ml.BGPCommunities[name],
			at:    place{path: join("bgp-communities", name), keys: metalLBCommunityKeys},
		})
	}
	for i, b := range ml.BFDProfiles {
		doc.BFDProfiles = append(doc.BFDProfiles, b.convert(fmt.Sprintf("bfd-profiles[%d]", i), probs))
	}
	for i, p := range ml.AddressPools {
		p.convert(doc, fmt.Sprintf("address-pools[%d]", i), probs)
	}
	return doc
}

func (p metalLBPeer) convert(at string, i int, probs *problems) rawPeer {
	rp := rawPeer{
		Name:          peerName(p.PeerAddress, p.PeerPort, i),
		Address:       p.PeerAddress,
		Port:          p.PeerPort,
		ASN:           p.PeerASN,
		MyASN:         p.MyASN,
		RouterID:      p.RouterID,
		SourceAddress: p.SourceAddress,
		HoldTime:      p.HoldTime,
		KeepaliveTime: p.KeepaliveTime,
		EBGPMultihop:  p.EBGPMultihop,
		BFDProfile:    p.BFDProfile,
		at:            place{path: at, keys: metalLBPeerKeys},
	}
	if p.Password != "" {
		probs.warn(at+".password", "not carried over: Herald takes BGP passwords only from a Secret; "+
			"put it in a Secret in herald-system and set passwordSecret on bgpPeer %s", quote(rp.Name))
	}
	if len(p.NodeSelectors) > 0 {
		s := p.NodeSelectors[0]
		rp.NodeSelector = &rawSelector{MatchLabels: s.MatchLabels, MatchExpressions: s.MatchExpressions}
	}
	if n := len(p.NodeSelectors); n > 1 {
		probs.warn(at+".node-selectors", "only the first of %d selectors is kept (Herald takes one per peer), "+
			"so nodes that only the others select no longer peer; write one selector that says both", n)
	}
	return rp
}

// peerName makes a stable name from a MetalLB peer's address and port.
func peerName(addr string, port *int64, i int) string {
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" {
		return fmt.Sprintf("peer-%d", i)
	}
	s := a.String()
	if strings.HasSuffix(s, "::") {
		s += "0" // "2001:db8::" would end the name with '-'
	}
	name := "peer-" + strings.NewReplacer(".", "-", ":", "-").Replace(s)
	if port != nil && *port != DefaultBGPPort {
		name += fmt.Sprintf("-p%d", *port)
	}
	return name
}

func (b metalLBBFDProfile) convert(at string, probs *problems) rawBFDProfile {
	ms := func(n *int64) *string {
		if n == nil {
			return nil
		}
		s := fmt.Sprintf("%dms", *n)
		return &s
	}
	if b.EchoMode {
		probs.warn(at+".echo-mode", "ignored: Herald's BFD sends no echo packets; remove it")
	}
	if b.EchoInterval != nil {
		probs.warn(at+".echo-interval", "ignored: Herald's BFD sends no echo packets; remove it")
	}
	if b.PassiveMode {
		probs.warn(at+".passive-mode", "ignored: Herald's BFD sessions are always active; remove it")
	}
	if b.MinimumTTL != nil {
		probs.warn(at+".minimum-ttl", "ignored: Herald does not check the TTL of BFD packets; remove it")
	}
	return rawBFDProfile{
		Name:             b.Name,
		ReceiveInterval:  ms(b.ReceiveInterval),
		TransmitInterval: ms(b.TransmitInterval),
		DetectMultiplier: b.DetectMultiplier,
		at:               place{path: at, keys: metalLBBFDKeys},
	}
}

// convert adds the pool and its advertisements to doc.
func (p metalLBPool) convert(doc *document, at string, probs *problems) {
	addrs := make([]string, len(p.Addresses))
	for i, s := range p.Addresses {
		addrs[i] = s
		// MetalLB took a CIDR with host bits set as its whole network.
		if pfx, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil && pfx.Masked() != pfx {
			addrs[i] = pfx.Masked().String()
			probs.warn(fmt.Sprintf("%s.addresses[%d]", at, i), "%s is taken as its network %s; write it so", quote(s), pfx.Masked())
		}
	}
	doc.Pools = append(doc.Pools, rawPool{
		Name:          p.Name,
		Addresses:     addrs,
		AutoAssign:    p.AutoAssign,
		AvoidBuggyIPs: p.AvoidBuggyIPs,
		at:            place{path: at, keys: metalLBPoolKeys},
	})
	switch p.Protocol {
	case "layer2":
		doc.L2Advertisements = append(doc.L2Advertisements, rawL2Advertisement{
			Name:  p.Name,
			Pools: []string{p.Name},
			at:    place{path: at, keys: metalLBL2Keys},
		})
		if len(p.BGPAdvertisements) > 0 {
			probs.warn(at+".bgp-advertisements", "ignored: the pool's protocol is layer2; remove them")
		}
	case "bgp":
		if len(p.BGPAdvertisements) == 0 {
			doc.BGPAdvertisements = append(doc.BGPAdvertisements, rawBGPAdvertisement{
				Name:  p.Name + "-0",
				Pools: []string{p.Name},
				at:    place{path: at, keys: map[string]string{"pools": ""}},
			})
		}
		for i, a := range p.BGPAdvertisements {
			doc.BGPAdvertisements = append(doc.BGPAdvertisements, rawBGPAdvertisement{
				Name:                fmt.Sprintf("%s-%d", p.Name, i),
				Pools:               []string{p.Name},
				AggregationLength:   a.AggregationLength,
				AggregationLengthV6: a.AggregationLengthV6,
				LocalPref:           a.LocalPref,
				Communities:         a.Communities,
				at:                  place{path: fmt.Sprintf("%s.bgp-advertisements[%d]", at, i), keys: metalLBAdvKeys},
			})
		}
	case "":
		probs.addf(at+".protocol", "required: layer2 or bgp")
	default:
		probs.addf(at+".protocol", "%s: want layer2 or bgp", quote(p.Protocol))
	}
}
