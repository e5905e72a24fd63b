package bgp

import (
	"cmp"
	"context"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"go.uber.org/zap"
)

// syncStatus keeps one status entry per wanted peer.
func (s *Server) syncStatus(peers []Peer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := map[string]bool{}
	for _, p := range peers {
		keep[p.Name] = true
		st, ok := s.status[p.Name]
		if !ok || st.Address != p.Address {
			st = &peerState{PeerStatus: PeerStatus{Name: p.Name, Address: p.Address, State: "idle", Since: time.Now()}}
			s.status[p.Name] = st
		}
		st.hasBFD = p.BFD != nil
	}
	for n := range s.status {
		if !keep[n] {
			delete(s.status, n)
		}
	}
}

func (s *Server) setError(name, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.status[name]; ok {
		st.LastError = s.sec.redact(msg)
	}
}

func stateName(st bgp.FSMState) string {
	return strings.ToLower(strings.TrimPrefix(st.String(), "BGP_FSM_"))
}

// onPeerEvent runs on GoBGP's watcher goroutine for every state change.
func (s *Server) onPeerEvent(ev *apiutil.WatchEventMessage_PeerEvent, t time.Time) {
	if ev.Type != apiutil.PEER_EVENT_STATE {
		return
	}
	addr := ev.Peer.State.NeighborAddress
	if !addr.IsValid() {
		addr = ev.Peer.Conf.NeighborAddress
	}
	state := stateName(ev.Peer.State.SessionState)
	s.mu.Lock()
	var st *peerState
	for _, x := range s.status {
		if x.Address == addr {
			st = x
		}
	}
	if st == nil || st.State == state {
		s.mu.Unlock()
		return
	}
	wasUp := st.Established
	st.State, st.Since = state, t
	st.Established = state == "established"
	if st.Established {
		st.RouterFamilies = routerFamilies(ev.Peer.State.RemoteCap)
	}
	reason := disconnectReason(ev.Peer.State)
	if wasUp && !st.Established {
		st.resets++
		if reason != "" {
			st.LastError = reason
		}
	}
	name, up := st.Name, st.Established
	s.mu.Unlock()
	if up != wasUp {
		s.pokeBFD()
		select {
		case s.changes <- struct{}{}:
		default:
		}
	}

	switch {
	case up && !wasUp:
		s.log.Info("peer up", zap.String("peer", name), zap.Stringer("address", addr))
	case wasUp && !up:
		s.log.Info("peer down", zap.String("peer", name), zap.Stringer("address", addr), zap.String("reason", reason))
	default:
		s.log.Debug("peer state", zap.String("peer", name), zap.String("state", state))
	}
}

func disconnectReason(st apiutil.PeerState) string {
	if st.DisconnectReason == api.PeerState_DISCONNECT_REASON_UNSPECIFIED {
		return ""
	}
	r := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(st.DisconnectReason.String(), "DISCONNECT_REASON_"), "_", " "))
	if st.DisconnectMessage != "" {
		r += ": " + st.DisconnectMessage
	}
	return r
}

// peerCounters is what ListPeer adds to a status.
type peerCounters struct {
	advertised, updatesSent uint64
	bfd                     string
}

// Changes receives (coalesced) when a session goes up or down: Peers
// then tells how things stand.
func (s *Server) Changes() <-chan struct{} { return s.changes }

// Peers returns every wanted session's status, sorted by Name.
func (s *Server) Peers() []PeerStatus {
	ps, _ := s.snapshot()
	out := make([]PeerStatus, len(ps))
	for i, p := range ps {
		out[i] = p.PeerStatus
	}
	return out
}

// Sessions returns every wanted session's state as the server last saw it
// change (name, address, state, since, last error), sorted by Name, without
// asking GoBGP for counters as Peers does: cheap enough to call at every
// decision.
func (s *Server) Sessions() []PeerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PeerStatus, 0, len(s.status))
	for _, st := range s.status {
		out = append(out, st.PeerStatus)
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

type peerSnapshot struct {
	PeerStatus
	hasBFD      bool
	resets      uint64
	updatesSent uint64
}

func (s *Server) snapshot() ([]peerSnapshot, error) {
	counters := map[netip.Addr]peerCounters{}
	var err error
	select {
	case <-s.ready:
		s.setMu.Lock()
		bs, running := s.bs, s.running
		s.setMu.Unlock()
		if bs != nil && running {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = bs.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
				var c peerCounters
				for _, a := range p.GetAfiSafis() {
					c.advertised += a.GetState().GetAdvertised()
				}
				c.updatesSent = p.GetState().GetMessages().GetSent().GetUpdate()
				if b := p.GetState().GetBfdState(); b != nil && p.GetBfd().GetEnabled() {
					c.bfd = strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(b.SessionState.String(), "BFD_SESSION_STATE_"), "_", ""))
				}
				if a, perr := netip.ParseAddr(p.GetConf().GetNeighborAddress()); perr == nil {
					counters[a] = c
				}
			})
			cancel()
		}
	default:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]peerSnapshot, 0, len(s.status))
	for _, st := range s.status {
		ps := peerSnapshot{PeerStatus: st.PeerStatus, hasBFD: st.hasBFD, resets: st.resets}
		c := counters[st.Address]
		ps.Advertised = int(c.advertised)
		ps.updatesSent = c.updatesSent
		if st.hasBFD {
			ps.BFD = cmp.Or(c.bfd, "down")
		}
		out = append(out, ps)
	}
	slices.SortFunc(out, func(a, b peerSnapshot) int { return cmp.Compare(a.Name, b.Name) })
	return out, err
}
