package speaker

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"

	"github.com/heraldlb/herald/bgp"
	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/speaker/state"
)

// BGP is what the speaker drives for BGP (bgp.Server).
type BGP interface {
	Set(ctx context.Context, d bgp.Desired) error
	Sessions() []bgp.PeerStatus
	// Changes receives when a session goes up or down.
	Changes() <-chan struct{}
}

// Reasons of the speaker's BGP Events.
const (
	ReasonBGPAdvertised = "BGPAdvertised"
	ReasonBGPWithdrawn  = "BGPWithdrawn"
	// ReasonPeerConflict, a Warning on Herald's ConfigMap: several BGP peers
	// at one address and port select this node.
	ReasonPeerConflict = "PeerConflict"
)

// bgpState is what the BGP half remembers between decisions.
type bgpState struct {
	advertised map[string][]netip.Prefix // per Service, what this node sends; nil before the first decision
	passwords  map[config.SecretRef]string
	problems   string                  // the last Set's or passwords' errors, logged on change
	routes     []state.Route           // what the last decision advertises, as published
	asns       map[string]uint32       // each peer's ASN
	conflicts  map[string]bool         // the peer conflicts reported, by message
	families   map[string][]bgp.Family // what each router offered, see families.go
}

// reconcileBGP decides what this node says over BGP and hands it to the
// BGP server, which applies the difference.
func (s *Speaker) reconcileBGP(ctx context.Context, cfg config.State, svcs []ServiceInfo, nodes []NodeInfo) {
	if s.bgp == nil {
		return
	}
	self, node, ok := s.self(nodes)
	if !ok {
		return // our Node object is unknown: change nothing
	}
	// A node whose data path came back advertises again after the
	// hold-down, as a returning node answers in layer 2.
	self.DataPathDown = self.DataPathDown || !s.members.DataPathSettled()
	s.widenFamilies(s.bgp.Sessions())
	d := DecideBGPKept(cfg.Config, cfg.Accepted, svcs, self)
	desired, problems := s.desiredBGP(cfg, d, node)
	if err := s.bgp.Set(ctx, desired); err != nil {
		problems = append(problems, err.Error())
	}
	s.bgpState.routes = publishedRoutes(d, desired)
	s.bgpState.asns = map[string]uint32{}
	for _, p := range desired.Peers {
		s.bgpState.asns[p.Name] = p.ASN
	}
	if p := strings.Join(problems, "; "); p != s.bgpState.problems {
		s.bgpState.problems = p
		if p != "" {
			s.log.Error("BGP not applied as configured", zap.String("problems", p))
		}
	}
	s.bgpEvents(d)
	s.peerConflictEvents(d.PeerConflicts)
}

// openSessions dials, before the Service caches have filled, the peers
// that can start without routes: opening a session takes GoBGP about two
// seconds, so with thousands of Services the routes go out the moment they
// are known. Peers with graceful restart wait for the first full decision:
// their first update after a restart must carry every route, or the router
// drops the ones it kept.
func (s *Speaker) openSessions(ctx context.Context) {
	cfg := s.loadConfig()
	node, err := s.nodes.Get(s.opts.Node)
	if s.bgp == nil || cfg.Config == nil || err != nil {
		return
	}
	d := DecideBGP(cfg.Config, nil, NodeInfo{Name: node.Name, Labels: node.Labels})
	for _, p := range d.Peers {
		if p.PasswordSecret != nil {
			s.secrets.Wait(ctx, p.PasswordSecret.Name, 5*time.Second)
		}
	}
	desired, _ := s.desiredBGP(cfg, d, node) // the first full decision reports problems
	desired.Peers = slices.DeleteFunc(desired.Peers, func(p bgp.Peer) bool { return p.GracefulRestart })
	if len(desired.Peers) == 0 {
		return
	}
	if err := s.bgp.Set(ctx, desired); err != nil {
		s.log.Debug("early BGP sessions", zap.Error(err))
	}
}

// self finds this node among nodes and its Node object.
func (s *Speaker) self(nodes []NodeInfo) (NodeInfo, *corev1.Node, bool) {
	node, err := s.nodes.Get(s.opts.Node)
	if err != nil {
		return NodeInfo{}, nil, false
	}
	i := slices.IndexFunc(nodes, func(n NodeInfo) bool { return n.Name == s.opts.Node })
	if i < 0 {
		return NodeInfo{}, nil, false
	}
	return nodes[i], node, true
}

// desiredBGP turns a decision into the BGP server's terms: peers and
// advertisements from the configuration in force, and those of the accepted
// one that the decision keeps (DecideBGPKept).
func (s *Speaker) desiredBGP(cfg config.State, d BGPDecision, node *corev1.Node) (bgp.Desired, []string) {
	var problems []string
	out := bgp.Desired{Routes: d.Routes}
	for _, a := range node.Status.Addresses {
		addr, err := netip.ParseAddr(a.Address)
		if a.Type != corev1.NodeInternalIP || err != nil {
			continue
		}
		if addr.Is4() && !out.NextHopV4.IsValid() {
			out.NextHopV4 = addr
		}
		if addr.Is6() && !out.NextHopV6.IsValid() {
			out.NextHopV6 = addr
		}
	}
	// GoBGP has one router ID per process: the first peer that names one
	// sets it (changing it restarts BGP); peers naming another are reported.
	out.RouterID = out.NextHopV4
	idFrom := ""
	open := map[string]bool{}
	secrets := map[string]bool{} // the password Secrets these peers name
	defer s.secrets.Retain(secrets)
	for _, p := range d.Peers {
		switch {
		case !p.RouterID.IsValid():
		case idFrom == "":
			out.RouterID, idFrom = p.RouterID, p.Name
		case p.RouterID != out.RouterID:
			problems = append(problems, fmt.Sprintf("BGP peer %s: routerID %s differs from peer %s's %s, which is used", p.Name, p.RouterID, idFrom, out.RouterID))
		}
		from := cfg.Config
		if _, inForce := cfg.Config.Peer(p.Name); !inForce && cfg.Accepted != nil {
			from = cfg.Accepted
		}
		if p.PasswordSecret != nil {
			secrets[p.PasswordSecret.Name] = true
		}
		peer, ok, err := s.bgpPeer(from, p)
		if err != nil {
			problems = append(problems, err.Error())
		}
		if !ok {
			continue
		}
		out.Peers = append(out.Peers, peer)
		open[p.Name] = true
	}
	out.Advertisements = advertisements(cfg.Config, "", open)
	if cfg.Accepted != nil {
		out.Advertisements = append(out.Advertisements, advertisements(cfg.Accepted, HeldAdvertisement, open)...)
	}
	return out, problems
}

// advertisements are cfg's BGP advertisements in the BGP server's terms,
// named with prefix in front, sent to the peers that are open.
func advertisements(cfg *config.Config, prefix string, open map[string]bool) []bgp.Advertisement {
	var out []bgp.Advertisement
	for _, adv := range cfg.BGPAdvertisements {
		a := bgp.Advertisement{Name: prefix + adv.Name, LocalPref: adv.LocalPref}
		for _, p := range adv.Peers {
			if open[p] {
				a.Peers = append(a.Peers, p)
			}
		}
		if len(adv.Peers) > 0 && len(a.Peers) == 0 {
			continue // DecideBGP sends nothing with it
		}
		for _, c := range adv.Communities {
			if c.Large {
				a.LargeCommunities = append(a.LargeCommunities, c.Parts)
			} else {
				a.Communities = append(a.Communities, c.Standard)
			}
		}
		out = append(out, a)
	}
	return out
}

// bgpPeer is one configured peer in the BGP server's terms, with its
// password read from its Secret. While the Secret is unreadable the last
// password read stays in use (a session never drops for that) and err says
// so; without any password the peer is left out (ok false).
func (s *Speaker) bgpPeer(cfg *config.Config, p config.BGPPeer) (peer bgp.Peer, ok bool, err error) {
	peer = bgp.Peer{
		Name: p.Name, Address: p.Address, Port: p.Port, ASN: p.ASN, MyASN: p.MyASN, SourceAddress: p.SourceAddress,
		HoldTime: p.HoldTime, KeepaliveTime: p.KeepaliveTime, ConnectTime: p.ConnectTime,
		EBGPMultihop: p.EBGPMultihop, GracefulRestart: p.GracefulRestart,
		Families: s.bgpState.families[familiesKey(p.Name, p.Address.String())],
	}
	if i := slices.IndexFunc(cfg.BFDProfiles, func(b config.BFDProfile) bool { return b.Name == p.BFDProfile }); i >= 0 {
		b := cfg.BFDProfiles[i]
		peer.BFD = &bgp.BFD{ReceiveInterval: b.ReceiveInterval, TransmitInterval: b.TransmitInterval, DetectMultiplier: uint8(b.DetectMultiplier)}
	}
	if p.PasswordSecret == nil {
		return peer, true, nil
	}
	ref := *p.PasswordSecret
	secret, err := s.secrets.Get(ref.Name)
	if errors.Is(err, errNotRead) {
		err = nil // its first read pokes the loop
		if _, known := s.bgpState.passwords[ref]; !known {
			return bgp.Peer{}, false, nil
		}
	} else if err == nil {
		if v, found := secret.Data[ref.Key]; found {
			s.bgpState.passwords[ref] = string(v)
		} else {
			err = fmt.Errorf("no key %q", ref.Key)
		}
	}
	if err != nil {
		err = fmt.Errorf("BGP peer %s: password Secret %s/%s: %w", p.Name, s.opts.Namespace, ref.Name, err)
	}
	pw, known := s.bgpState.passwords[ref]
	if !known {
		return bgp.Peer{}, false, err
	}
	if err != nil {
		err = fmt.Errorf("%w (the last password read stays in use)", err)
	}
	peer.Password = pw
	return peer, true, err
}

// bgpEvents records on each Service when this node starts or stops
// advertising it, or advertises other prefixes. The first decision of a
// process records nothing: it mostly restates what the previous process
// advertised (a rolling restart would otherwise send an Event per Service
// per node, queued ahead of every status write).
func (s *Speaker) bgpEvents(d BGPDecision) {
	for key, bs := range d.Services {
		if s.bgpState.advertised == nil {
			break
		}
		prev := s.bgpState.advertised[key]
		switch {
		case slices.Equal(prev, bs.Prefixes):
		case len(bs.Prefixes) > 0:
			s.report.event(key, corev1.EventTypeNormal, ReasonBGPAdvertised,
				fmt.Sprintf("%s advertised from node %s via BGP", joinPrefixes(bs.Prefixes), s.opts.Node))
		default:
			s.report.event(key, corev1.EventTypeNormal, ReasonBGPWithdrawn,
				fmt.Sprintf("node %s stopped advertising %s via BGP: %s", s.opts.Node, joinPrefixes(prev), bs.Why))
		}
	}
	advertised := make(map[string][]netip.Prefix, len(d.Services))
	for key, bs := range d.Services {
		if len(bs.Prefixes) > 0 {
			advertised[key] = bs.Prefixes
		}
	}
	s.bgpState.advertised = advertised
}

// peerConflictEvents reports each place where several BGP peers at one
// address select this node, once for as long as it lasts: a Warning Event
// on Herald's ConfigMap, where the mistake is (only this speaker knows its
// node's labels), and a log line. The rest of the configuration applies.
func (s *Speaker) peerConflictEvents(conflicts []config.PeerConflict) {
	reported := make(map[string]bool, len(conflicts))
	for _, c := range conflicts {
		msg := peerConflictMessage(s.opts.Node, c)
		reported[msg] = true
		if s.bgpState.conflicts[msg] {
			continue
		}
		s.log.Warn("BGP peers at one address select this node; it peers with the first in the document",
			zap.String("node", s.opts.Node), zap.String("peer", c.Kept), zap.Strings("notPeered", c.Dropped),
			zap.Stringer("address", netip.AddrPortFrom(c.Address, c.Port)))
		if cm, err := s.configMaps.ConfigMaps(s.opts.Namespace).Get(s.opts.ConfigName); err == nil {
			s.recorder.Event(cm, corev1.EventTypeWarning, ReasonPeerConflict, msg)
		}
	}
	s.bgpState.conflicts = reported
}

// peerConflictMessage names node, the peers that select it at one address
// and the one it peers with.
func peerConflictMessage(node string, c config.PeerConflict) string {
	names := append([]string{c.Kept}, c.Dropped...)
	last := len(names) - 1
	return fmt.Sprintf("node %s is selected by peers %s and %s at %s; it peers with %s (first in the document)",
		node, strings.Join(names[:last], ", "), names[last], netip.AddrPortFrom(c.Address, c.Port), c.Kept)
}

func joinPrefixes(ps []netip.Prefix) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return strings.Join(out, ", ")
}
