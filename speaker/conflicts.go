package speaker

import (
	"cmp"
	"context"
	"net/netip"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/heraldlb/herald/l2"
	"github.com/heraldlb/herald/speaker/state"
)

// Another MAC answering for an address this node owns is either another
// speaker (a split brain: the nodes' views of the members differ) or a
// device outside the cluster (an address conflict).
//
// A split brain is resolved the same way on both nodes, from what each can
// know: a node the others suspected lately steps back (they declared it dead
// and took over while it stalled); otherwise, while the two see each other
// alive, the election decides (their views only lag); a node that sees a
// strict majority of the known speakers alive and not the other keeps the
// address (the other is the one cut off) and announces it again; a node in a
// minority steps back; when neither has a majority (a two-node cluster), the
// one that does not win the address between the two steps back. Stepping back is
// answering for nothing, rejoining, and taking addresses again only after
// the hold-down.
//
// A foreign device is reported (SpeakerState, metric, log; the controller
// sets the Service's condition and Event). If it answered before this node
// took the address (a probe found it), the address is not announced; if the
// address was in service, Herald keeps it and defends it (RFC 5227 §2.4:
// one announcement per defendInterval), and probes it every reprobeOwned
// to learn when the device has gone.
const (
	rivalFresh    = 5 * time.Second  // a rival's claim older than this is over
	conflictTTL   = 25 * time.Second // a foreign claim not seen again for this long is gone
	reprobeOwned  = 10 * time.Second
	defendEvery   = 10 * time.Second
	handBackSlack = 500 * time.Millisecond
	// suspicionMemory: a node suspected this recently that sees another
	// speaker answer for its address takes it that it was declared dead.
	suspicionMemory = 10 * time.Second
)

// conflicts are the other MACs seen answering for addresses (under s.mu).
type conflicts struct {
	foreign map[netip.Addr]foreignClaim
	rivals  map[netip.Addr]rival
}

func newConflicts() conflicts {
	return conflicts{foreign: map[netip.Addr]foreignClaim{}, rivals: map[netip.Addr]rival{}}
}

type foreignClaim struct {
	mac, kind   string
	since, last time.Time
	announced   bool      // in service when the device appeared
	defended    time.Time // last announcement in its defence
	probed      time.Time // last probe while owned
}

type rival struct {
	node string
	at   time.Time
	kept bool // this node kept the address against it, and said so
}

// blocks reports whether a foreign device holds addr that Herald never
// announced (s.mu held).
func (c conflicts) blocks(addr netip.Addr) bool {
	f, ok := c.foreign[addr]
	return ok && !f.announced
}

// noteConflict records another MAC claiming an address and names who it
// is: a speaker's node name (this node's own for its other interfaces), or
// the MAC of a foreign device. A claim seen on the wire counts only for an
// address this node owns (not one it hands over: the new owner announces
// it); a probe's answers (probed) count for the address probed.
func (s *Speaker) noteConflict(c l2.Conflict, probed bool) string {
	node := s.members.NodeOfMAC(c.MAC)
	if node == s.opts.Node || (node != "" && c.Kind == l2.KindDAD) {
		return node // a speaker probing before it takes an address claims nothing
	}
	now := time.Now()
	s.mu.Lock()
	o, owned := s.owned[c.Addr]
	owned = owned && o.until.IsZero()
	if !owned && !probed {
		s.mu.Unlock()
		return node
	}
	if node != "" {
		s.conflicts.rivals[c.Addr] = rival{node: node, at: now}
		s.mu.Unlock()
		s.metrics.conflicts.WithLabelValues("speaker").Inc()
		s.log.Warn("another speaker answers for an address", zap.Stringer("ip", c.Addr), zap.String("node", node),
			zap.String("kind", c.Kind), zap.Bool("owned", owned))
		s.poke()
		return node
	}
	mac := c.MAC.String()
	f, had := s.conflicts.foreign[c.Addr]
	fresh := !had || f.mac != mac
	if fresh {
		f = foreignClaim{mac: mac, kind: c.Kind, since: now, announced: owned}
	}
	f.last = now
	defend := owned && now.Sub(f.defended) >= defendEvery
	if defend {
		f.defended = now
	}
	s.conflicts.foreign[c.Addr] = f
	s.mu.Unlock()
	s.metrics.conflicts.WithLabelValues("foreign").Inc()
	if fresh {
		s.log.Warn("a device that is no speaker answers for an address", zap.Stringer("ip", c.Addr), zap.String("mac", mac),
			zap.String("iface", c.Iface), zap.String("kind", c.Kind), zap.Bool("inService", owned))
		s.poke() // published in the SpeakerState
	}
	if defend {
		s.l2.Announce(c.Addr)
	}
	return mac
}

// resolveRivals settles the split brains seen on the wire for addresses
// this node owns (see the comment at the top). It reports whether this node
// stepped back.
func (s *Speaker) resolveRivals(owners map[netip.Addr]L2Owner, nodes []NodeInfo, now time.Time) bool {
	alive := map[string]bool{}
	for _, n := range nodes {
		alive[n.Name] = n.Alive
	}
	live, total := liveOf(nodes, s.members.Known())
	suspected := s.members.SuspectedWithin(suspicionMemory)
	var lose, keep []netip.Addr
	var loseTo []string
	s.mu.Lock()
	for addr, r := range s.conflicts.rivals {
		o, owned := s.owned[addr]
		switch {
		case now.Sub(r.at) > rivalFresh:
			delete(s.conflicts.rivals, addr)
			continue
		case !owned || !o.until.IsZero() || r.at.Before(o.since.Add(s.opts.HandBack+handBackSlack)):
			continue // not ours, or the other is finishing a hand-back to us
		case owners[addr].Node != s.opts.Node:
			// This decision hands it to another node: the rival is the
			// new owner (or its announcement came a moment before this
			// node's own decision), not a split brain.
			continue
		}
		// Judged again at each decision while fresh: the views change
		// (the other is declared gone a moment after its first claim).
		switch {
		case splitBrainLoser(s.opts.Node, r.node, addr, alive[r.node], suspected, live, total):
			delete(s.conflicts.rivals, addr)
			lose, loseTo = append(lose, addr), append(loseTo, r.node)
		case !alive[r.node] && !r.kept:
			r.kept = true
			s.conflicts.rivals[addr] = r
			keep = append(keep, addr)
		}
	}
	services := func(addr netip.Addr) []string { return owners[addr].Services }
	s.mu.Unlock()
	for _, addr := range keep {
		s.log.Warn("split brain: a speaker the others declared gone answers for an address; keeping it",
			zap.Stringer("ip", addr), zap.Int("alive", live), zap.Int("known", total))
		s.report.splitBrain(services(addr), addr, s.opts.Node, "", "it sees most speakers alive and the other not")
		s.l2.Announce(addr)
	}
	if len(lose) == 0 {
		return false
	}
	for i, addr := range lose {
		s.report.splitBrain(services(addr), addr, loseTo[i], s.opts.Node, "")
	}
	s.members.StepBack(StepBackSplitBrain, "another speaker ("+loseTo[0]+") answers for "+lose[0].String())
	return true
}

// splitBrainLoser decides a split brain over addr between this node (self)
// and another speaker seen answering for it (see the top of this file): self
// sees live of the total known speakers alive, and rival among them or not;
// suspected: the others suspected self lately. A rival this node sees alive
// is a view that lags (a node just joined, a hand-over under way): the
// election settles it, and nobody steps back for it, unless this node was
// just suspected (then the others declared it dead and took over while it
// stalled). Pure.
func splitBrainLoser(self, rival string, addr netip.Addr, rivalAlive, suspected bool, live, total int) bool {
	switch {
	case rivalAlive:
		return suspected
	case 2*live == total:
		return Winner([]string{self, rival}, addr) != self
	}
	return 2*live < total
}

// tendConflicts forgets foreign claims not seen for conflictTTL and
// re-probes owned addresses with a claim, to see whether the device is
// still there (its replies to the probe are noted as they come).
func (s *Speaker) tendConflicts(ctx context.Context, now time.Time) {
	type reprobe struct {
		addr   netip.Addr
		ifaces []string
	}
	var due []reprobe
	s.mu.Lock()
	for addr, f := range s.conflicts.foreign {
		if now.Sub(f.last) > conflictTTL {
			delete(s.conflicts.foreign, addr)
			s.log.Info("the device answering for an address is gone", zap.Stringer("ip", addr), zap.String("mac", f.mac))
			continue
		}
		if o, ok := s.owned[addr]; ok && o.until.IsZero() && now.Sub(f.probed) >= reprobeOwned {
			f.probed = now
			s.conflicts.foreign[addr] = f
			due = append(due, reprobe{addr, o.ifaces})
		}
	}
	s.mu.Unlock()
	for _, r := range due {
		go func() {
			found, err := s.l2.Probe(ctx, r.addr, r.ifaces, 1, probeWait)
			for _, c := range found {
				s.noteConflict(c, true)
			}
			if err == nil && len(found) == 0 {
				s.forgetConflict(r.addr)
			}
		}()
	}
}

// forgetConflict drops a foreign claim for addr: a probe found nobody.
func (s *Speaker) forgetConflict(addr netip.Addr) {
	s.mu.Lock()
	f, ok := s.conflicts.foreign[addr]
	delete(s.conflicts.foreign, addr)
	s.mu.Unlock()
	if ok {
		s.log.Info("the device answering for an address is gone", zap.Stringer("ip", addr), zap.String("mac", f.mac))
		s.poke()
	}
}

// published lists the foreign claims for the SpeakerState (s.mu held).
func (c conflicts) published() []state.Conflict {
	out := make([]state.Conflict, 0, len(c.foreign))
	for addr, f := range c.foreign {
		out = append(out, state.Conflict{Address: addr.String(), MAC: f.mac, Kind: f.kind, Announced: f.announced,
			Since: metav1.NewTime(f.since.Truncate(time.Second))})
	}
	slices.SortFunc(out, func(a, b state.Conflict) int {
		return cmp.Or(strings.Compare(a.Address, b.Address), strings.Compare(a.MAC, b.MAC))
	})
	return out
}
