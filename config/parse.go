package config

import (
	"fmt"
	"time"
)

// Defaults filled in by Parse for fields a document leaves out.
const (
	DefaultBGPPort          = 179
	DefaultHoldTime         = 90 * time.Second // RFC 4271 suggests 90s; keepalive defaults to a third of it
	DefaultConnectTime      = 5 * time.Second
	DefaultBFDInterval      = 300 * time.Millisecond // receive and transmit
	DefaultDetectMultiplier = 3
)

// Parse reads Herald's configuration document (YAML, camelCase keys) into a
// validated model with every default filled in and every slice sorted by
// name. It is strict: an unknown field is an error. On failure it returns
// every problem found, joined with errors.Join, each starting with the place
// it concerns, as in
//
//	pools[2].addresses[0]: "10.0.0.5-10.0.0.1": range start after end
//
// Defaults: autoAssign true; port 179; holdTime 90s; keepaliveTime a third
// of holdTime in whole seconds, at least 1s (0 when holdTime is 0);
// connectTime 5s; aggregationLength 32 and aggregationLengthV6 128; an
// absent selector selects everything; BFD intervals 300ms and
// detectMultiplier 3. Addresses listed twice in one pool, or overlapping
// there, are merged; an address in two pools is an error.
//
// An empty document (nothing, only comments, or null) is an error: a
// configuration is only replaced by one that says what it wants, and
// "pools: []" says "no pools". Config.Warnings lists what is valid but
// likely not meant (localPref towards eBGP peers only).
//
// Parse takes time linear in the size of b, and refuses a document of
// more than MaxDocumentSize bytes or 32768 values; a message quotes at
// most 40 characters of what the user wrote.
func Parse(b []byte) (*Config, error) {
	probs := newProblems()
	var doc document
	if !decodeDocument(b, &doc, probs) {
		return nil, probs.err()
	}
	doc.locate()
	cfg := validate(&doc, probs)
	if err := probs.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// document is Herald's configuration as written, before validation. Fields
// whose absence means "default" are pointers; durations stay text until
// validation so that their errors name their place.
type document struct {
	Pools             []rawPool             `yaml:"pools,omitempty"`
	L2Advertisements  []rawL2Advertisement  `yaml:"l2Advertisements,omitempty"`
	BGPPeers          []rawPeer             `yaml:"bgpPeers,omitempty"`
	BFDProfiles       []rawBFDProfile       `yaml:"bfdProfiles,omitempty"`
	Communities       []rawCommunity        `yaml:"communities,omitempty"`
	BGPAdvertisements []rawBGPAdvertisement `yaml:"bgpAdvertisements,omitempty"`
}

// locate gives every element of a Herald document its place.
func (d *document) locate() {
	for i := range d.Pools {
		d.Pools[i].at = place{path: fmt.Sprintf("pools[%d]", i)}
	}
	for i := range d.L2Advertisements {
		d.L2Advertisements[i].at = place{path: fmt.Sprintf("l2Advertisements[%d]", i)}
	}
	for i := range d.BGPPeers {
		d.BGPPeers[i].at = place{path: fmt.Sprintf("bgpPeers[%d]", i)}
	}
	for i := range d.BFDProfiles {
		d.BFDProfiles[i].at = place{path: fmt.Sprintf("bfdProfiles[%d]", i)}
	}
	for i := range d.Communities {
		d.Communities[i].at = place{path: fmt.Sprintf("communities[%d]", i)}
	}
	for i := range d.BGPAdvertisements {
		d.BGPAdvertisements[i].at = place{path: fmt.Sprintf("bgpAdvertisements[%d]", i)}
	}
}

type rawPool struct {
	Name          string         `yaml:"name,omitempty"`
	Addresses     []string       `yaml:"addresses,omitempty"`
	AutoAssign    *bool          `yaml:"autoAssign,omitempty"`
	AvoidBuggyIPs bool           `yaml:"avoidBuggyIPs,omitempty"`
	Allocation    *rawAllocation `yaml:"allocation,omitempty"`
	at            place
}

type rawAllocation struct {
	Namespaces        []string     `yaml:"namespaces,omitempty"`
	NamespaceSelector *rawSelector `yaml:"namespaceSelector,omitempty"`
	ServiceSelector   *rawSelector `yaml:"serviceSelector,omitempty"`
	Priority          int64        `yaml:"priority,omitempty"`
}

// rawSelector is a Kubernetes label selector as written.
type rawSelector struct {
	MatchLabels      map[string]string `yaml:"matchLabels,omitempty"`
	MatchExpressions []rawRequirement  `yaml:"matchExpressions,omitempty"`
}

type rawRequirement struct {
	Key      string   `yaml:"key,omitempty"`
	Operator string   `yaml:"operator,omitempty"`
	Values   []string `yaml:"values,omitempty"`
}

type rawL2Advertisement struct {
	Name         string       `yaml:"name,omitempty"`
	Pools        []string     `yaml:"pools,omitempty"`
	NodeSelector *rawSelector `yaml:"nodeSelector,omitempty"`
	Interfaces   []string     `yaml:"interfaces,omitempty"`
	at           place
}

type rawPeer struct {
	Name            string        `yaml:"name,omitempty"`
	Address         string        `yaml:"address,omitempty"`
	Port            *int64        `yaml:"port,omitempty"`
	ASN             *int64        `yaml:"asn,omitempty"`
	MyASN           *int64        `yaml:"myASN,omitempty"`
	RouterID        string        `yaml:"routerID,omitempty"`
	SourceAddress   string        `yaml:"sourceAddress,omitempty"`
	HoldTime        *string       `yaml:"holdTime,omitempty"`
	KeepaliveTime   *string       `yaml:"keepaliveTime,omitempty"`
	ConnectTime     *string       `yaml:"connectTime,omitempty"`
	EBGPMultihop    bool          `yaml:"ebgpMultihop,omitempty"`
	PasswordSecret  *rawSecretRef `yaml:"passwordSecret,omitempty"`
	BFDProfile      string        `yaml:"bfdProfile,omitempty"`
	GracefulRestart bool          `yaml:"gracefulRestart,omitempty"`
	NodeSelector    *rawSelector  `yaml:"nodeSelector,omitempty"`
	at              place
}

type rawSecretRef struct {
	Name string `yaml:"name,omitempty"`
	Key  string `yaml:"key,omitempty"`
}

type rawBFDProfile struct {
	Name             string  `yaml:"name,omitempty"`
	ReceiveInterval  *string `yaml:"receiveInterval,omitempty"`
	TransmitInterval *string `yaml:"transmitInterval,omitempty"`
	DetectMultiplier *int64  `yaml:"detectMultiplier,omitempty"`
	at               place
}

type rawCommunity struct {
	Name  string `yaml:"name,omitempty"`
	Value string `yaml:"value,omitempty"`
	at    place
}

type rawBGPAdvertisement struct {
	Name                string       `yaml:"name,omitempty"`
	Pools               []string     `yaml:"pools,omitempty"`
	Peers               []string     `yaml:"peers,omitempty"`
	AggregationLength   *int64       `yaml:"aggregationLength,omitempty"`
	AggregationLengthV6 *int64       `yaml:"aggregationLengthV6,omitempty"`
	LocalPref           *int64       `yaml:"localPref,omitempty"`
	Communities         []string     `yaml:"communities,omitempty"`
	NodeSelector        *rawSelector `yaml:"nodeSelector,omitempty"`
	at                  place
}
