package speaker

import (
	"context"
	"slices"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/heraldlb/herald/bgp"
	"github.com/heraldlb/herald/speaker/state"
)

// A speaker that restarts with graceful restart sends End-of-RIB for every
// family it offers a router (GoBGP's restart path takes them from the
// configuration, not from what was negotiated): an IPv6 End-of-RIB to a
// router that negotiated IPv4 only, which a strict router answers with a
// NOTIFICATION. So each router is offered the families it offered itself
// last time, as this node's SpeakerState recorded them; a router never seen
// is offered both. A router that starts to offer another family gets it at
// once (a session reset: the router reset the session itself to add it).

// familiesKey names a router across restarts: the peer entry and its address.
func familiesKey(name, addr string) string { return name + "@" + addr }

// loadFamilies reads the families each router offered, from this node's
// SpeakerState as the last process left it. Missing or unreadable: none
// known (both families are offered), and said why.
func (s *Speaker) loadFamilies(ctx context.Context) {
	s.bgpState.families = map[string][]bgp.Family{}
	if s.report.states == nil {
		return
	}
	u, err := s.report.states.Get(ctx, s.opts.Node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return
	}
	var st *state.SpeakerState
	if err == nil {
		st, err = state.FromUnstructured(u)
	}
	if err != nil {
		s.log.Warn("cannot read the families each router offered: offering both", zap.Error(err))
		return
	}
	for _, ss := range st.Status.Sessions {
		var fs []bgp.Family
		for _, f := range ss.Families {
			if bgp.Family(f) == bgp.IPv4Unicast || bgp.Family(f) == bgp.IPv6Unicast {
				fs = append(fs, bgp.Family(f))
			}
		}
		if len(fs) > 0 {
			s.bgpState.families[familiesKey(ss.Peer, ss.Address)] = fs
		}
	}
}

// widenFamilies adds to a router's recorded families those it offers now
// and was not offered: its sessions then carry them (after a reset).
func (s *Speaker) widenFamilies(live []bgp.PeerStatus) {
	for _, p := range live {
		key := familiesKey(p.Name, p.Address.String())
		have, known := s.bgpState.families[key]
		if !known {
			continue // offered both already
		}
		wider := have
		for _, f := range p.RouterFamilies {
			if !slices.Contains(wider, f) {
				wider = append(slices.Clone(wider), f)
			}
		}
		if len(wider) != len(have) {
			slices.Sort(wider)
			s.log.Info("a router offers another address family: reconnecting to carry it", zap.String("peer", p.Name),
				zap.Any("families", wider))
			s.bgpState.families[key] = wider
		}
	}
}

// publishedFamilies is what the SpeakerState records for a session: what
// the router offered in its last OPEN, or what was recorded before.
func (s *Speaker) publishedFamilies(p bgp.PeerStatus) []string {
	fs := p.RouterFamilies
	if len(fs) == 0 {
		fs = s.bgpState.families[familiesKey(p.Name, p.Address.String())]
	}
	out := make([]string, 0, len(fs))
	for _, f := range fs {
		out = append(out, string(f))
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
