// Package state is the per-node speaker state that speakers publish through
// the API: one SpeakerState object per node, in Herald's namespace, named
// after the node and written only by that node's speaker, only when what it
// says changes. The controller turns these objects into the Services'
// herald.dev/Announced conditions; kubectl herald status and explain read them.
//
// The objects are a custom resource (manifests/crd-speakerstates.yaml),
// read and written through the dynamic client, so this package has only
// plain types and their conversion.
package state

import (
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The custom resource's group, version, kind and resource.
const (
	Group    = "herald.dev"
	Version  = "v1alpha1"
	Kind     = "SpeakerState"
	Resource = "speakerstates"
)

// ConditionAnnounced is the Service condition the controller keeps from
// the SpeakerStates: which nodes announce the Service's addresses, and how.
const ConditionAnnounced = "herald.dev/Announced"

// Reasons of ConditionAnnounced (stable; users and alerts key on them).
const (
	ReasonAnnouncedL2  = "AnnouncedL2"
	ReasonAnnouncedBGP = "AnnouncedBGP"
	ReasonNotAnnounced = "NotAnnounced"
)

// Session states as published: the FSM's states other than Established
// are all Connecting (publishing each would write every few seconds while a
// peer is away).
const (
	SessionEstablished = "Established"
	SessionConnecting  = "Connecting"
)

// GVR names the resource for the dynamic client.
var GVR = schema.GroupVersionResource{Group: Group, Version: Version, Resource: Resource}

// SpeakerState is one node's speaker, as it last reported itself.
type SpeakerState struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Status            Status `json:"status"`
}

// Status is what a speaker reports. Every list is sorted, so that two
// reports of the same state are equal and nothing is written for them.
type Status struct {
	// Version of the speaker binary.
	Version string `json:"version,omitempty"`
	// Joined is true once the speaker has joined the other speakers
	// (memberlist) and decides among them.
	Joined bool `json:"joined"`
	// Isolated is true while the speaker has lost every other member
	// (it then answers for nothing in layer 2).
	Isolated bool `json:"isolated,omitempty"`
	// Members are the nodes this speaker sees alive, itself included.
	Members []string `json:"members,omitempty"`
	// Config is the hash of the configuration in force on this node, and
	// ConfigError the problem with the ConfigMap's current text, if any.
	Config      string `json:"config,omitempty"`
	ConfigError string `json:"configError,omitempty"`
	// L2 lists the addresses this node answers for (ARP/NDP).
	L2 []L2Address `json:"l2,omitempty"`
	// Sessions lists this node's BGP sessions.
	Sessions []Session `json:"sessions,omitempty"`
	// BGP lists the prefixes this node advertises.
	BGP []Route `json:"bgp,omitempty"`
	// DataPathDown says why this node announces nothing: kube-proxy's
	// health endpoint on it does not answer healthy ("" while it does).
	DataPathDown string `json:"dataPathDown,omitempty"`
	// MACs are this node's interface MACs: a conflict naming one of them is
	// no foreign device.
	MACs []string `json:"macs,omitempty"`
	// Conflicts lists the addresses this node owns or probed for which a
	// device that is no speaker answers.
	Conflicts []Conflict `json:"conflicts,omitempty"`
}

// Conflict is a device that is no speaker answering for an address.
type Conflict struct {
	Address string `json:"address"`
	MAC     string `json:"mac"`
	// Kind is how it showed: arp-reply, arp-request (gratuitous ARP or a
	// request sent from the address), neighbor-advertisement, dad, probe.
	Kind string `json:"kind"`
	// Announced tells whether Herald answers for the address (it was in
	// service when the device appeared: kept and defended) or not (the
	// device held it before Herald announced it).
	Announced bool        `json:"announced"`
	Since     metav1.Time `json:"since"`
}

// ConditionAddressConflict is the Service condition the controller keeps
// from the SpeakerStates' conflicts: a device that is no speaker answers
// for one of the Service's addresses.
const ConditionAddressConflict = "herald.dev/AddressConflict"

// Reasons of ConditionAddressConflict and of the Events about it.
const (
	ReasonAddressConflict = "AddressConflict"
	ReasonNoConflict      = "NoConflict"
	ReasonSplitBrain      = "SplitBrain"
)

// L2Address is one address answered for in layer 2.
type L2Address struct {
	Address    string   `json:"address"`
	Interfaces []string `json:"interfaces"`
	Services   []string `json:"services"` // namespace/name
}

// Session is one BGP session of the node.
type Session struct {
	Peer    string `json:"peer"` // the peer's name in the configuration
	Address string `json:"address"`
	ASN     uint32 `json:"asn"`
	// State is SessionEstablished or SessionConnecting, and Reason why the
	// session last went down, if known.
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Families are the unicast families the router offered in its last
	// OPEN ("ipv4-unicast", "ipv6-unicast"). A restarted speaker offers
	// that router just those: its graceful-restart End-of-RIB then names
	// no family the router did not negotiate.
	Families []string `json:"families,omitempty"`
}

// Route is one prefix the node advertises.
type Route struct {
	Prefix   string   `json:"prefix"`
	Peers    []string `json:"peers"`    // the names of the peers it goes to
	Services []string `json:"services"` // namespace/name
}

// Normalize sorts every list, so that equal states compare equal.
func (s *Status) Normalize() {
	slices.Sort(s.Members)
	slices.Sort(s.MACs)
	for i := range s.L2 {
		slices.Sort(s.L2[i].Interfaces)
		slices.Sort(s.L2[i].Services)
	}
	slices.SortFunc(s.L2, func(a, b L2Address) int { return compare(a.Address, b.Address) })
	slices.SortFunc(s.Sessions, func(a, b Session) int {
		if c := compare(a.Peer, b.Peer); c != 0 {
			return c
		}
		return compare(a.Address, b.Address)
	})
	for i := range s.BGP {
		slices.Sort(s.BGP[i].Peers)
		slices.Sort(s.BGP[i].Services)
	}
	slices.SortFunc(s.BGP, func(a, b Route) int { return compare(a.Prefix, b.Prefix) })
	slices.SortFunc(s.Conflicts, func(a, b Conflict) int {
		if c := compare(a.Address, b.Address); c != 0 {
			return c
		}
		return compare(a.MAC, b.MAC)
	})
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ToUnstructured converts a state for the dynamic client.
func ToUnstructured(s *SpeakerState) (*unstructured.Unstructured, error) {
	s.APIVersion, s.Kind = Group+"/"+Version, Kind
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(s)
	if err != nil {
		return nil, fmt.Errorf("convert %s: %w", s.Name, err)
	}
	return &unstructured.Unstructured{Object: m}, nil
}

// FromUnstructured reads a state that the dynamic client returned.
func FromUnstructured(u *unstructured.Unstructured) (*SpeakerState, error) {
	var s SpeakerState
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &s); err != nil {
		return nil, fmt.Errorf("read %s %s: %w", Kind, u.GetName(), err)
	}
	return &s, nil
}
