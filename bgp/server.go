package bgp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/server"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// ErrStopped is returned by Set once Run has returned.
var ErrStopped = errors.New("bgp server stopped")

// Options configure a Server.
type Options struct {
	Log        *zap.Logger
	Registerer prometheus.Registerer // may be nil
}

// Server holds the process's one GoBGP server (GoBGP binds the BFD port per
// server, so there must be only one) and applies Desired states to it.
type Server struct {
	log *zap.Logger
	reg prometheus.Registerer
	sec *secrets

	ready chan struct{} // closed when Run has a GoBGP server
	once  sync.Once

	// setMu serialises Set with itself and with Run's start and stop; it
	// guards the fields below.
	setMu       sync.Mutex
	bs          *server.BgpServer
	watchCancel context.CancelFunc
	stopped     bool
	running     bool // StartBgp done
	routerID    netip.Addr
	asn         uint32
	applied     Desired         // what GoBGP holds
	policy      *exportPolicy   // the export policy installed, nil before the first
	policyGen   int             // the generation of its names
	gen         int             // the last generation tried
	restarting  bool            // no GR peer added yet by this process: set Restart State
	restartBy   time.Time       // ... until then: routers keep stale routes no longer
	bfdOn       map[string]*BFD // the BFD session running per peer (only while Established)

	bfdPoke chan struct{} // a session went up or down: see watchBFD
	changes chan struct{} // a session went up or down: see Changes

	mu     sync.Mutex // guards status
	status map[string]*peerState
}

type peerState struct {
	PeerStatus
	hasBFD bool
	resets uint64
}

// New returns a Server; it starts nothing until Run.
func New(opts Options) *Server {
	log := opts.Log
	if log == nil {
		log = zap.NewNop()
	}
	return &Server{
		log:        log,
		reg:        opts.Registerer,
		sec:        &secrets{},
		ready:      make(chan struct{}),
		restarting: true,
		bfdOn:      map[string]*BFD{},
		bfdPoke:    make(chan struct{}, 1),
		changes:    make(chan struct{}, 1),
		status:     map[string]*peerState{},
	}
}

// Run runs GoBGP until ctx ends. Then it closes every session: peers with
// graceful restart without a NOTIFICATION, so the router keeps our routes
// as stale until the next process sends them again; the others with a
// Cease, so the router drops our routes at once.
func (s *Server) Run(ctx context.Context) error {
	started := false
	s.once.Do(func() { started = true })
	if !started {
		return errors.New("bgp: Run called twice")
	}
	if s.reg != nil {
		c := &collector{s: s}
		if err := s.reg.Register(c); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
		defer s.reg.Unregister(c)
	}
	s.setMu.Lock()
	s.newInstance()
	s.restartBy = time.Now().Add(grRestartTime * time.Second)
	s.setMu.Unlock()
	close(s.ready)

	s.watchBFD(ctx)

	s.setMu.Lock()
	defer s.setMu.Unlock()
	s.stopped = true
	s.stopInstance(true)
	s.log.Info("BGP stopped")
	return nil
}

func (s *Server) newInstance() {
	lvl := new(slog.LevelVar)
	lvl.Set(slog.LevelDebug) // the adapter asks zap what it wants
	h := newSlogHandler(s.log.Named("gobgp"), s.sec)
	s.bs = server.NewBgpServer(server.LoggerOption(slog.New(h), lvl))
	go s.bs.Serve()
	wctx, cancel := context.WithCancel(context.Background())
	s.watchCancel = cancel
	err := s.bs.WatchEvent(wctx, server.WatchEventMessageCallbacks{OnPeerUpdate: s.onPeerEvent}, server.WatchPeer())
	if err != nil {
		s.log.Error("watch peer events", zap.Error(err))
	}
}

// stopInstance ends the GoBGP server. With gr, peers that negotiated
// graceful restart get no NOTIFICATION: their TCP connection just closes,
// which a GR helper treats as a restart (RFC 4724 4.2).
func (s *Server) stopInstance(gr bool) {
	if s.bs == nil {
		return
	}
	s.sec.mu.Lock()
	s.sec.quietStop = true
	s.sec.mu.Unlock()
	if s.running {
		// BFD goes AdminDown (bfdstop.go) while the sessions close.
		ctx, cancel := context.WithTimeout(context.Background(), 2*bfdAdminDownFor)
		closing := learnDiscriminators(ctx, s.upBFDSessions(ctx), bfdAdminDownFor, s.log)
		s.silenceBFD(ctx, closing)
		sent, first := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(sent)
			sendAdminDown(ctx, closing, first, s.log)
		}()
		<-first // BFD says AdminDown before BGP closes
		if err := s.bs.StopBgp(context.Background(), &api.StopBgpRequest{AllowGracefulRestart: gr}); err != nil {
			s.log.Error("stop BGP", zap.Error(err))
		}
		<-sent
		cancel()
	}
	// Stop ends the BFD server (and frees its port); its own StopBgp finds
	// BGP stopped already, which the log adapter keeps quiet.
	s.bs.Stop()
	s.watchCancel()
	s.bs = nil
	s.running = false
	s.applied = Desired{}
	s.bfdOn = map[string]*BFD{}
	s.policy = nil
	s.sec.mu.Lock()
	s.sec.quietStop = false
	s.sec.mu.Unlock()
	s.mu.Lock()
	for _, st := range s.status {
		st.State, st.Established, st.Since = "idle", false, time.Now()
	}
	s.mu.Unlock()
}

// Set makes GoBGP hold d, changing only what differs from the last Desired:
// untouched sessions never reset, and routes are added and withdrawn in one
// batch each. It waits until Run has started, or ctx ends. The error joins
// every per-peer and per-route problem; the rest of d is applied anyway.
func (s *Server) Set(ctx context.Context, d Desired) error {
	select {
	case <-s.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.setMu.Lock()
	defer s.setMu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	d, errs := normalize(d)
	s.sec.set(passwords(d.Peers))
	if len(d.Peers) == 0 && !s.running {
		// GoBGP starts with the first peer; until then there is nothing to hold.
		s.syncStatus(d.Peers)
		return errors.Join(errs...)
	}
	if s.running && len(d.Peers) > 0 && d.RouterID != s.routerID {
		// GoBGP cannot change its router ID in place. Peers with graceful
		// restart keep our routes across it, as across a process restart.
		s.log.Info("router ID changed: restarting BGP", zap.Stringer("oldRouterID", s.routerID), zap.Stringer("routerID", d.RouterID))
		s.stopInstance(true)
		s.newInstance()
		s.restarting, s.restartBy = true, time.Now().Add(grRestartTime*time.Second)
	}
	if !s.running {
		// Every peer carries its own local ASN, so the global one (which
		// GoBGP reads only for BMP and listings) is set once and never
		// forces a restart.
		if err := s.start(ctx, d.RouterID, d.Peers[0].MyASN); err != nil {
			return errors.Join(append(errs, err)...)
		}
	}
	s.syncStatus(d.Peers)
	errs = append(errs, s.apply(ctx, d)...)
	return errors.Join(errs...)
}

func (s *Server) start(ctx context.Context, routerID netip.Addr, asn uint32) error {
	if !routerID.Is4() {
		return fmt.Errorf("router ID %v: not an IPv4 address", routerID)
	}
	err := s.bs.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn:        asn,
		RouterId:   routerID.String(),
		ListenPort: -1, // we dial; routers need not reach us on 179
		// Only unicast tables: without a list GoBGP makes one per family it
		// knows, in two RIBs, 2,048 shards each (~9 MB of heap for nothing).
		Families: []uint32{familyIPv4Unicast, familyIPv6Unicast},
	}})
	if err != nil {
		return fmt.Errorf("start BGP: %w", err)
	}
	// We install nothing we learn: a router sending a full table costs
	// only its Adj-RIB-In. The global import policy also filters our own
	// paths on their way into the RIB, so those are accepted by name.
	imp := &api.Policy{Name: "herald-import", Statements: []*api.Statement{{
		Name:       "herald-import-local",
		Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
		Actions:    &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT},
	}}}
	if err := s.bs.AddPolicy(ctx, &api.AddPolicyRequest{Policy: imp}); err != nil {
		return fmt.Errorf("import policy: %w", err)
	}
	err = s.bs.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name: "global", Direction: api.PolicyDirection_POLICY_DIRECTION_IMPORT,
		Policies:      []*api.Policy{{Name: imp.Name}},
		DefaultAction: api.RouteAction_ROUTE_ACTION_REJECT,
	}})
	if err != nil {
		return fmt.Errorf("import policy: %w", err)
	}
	s.running, s.routerID, s.asn = true, routerID, asn
	s.log.Info("BGP started", zap.Stringer("routerID", routerID), zap.Uint32("asn", asn))
	return nil
}

// normalize sorts peers by name, drops invalid or duplicate ones (reporting
// them) and masks route prefixes.
func normalize(d Desired) (Desired, []error) {
	var errs []error
	out := d
	out.Peers = nil
	seen := map[string]bool{}
	for _, p := range d.Peers {
		switch {
		case seen[p.Name]:
			errs = append(errs, fmt.Errorf("peer %s: duplicate name", p.Name))
			continue
		case !p.Address.IsValid():
			errs = append(errs, fmt.Errorf("peer %s: no address", p.Name))
			continue
		case p.ASN == 0 || p.MyASN == 0:
			errs = append(errs, fmt.Errorf("peer %s: ASN 0", p.Name))
			continue
		}
		if p.HoldTime == 0 {
			// RFC 4271 allows 0 (no keepalives); GoBGP turns 0 into 90 s.
			errs = append(errs, fmt.Errorf("peer %s: hold time 0 is not supported, 90 s is used", p.Name))
		}
		seen[p.Name] = true
		p.Address = p.Address.Unmap()
		out.Peers = append(out.Peers, p)
	}
	slices.SortFunc(out.Peers, func(a, b Peer) int { return cmp.Compare(a.Name, b.Name) })
	out.Routes = make(map[netip.Prefix][]string, len(d.Routes))
	for p, advs := range d.Routes {
		if !p.IsValid() {
			continue
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked()
		out.Routes[p] = append(out.Routes[p], advs...)
	}
	return out, errs
}

func passwords(peers []Peer) []string {
	var out []string
	for _, p := range peers {
		if p.Password != "" {
			out = append(out, p.Password)
		}
	}
	return out
}

// apply makes GoBGP go from s.applied to d, in an order that keeps every
// peer's view right at each step: prefix sets before paths, paths before
// new sessions, soft resets last.
func (s *Server) apply(ctx context.Context, d Desired) []error {
	old := s.applied
	rd := diffRoutes(old, d)
	leaveLater, errs := s.updateSets(ctx, d, rd)
	policyChanged, oldPol, err := s.updatePolicy(ctx, d)
	if err != nil {
		errs = append(errs, err)
	}
	routes, rerrs := s.updatePaths(old, d, rd)
	errs = append(errs, rerrs...)
	for k, pfxs := range leaveLater {
		errs = append(errs, s.leave(ctx, k, pfxs)...)
	}
	s.dropOldSets(ctx, old, d)
	peers, perrs := s.updatePeers(ctx, old, d)
	errs = append(errs, perrs...)
	errs = append(errs, s.softResets(ctx, old, d, rd, policyChanged, oldPol)...)
	s.applied = Desired{
		RouterID: d.RouterID, NextHopV4: d.NextHopV4, NextHopV6: d.NextHopV6,
		Peers: peers, Advertisements: slices.Clone(d.Advertisements), Routes: routes,
	}
	return errs
}

// updateSets gives prefix sets their new prefixes before the paths
// propagate, and takes out those of prefixes that stay; the ones of
// withdrawn prefixes are returned, to leave after the withdrawal.
func (s *Server) updateSets(ctx context.Context, d Desired, rd routeDiff) (map[setKey][]netip.Prefix, []error) {
	var errs []error
	for k, pfxs := range rd.Join {
		err := s.bs.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: apiPrefixSet(prefixSetName(k), pfxs)})
		if err != nil {
			errs = append(errs, fmt.Errorf("prefix set %s: %w", prefixSetName(k), err))
		}
	}
	later := map[setKey][]netip.Prefix{}
	for k, pfxs := range rd.Leave {
		var now []netip.Prefix
		for _, p := range pfxs {
			if _, ok := d.Routes[p]; ok {
				now = append(now, p)
			} else {
				later[k] = append(later[k], p)
			}
		}
		errs = append(errs, s.leave(ctx, k, now)...)
	}
	return later, errs
}

// updatePolicy installs the export policy d needs if it differs from the
// installed one; it returns whether it did and the one it replaced.
func (s *Server) updatePolicy(ctx context.Context, d Desired) (bool, exportPolicy, error) {
	pol := buildExport(d)
	var old exportPolicy
	if s.policy != nil {
		old = *s.policy
	}
	if s.policy != nil && pol.equal(old) {
		return false, old, nil
	}
	// A failed install keeps the old policy in force and on record, so the
	// next Set tries again; each try gets fresh names.
	s.gen++
	installed, err := installPolicy(ctx, s.bs, pol, s.gen, s.policy, s.policyGen)
	if !installed {
		return false, old, err
	}
	s.policy, s.policyGen = &pol, s.gen
	s.logNextHops(d)
	return true, old, err
}

// updatePaths announces new prefixes and withdraws gone ones, one batch
// each; it returns the routes GoBGP now holds (a failed prefix is retried
// by the next Set).
func (s *Server) updatePaths(old, d Desired, rd routeDiff) (map[netip.Prefix][]string, []error) {
	var errs []error
	routes := make(map[netip.Prefix][]string, len(d.Routes))
	maps.Copy(routes, d.Routes)
	if len(rd.Announce) > 0 {
		paths := make([]*apiutil.Path, 0, len(rd.Announce))
		var sent []netip.Prefix
		for _, p := range rd.Announce {
			ap, err := apiPath(p, false)
			if err != nil {
				errs = append(errs, err)
				delete(routes, p)
				continue
			}
			paths = append(paths, ap)
			sent = append(sent, p)
		}
		t := time.Now()
		// GoBGP answers a batch whole: one refused path fails the call and
		// the batch is tried again by the next Set.
		if len(paths) > 0 {
			if _, err := s.bs.AddPath(apiutil.AddPathRequest{Paths: paths}); err != nil {
				errs = append(errs, fmt.Errorf("announce %d prefixes: %w", len(paths), err))
				for _, p := range sent {
					delete(routes, p)
				}
			}
		}
		s.log.Debug("announced", zap.Int("prefixes", len(paths)), zap.Duration("took", time.Since(t)))
	}
	if len(rd.Withdraw) > 0 {
		paths := make([]*apiutil.Path, 0, len(rd.Withdraw))
		for _, p := range rd.Withdraw {
			ap, err := apiPath(p, true)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			paths = append(paths, ap)
		}
		if err := s.bs.DeletePath(apiutil.DeletePathRequest{Paths: paths}); err != nil {
			errs = append(errs, fmt.Errorf("withdraw %d prefixes: %w", len(paths), err))
			for _, p := range rd.Withdraw {
				routes[p] = old.Routes[p] // still held: retry next time
			}
		}
	}
	return routes, errs
}

// dropOldSets deletes the prefix sets of advertisements that are gone.
func (s *Server) dropOldSets(ctx context.Context, old, d Desired) {
	for _, a := range old.Advertisements {
		if slices.ContainsFunc(d.Advertisements, func(b Advertisement) bool { return b.Name == a.Name }) {
			continue
		}
		for _, v6 := range []bool{false, true} {
			ds := &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_PREFIX, Name: prefixSetName(setKey{a.Name, v6})}
			// Absent when never used: nothing to report.
			_ = s.bs.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: ds, All: true})
		}
	}
}

// updatePeers removes and re-adds changed peers, then adds new ones, which
// find every route in place and send them in their initial update. It
// returns the peers GoBGP now holds (a refused one is retried next Set).
func (s *Server) updatePeers(ctx context.Context, old, d Desired) ([]Peer, []error) {
	var errs []error
	pd := diffPeers(old.Peers, d.Peers)
	peers := slices.Clone(old.Peers)
	drop := func(p Peer) bool {
		if err := s.bs.DeletePeer(ctx, &api.DeletePeerRequest{Address: p.Address.String()}); err != nil {
			errs = append(errs, fmt.Errorf("peer %s: delete: %w", p.Name, err))
			return false
		}
		peers = slices.DeleteFunc(peers, func(q Peer) bool { return q.Name == p.Name })
		return true
	}
	add := func(p Peer) {
		if err := s.bs.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(p, s.restarting && p.GracefulRestart && time.Now().Before(s.restartBy), false)}); err != nil {
			errs = append(errs, fmt.Errorf("peer %s: %w", p.Name, err))
			s.setError(p.Name, err.Error())
			return
		}
		peers = append(peers, p)
		delete(s.bfdOn, p.Name)
	}
	for _, p := range pd.Delete {
		if drop(p) {
			s.log.Info("peer removed", zap.String("peer", p.Name))
		}
	}
	for _, p := range pd.Change {
		i := slices.IndexFunc(old.Peers, func(q Peer) bool { return q.Name == p.Name })
		if drop(old.Peers[i]) {
			s.log.Info("peer changed: re-adding", zap.String("peer", p.Name))
			add(p)
		}
	}
	for _, p := range pd.Add {
		add(p)
	}
	// A peer whose BFD alone changed keeps its session; watchBFD applies it.
	for i, p := range peers {
		if j := slices.IndexFunc(d.Peers, func(q Peer) bool { return q.Name == p.Name }); j >= 0 && sameSession(p, d.Peers[j]) {
			peers[i] = d.Peers[j]
		}
	}
	s.pokeBFD()
	slices.SortFunc(peers, func(a, b Peer) int { return cmp.Compare(a.Name, b.Name) })
	if slices.ContainsFunc(peers, func(p Peer) bool { return p.GracefulRestart }) {
		s.restarting = false // the first table has gone to the GR peers
	}
	return peers, errs
}

// softResets sends a fresh copy of the table (never a session reset) to
// the peers that kept their session but whose export view changed.
func (s *Server) softResets(ctx context.Context, old, d Desired, rd routeDiff, policyChanged bool, oldPol exportPolicy) []error {
	reset := affectedPeers(old, d, rd.Changed)
	if policyChanged {
		for _, p := range old.Peers {
			if !slices.ContainsFunc(d.Peers, func(q Peer) bool { return q.Name == p.Name && sameSession(p, q) }) {
				continue
			}
			if oldPol.peerView(p.Address) != s.policy.peerView(p.Address) && !slices.Contains(reset, p.Name) {
				reset = append(reset, p.Name)
			}
		}
	}
	slices.Sort(reset)
	var errs []error
	for _, name := range reset {
		i := slices.IndexFunc(d.Peers, func(q Peer) bool { return q.Name == name })
		err := s.bs.ResetPeer(ctx, &api.ResetPeerRequest{
			Address: d.Peers[i].Address.String(), Soft: true, Direction: api.ResetPeerRequest_DIRECTION_OUT,
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("peer %s: soft reset out: %w", name, err))
		}
	}
	return errs
}

func (s *Server) leave(ctx context.Context, k setKey, pfxs []netip.Prefix) []error {
	if len(pfxs) == 0 {
		return nil
	}
	err := s.bs.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: apiPrefixSet(prefixSetName(k), pfxs)})
	if err != nil {
		return []error{fmt.Errorf("prefix set %s: %w", prefixSetName(k), err)}
	}
	return nil
}

func (s *Server) logNextHops(d Desired) {
	var v4, v6 bool
	for _, p := range d.Peers {
		v4 = v4 || p.Address.Is4()
		v6 = v6 || p.Address.Is6()
	}
	if v6 && !d.NextHopV4.IsValid() {
		s.log.Info("no IPv4 next hop: IPv4 prefixes are skipped on IPv6 sessions")
	}
	if v4 && !d.NextHopV6.IsValid() {
		s.log.Info("no IPv6 next hop: IPv6 prefixes are skipped on IPv4 sessions")
	}
}

// watchBFD runs each peer's BFD session only while its BGP session is
// Established, until ctx ends. A router's BFD session for a neighbour is
// typically (re)made when BGP comes up — FRR replaces the one it had with
// a new discriminator — so a BFD session started earlier binds to the old
// one, expires and resets the fresh BGP session once more.
func (s *Server) watchBFD(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.bfdPoke:
		}
		s.setMu.Lock()
		if s.bs != nil && s.running {
			s.syncBFD(ctx)
		}
		s.setMu.Unlock()
	}
}

// syncBFD runs each Established peer's BFD session with its profile and
// stops the others'. Changing only BFD never resets a session (GoBGP's
// UpdatePeer); a failed change is tried again a second later. Called with
// setMu held.
func (s *Server) syncBFD(ctx context.Context) {
	for _, p := range s.applied.Peers {
		s.mu.Lock()
		st, ok := s.status[p.Name]
		up := ok && st.Established
		s.mu.Unlock()
		var want *BFD
		if up {
			want = p.BFD
		}
		if reflect.DeepEqual(want, s.bfdOn[p.Name]) {
			continue
		}
		q := p
		q.BFD = want
		if _, err := s.bs.UpdatePeer(ctx, &api.UpdatePeerRequest{Peer: apiPeer(q, false, want != nil)}); err != nil {
			s.log.Warn("BFD not updated; trying again", zap.String("peer", p.Name), zap.Bool("on", want != nil), zap.Error(err))
			time.AfterFunc(time.Second, s.pokeBFD)
			continue
		}
		if want == nil {
			delete(s.bfdOn, p.Name)
		} else {
			s.bfdOn[p.Name] = want
		}
	}
}

// pokeBFD asks watchBFD to look again (coalesced).
func (s *Server) pokeBFD() {
	select {
	case s.bfdPoke <- struct{}{}:
	default:
	}
}
