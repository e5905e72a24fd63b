package speaker

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/l2"
)

// ownership is one address this node answers for.
type ownership struct {
	ifaces   []string
	services []string
	since    time.Time // when this node took it
	until    time.Time // zero while this node owns it; else the end of a hand-back
}

// Taking an address that another node may still answer for is done with
// care. With a strict majority of the known speakers alive in its view, a
// node takes over at once: failover is failure detection. Without one (it
// may be the node that is cut off, or in a two-node cluster the other may
// be alive but unreachable) it first probes the link, and takes the address
// only if nobody answers. A brand-new address is probed too: a device
// outside the cluster may hold it.
const (
	probeCount = 2
	probeWait  = 300 * time.Millisecond
	// youngFor: an address that came (passed the kube-proxy gate) less
	// than this ago is probed before it is taken: its first owner takes it
	// within that time, and later takeovers are failovers, which must not
	// wait for a probe.
	youngFor = 5 * time.Second
	// reprobeAfter: a probe that found someone is repeated this long after.
	reprobeAfter = 5 * time.Second
	// probeValid: how long a probe that found nobody allows a careful
	// takeover (a young address, once probed, is taken whenever elected).
	probeValid = time.Second
	// probeOwnedMax: after a suspicion, this many owned addresses are
	// probed (chosen at random), not all.
	probeOwnedMax = 8
	// linksFor: the interfaces read at one decision serve the next ones
	// this long (two netlink dumps and a sysfs walk were a tenth of a
	// speaker's CPU under Service churn). A new interface or address is
	// used at most this much later.
	linksFor = time.Second
)

// l2State is what the loop remembers between layer-2 decisions.
type l2State struct {
	started    bool
	firstSeen  map[netip.Addr]time.Time // zero: known at the first decision
	probes     map[netip.Addr]probeState
	stepSeen   uint64    // Members.StepBacks seen so far
	suspSeen   uint64    // Members.Suspicions seen so far
	minority   bool      // at the last decision, this node saw no majority alive
	quietUntil time.Time // after a step-back: take nothing before
	view       string    // the members view at the last decision (logged when it changes)
	viewAt     time.Time // when it last changed
	waitWhy    string    // why mayTake last said no
	waitLogged bool      // the waiting addresses were logged since the view changed
	links      *l2.Links // this node's interfaces, as read at linksAt
	linksAt    time.Time
}

func newL2State() l2State {
	return l2State{firstSeen: map[netip.Addr]time.Time{}, probes: map[netip.Addr]probeState{}}
}

// probeState is one address's probe: running, or its outcome.
type probeState struct {
	running bool
	at      time.Time // when it ended
	taken   string    // "" nobody answered; else who did (a node name or a MAC)
}

// reconcileL2 elects the owner of every address among the live speakers and
// answers for those this node owns. held are the addresses the kube-proxy
// gate holds back: this node probes those it will own meanwhile.
func (s *Speaker) reconcileL2(ctx context.Context, cfg config.State, svcs, held []ServiceInfo, nodes []NodeInfo) time.Duration {
	if !s.members.Joined() {
		return 100 * time.Millisecond // nodeInfos has handed memberlist the peers to join
	}
	now := time.Now()
	if n, code := s.members.StepBacks(); n != s.l2s.stepSeen {
		s.l2s.stepSeen = n
		s.l2s.quietUntil = now.Add(s.members.opts.HoldDown)
		s.metrics.stepBacks.WithLabelValues(code).Inc()
		s.dropAll("stepped back (" + code + ")")
	}
	if s.members.Isolated() {
		// Cut off: answer for nothing until back among the others, who
		// have taken over meanwhile.
		s.dropAll("isolated")
		return time.Second
	}
	links, err := s.readLinks(now)
	if err != nil {
		s.log.Warn("cannot read the interfaces; answering as before", zap.Error(err))
		return time.Second
	}
	if n := s.members.Suspicions(); n != s.l2s.suspSeen {
		s.l2s.suspSeen = n
		s.probeOwned(ctx, "the others suspected this node")
	}
	s.noteAges(svcs, held, now)
	s.tendConflicts(ctx, now)
	s.probeEarly(ctx, cfg, held, nodes, links)
	owners := DecideL2Kept(cfg.Config, cfg.Accepted, svcs, nodes)
	if s.resolveRivals(owners, nodes, now) {
		return 0 // stepped back: decide again at once
	}
	careful := !majority(nodes, s.members.Known())
	if s.l2s.minority && !careful {
		// Decide again with this node counted as new: the view in hand
		// still ranks it by its old joined time, and judges the others by
		// when it saw them come back (it once took every address so).
		s.l2s.minority = false
		s.members.Rejoin("most speakers are alive again in this node's view")
		return 0
	}
	if careful && !s.l2s.minority {
		// The majority has taken this node's addresses over, and their
		// first announcements may have come while this node still counted
		// them alive (a claim counts for rivalFresh only, and a cut-off
		// node declares the others dead one by one, each after its own
		// suspicion).
		s.probeOwned(ctx, "most speakers are gone from this node's view")
	}
	s.l2s.minority = careful
	if v := membersView(nodes); v != s.l2s.view {
		s.l2s.view, s.l2s.viewAt, s.l2s.waitLogged = v, now, false
		s.log.Info("members changed in this node's view", zap.String("members", v), zap.Bool("majority", !careful))
	}
	next := 10 * time.Second
	waiting := 0

	s.mu.Lock()
	owned := map[netip.Addr]ownership{}
	var taken []ownership
	var takenAddrs []netip.Addr
	for addr, o := range owners {
		prev, had := s.owned[addr]
		switch {
		case o.Node == s.opts.Node:
			ifaces := links.InterfacesFor(addr, o.Interfaces)
			if len(ifaces) == 0 {
				s.log.Warn("no interface to answer on", zap.Stringer("ip", addr), zap.Strings("iface", o.Interfaces))
				continue
			}
			if had && prev.until.IsZero() {
				prev.ifaces, prev.services = ifaces, o.Services
				owned[addr] = prev
				continue
			}
			if wait, ok := s.mayTake(ctx, addr, ifaces, careful, now); !ok {
				waiting++
				if wait > 0 {
					next = min(next, wait)
				}
				if had { // a hand-back it may not take back: finish it
					owned[addr] = prev
				}
				continue
			}
			own := ownership{ifaces: ifaces, services: o.Services, since: now}
			owned[addr] = own
			taken, takenAddrs = append(taken, own), append(takenAddrs, addr)
			s.metrics.ownershipChanges.Inc()
		case had && o.Node != "":
			// Another live node takes it: keep answering a little while.
			if prev.until.IsZero() {
				s.log.Info("handing an address over", zap.Stringer("ip", addr), zap.String("to", o.Node), zap.String("members", membersView(nodes)))
				prev.until = now.Add(s.opts.HandBack)
				s.metrics.ownershipChanges.Inc()
			}
			if now.Before(prev.until) {
				owned[addr] = prev
				next = min(next, prev.until.Sub(now))
			}
		case had:
			s.report.withdrawn(o.Services, addr, o.Why)
			s.metrics.ownershipChanges.Inc()
		}
	}
	for addr, prev := range s.owned {
		if _, still := owners[addr]; !still && prev.until.IsZero() {
			s.log.Info("address gone", zap.Stringer("ip", addr))
		}
	}
	s.owned = owned
	desired := make(map[netip.Addr][]string, len(owned))
	quiet := map[netip.Addr]bool{}
	for addr, o := range owned {
		desired[addr] = o.ifaces
		if !o.until.IsZero() {
			quiet[addr] = true
		}
	}
	s.mu.Unlock()

	if d := s.members.UntilSettled(); d > 0 {
		next = min(next, d+time.Millisecond)
	}
	s.l2.SetQuiet(quiet)
	setAt := time.Now()
	s.l2.Set(desired)
	if d := time.Since(setAt); d > slowDecision {
		s.log.Warn("slow to answer for the addresses decided", zap.Duration("took", d), zap.Int("addresses", len(desired)))
	}
	if waiting > 0 && !s.l2s.waitLogged && now.Sub(s.l2s.viewAt) < 5*time.Second {
		// Once after a change of members, say why elected addresses
		// wait: it is where a slow failover shows.
		s.l2s.waitLogged = true
		s.log.Info("elected for addresses not taken yet", zap.Int("addresses", waiting), zap.String("why", s.l2s.waitWhy))
	}
	s.reportTaken(takenAddrs, taken, nodes)
	s.metrics.members.Set(float64(s.members.NumMembers()))
	return next
}

// readLinks returns this node's interfaces, read again when linksFor has
// passed, and publishes their MACs.
func (s *Speaker) readLinks(now time.Time) (*l2.Links, error) {
	if s.l2s.links != nil && now.Sub(s.l2s.linksAt) < linksFor {
		return s.l2s.links, nil
	}
	links, err := s.opts.Links()
	if err != nil {
		return nil, err
	}
	s.l2s.links, s.l2s.linksAt = links, now
	s.members.SetMACs(links.MACs())
	return links, nil
}

// mayTake says whether this node may start answering for addr now, and if
// not when to look again (0: not before something changes).
func (s *Speaker) mayTake(ctx context.Context, addr netip.Addr, ifaces []string, careful bool, now time.Time) (time.Duration, bool) {
	if now.Before(s.l2s.quietUntil) {
		s.l2s.waitWhy = "quiet after stepping back"
		return s.l2s.quietUntil.Sub(now), false
	}
	p := s.l2s.probes[addr]
	if s.conflicts.blocks(addr) {
		// A device outside the cluster holds it (conflicts.go): ask again
		// now and then, to learn when it has gone.
		if !p.running && now.Sub(p.at) >= reprobeAfter {
			s.l2s.probes[addr] = probeState{running: true}
			go s.probe(ctx, addr, ifaces)
		}
		s.l2s.waitWhy = "a foreign device holds it"
		return reprobeAfter, false
	}
	young := now.Sub(s.l2s.firstSeen[addr]) < youngFor
	if !careful && !young {
		return 0, true
	}
	s.l2s.waitWhy = "probing first (young address or no majority)"
	switch {
	case p.running:
		return 50 * time.Millisecond, false
	case !p.at.IsZero() && p.taken == "" && (young || now.Sub(p.at) < probeValid):
		return 0, true // probed: nobody answers
	case !p.at.IsZero() && now.Sub(p.at) < reprobeAfter:
		return reprobeAfter - now.Sub(p.at), false // someone answered: look again later
	}
	s.l2s.probes[addr] = probeState{running: true}
	go s.probe(ctx, addr, ifaces)
	return probeWait, false
}

// probe asks the link whether someone answers for addr, and records it.
func (s *Speaker) probe(ctx context.Context, addr netip.Addr, ifaces []string) {
	found, err := s.l2.Probe(ctx, addr, ifaces, probeCount, probeWait)
	if err != nil {
		// Not a reason to keep the address dark: answering would fail
		// the same way if the link were unusable.
		s.log.Warn("cannot probe for an address; taking it unprobed", zap.Stringer("ip", addr), zap.Error(err))
	}
	taken := ""
	for _, c := range found {
		if who := s.noteConflict(c, true); who != s.opts.Node {
			taken = who
		}
	}
	if taken == "" && err == nil {
		s.forgetConflict(addr)
	}
	s.mu.Lock()
	s.probeDone = append(s.probeDone, probeOutcome{addr, probeState{at: time.Now(), taken: taken}})
	s.mu.Unlock()
	s.poke()
}

type probeOutcome struct {
	addr netip.Addr
	st   probeState
}

// noteAges records when each address was first seen (for probing), and
// collects finished probes.
func (s *Speaker) noteAges(svcs, held []ServiceInfo, now time.Time) {
	seen := map[netip.Addr]bool{}
	for _, svc := range slices.Concat(svcs, held) {
		for _, a := range svc.Addrs {
			seen[a] = true
			if _, ok := s.l2s.firstSeen[a]; !ok {
				t := now
				if !s.l2s.started {
					t = time.Time{} // in service before this speaker started
				}
				s.l2s.firstSeen[a] = t
			}
		}
	}
	s.l2s.started = true
	for a := range s.l2s.firstSeen {
		if !seen[a] {
			delete(s.l2s.firstSeen, a)
			delete(s.l2s.probes, a)
		}
	}
	s.mu.Lock()
	done := s.probeDone
	s.probeDone = nil
	s.mu.Unlock()
	for _, d := range done {
		if _, ok := s.l2s.firstSeen[d.addr]; ok {
			s.l2s.probes[d.addr] = d.st
		}
	}
}

// probeEarly starts the probes of the held-back addresses this node will
// own, so that a new Service waits for kube-proxy and the probe at once.
func (s *Speaker) probeEarly(ctx context.Context, cfg config.State, held []ServiceInfo, nodes []NodeInfo, links *l2.Links) {
	if len(held) == 0 {
		return
	}
	for addr, o := range DecideL2Kept(cfg.Config, cfg.Accepted, held, nodes) {
		if o.Node != s.opts.Node || s.l2s.probes[addr] != (probeState{}) {
			continue
		}
		if ifaces := links.InterfacesFor(addr, o.Interfaces); len(ifaces) > 0 {
			s.l2s.probes[addr] = probeState{running: true}
			go s.probe(ctx, addr, ifaces)
		}
	}
}

// probeOwned asks the link about every address this node answers for:
// after the others suspected this node, or when it finds itself in a
// minority, another speaker may have taken them over meanwhile, and
// answers the probe (noted as a rival).
func (s *Speaker) probeOwned(ctx context.Context, why string) {
	s.mu.Lock()
	var addrs []netip.Addr
	var ifaces [][]string
	for addr, o := range s.owned {
		if o.until.IsZero() {
			addrs, ifaces = append(addrs, addr), append(ifaces, o.ifaces)
		}
	}
	s.mu.Unlock()
	if len(addrs) > probeOwnedMax {
		// A node that declared this one dead took all of its addresses:
		// a few tell as well as all, and probing 1,000 addresses at every
		// suspicion on a busy node cost more than the suspicion.
		rand.Shuffle(len(addrs), func(i, j int) {
			addrs[i], addrs[j] = addrs[j], addrs[i]
			ifaces[i], ifaces[j] = ifaces[j], ifaces[i]
		})
		addrs, ifaces = addrs[:probeOwnedMax], ifaces[:probeOwnedMax]
	}
	if len(addrs) > 0 {
		s.log.Info(why+": asking whether another answers for its addresses", zap.Int("addresses", len(addrs)))
	}
	for i, addr := range addrs {
		go func() {
			found, _ := s.l2.Probe(ctx, addr, ifaces[i], 1, probeWait)
			for _, c := range found {
				s.noteConflict(c, true)
			}
		}()
	}
}

// majority reports whether this node sees more than half of the known
// speakers alive (itself included).
func majority(nodes []NodeInfo, known map[string]bool) bool {
	live, total := liveOf(nodes, known)
	return 2*live > total
}

// liveOf counts the known speakers (Node objects whose speaker has been a
// member, Members.Known) and those alive among them.
func liveOf(nodes []NodeInfo, known map[string]bool) (live, total int) {
	for _, n := range nodes {
		if known[n.Name] {
			total++
			if n.Alive {
				live++
			}
		}
	}
	return live, total
}

// dropAll stops answering for everything at once (no hand-back).
func (s *Speaker) dropAll(why string) {
	s.mu.Lock()
	had := len(s.owned)
	s.owned = map[netip.Addr]ownership{}
	s.mu.Unlock()
	if had > 0 {
		s.log.Info("answering for nothing", zap.String("why", why), zap.Int("addresses", had))
		s.metrics.ownershipChanges.Add(float64(had))
	}
	s.l2.Set(nil)
}

// reportTaken logs and records the addresses this node took; a takeover of
// many is one log line and Events for the first few Services only, so that
// the failover path does no work per address.
func (s *Speaker) reportTaken(addrs []netip.Addr, taken []ownership, nodes []NodeInfo) {
	const detailed = 20
	if len(addrs) == 0 {
		return
	}
	if len(addrs) > detailed {
		s.log.Info("answering for addresses", zap.Int("count", len(addrs)), zap.String("members", membersView(nodes)))
	}
	for i, addr := range addrs {
		if i >= detailed {
			break
		}
		if len(addrs) <= detailed {
			s.log.Info("answering for an address", zap.Stringer("ip", addr), zap.Strings("iface", taken[i].ifaces), zap.String("members", membersView(nodes)))
		}
		s.report.announced(taken[i].services, addr, taken[i].ifaces[0])
	}
	if len(addrs) > detailed {
		s.report.announcedMore(len(addrs) - detailed)
	}
}
