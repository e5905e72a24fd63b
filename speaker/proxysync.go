package speaker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"
)

// A new address is announced only once kube-proxy on this node has
// programmed it. Before that, a packet for it that reaches the node is not
// DNATed: the node routes it by its own table, usually back to the router,
// which sends it back (a loop until the TTL runs out), and the node's
// conntrack keeps that unNATed flow for up to two minutes (SYN_SENT), so a
// later connection that happens to reuse the client's port loops too.
// Measured in the lab (e2e/deploy): a client GETting through the router
// lost a connection some 30 s after the Service appeared, on a port that
// had looped in its first second.
//
// kube-proxy's /healthz reports, per IP family, when its proxier last
// completed a sync of the rules (the oldest over the families counts). A
// sync that completes after an address came may have begun before
// kube-proxy learnt of it; kube-proxy then syncs again, at most
// --iptables-min-sync-period (1 s by default) after the start of the one
// before. So an address first seen at t is announced once kube-proxy
// reports a sync completed after t and then none for proxySyncQuiet (kube-
// proxy, which may learn of an address a little after this speaker, had it
// by then), or a sync completed later than t + proxySyncQuiet, or no sync
// at all for proxySyncQuiet after t (kube-proxy, quicker than this speaker,
// synced it before: known only from an answer given that long after t);
// and after proxySyncWait at most (then it is announced
// anyway, and logged: a slow or absent kube-proxy must not keep a Service
// dark). Addresses known at the speaker's first decision are taken as
// programmed: a restarting speaker keeps announcing what its node served.

const (
	// proxySyncQuiet is kube-proxy's minimum sync period (1 s by default)
	// and a margin for the sync's own duration and for kube-proxy learning
	// of the address a little after this speaker.
	proxySyncQuiet = 1200 * time.Millisecond
	proxySyncWait  = 5 * time.Second
)

// ProxySync reads kube-proxy's health endpoint on this node. One poller
// (watchDataPath) asks it every dataPathPoll; the decision loop reads only
// what the last answer said and never waits for kube-proxy: a slow answer
// under load once held decisions, failovers included, for its whole 200 ms
// timeout.
type ProxySync struct {
	URL    string // e.g. http://127.0.0.1:10256/healthz
	client *http.Client

	mu     sync.Mutex
	synced map[string]time.Time // from the last answer; nil before one
	at     time.Time            // when that answer came
}

// NewProxySync returns a reader of kube-proxy's /healthz at url; nil when
// url is "" (a cluster without kube-proxy: nothing is held back).
func NewProxySync(url string) *ProxySync {
	if url == "" {
		return nil
	}
	return &ProxySync{URL: url, client: &http.Client{Timeout: 2 * dataPathPoll}}
}

// proxyHealth is the part of kube-proxy's /healthz answer read here.
type proxyHealth struct {
	Status map[string]struct {
		LastUpdated time.Time `json:"lastUpdated"`
	} `json:"status"`
}

// poll asks kube-proxy once. It remembers when kube-proxy last completed a
// sync of its rules for each family ("IPv4", "IPv6"), which an unhealthy
// kube-proxy (503) reports too, and returns nil when it answers 200.
func (p *ProxySync) poll(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
	if err != nil {
		return err
	}
	asked := time.Now() // the answer describes kube-proxy no earlier than this
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var h proxyHealth
	body := io.LimitReader(resp.Body, 64<<10)
	if err := json.NewDecoder(body).Decode(&h); err != nil {
		if resp.StatusCode == http.StatusOK {
			return nil // healthy; without sync times the gate waits for its limit
		}
		return fmt.Errorf("kube-proxy health %s (%s): %w", p.URL, resp.Status, err)
	}
	_, _ = io.Copy(io.Discard, body) // so the connection is reused
	synced := make(map[string]time.Time, len(h.Status))
	for fam, st := range h.Status {
		synced[fam] = st.LastUpdated
	}
	p.mu.Lock()
	p.synced, p.at = synced, asked
	p.mu.Unlock()
	if resp.StatusCode != http.StatusOK {
		return &proxyUnhealthy{resp.Status}
	}
	return nil
}

// lastSynced returns kube-proxy's sync times from its last answer and when
// that answer came (zero: none yet).
func (p *ProxySync) lastSynced() (map[string]time.Time, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.synced, p.at
}

// waiting is a new address held back.
type waiting struct {
	since time.Time // first seen
	first time.Time // the first sync completion seen after since; zero before
}

// programmed reports whether kube-proxy's last sync completion (last, if
// known), as it stood when kube-proxy last answered (asOf), shows the
// address programmed (see the rule above).
func (w *waiting) programmed(known bool, last, asOf time.Time) bool {
	if !known {
		return false
	}
	switch {
	case last.After(w.since.Add(proxySyncQuiet)):
		return true
	case last.After(w.since) && last.After(w.first):
		// A sync ended after the address came: kube-proxy may not have
		// learnt of it yet when the sync began (its watch can lag this
		// speaker's), so wait for quiet after the last one.
		w.first = last
		return false
	}
	// No sync since the first one after the address came, or none at all
	// since it came (kube-proxy had synced it before this speaker looked):
	// a change left out would have been synced within kube-proxy's period.
	return asOf.Sub(later(w.since, w.first)) >= proxySyncQuiet
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// newProgramGate holds back new addresses until p reports them programmed.
func newProgramGate(p *ProxySync) programGate {
	if p == nil {
		return programGate{}
	}
	return programGate{read: p.lastSynced, where: p.URL, now: time.Now}
}

// programGate holds back addresses kube-proxy has not programmed yet. Only
// the speaker's loop touches it.
type programGate struct {
	// read returns kube-proxy's last sync per family and when it said so
	// (without I/O); nil: nothing is held back. where names it in logs.
	read    func() (map[string]time.Time, time.Time)
	where   string
	now     func() time.Time
	started bool
	seen    map[netip.Addr]bool
	pending map[netip.Addr]*waiting
}

// filter returns svcs without the addresses kube-proxy has not programmed,
// those held back (each Service with only them), and when to look again
// at the latest (0: nothing waits): when the first of them has waited
// proxySyncWait. Meanwhile each answer of kube-proxy's asks for a decision
// (watchDataPath).
func (g *programGate) filter(svcs []ServiceInfo, log *zap.Logger) (passed, held []ServiceInfo, wait time.Duration) {
	if g.read == nil {
		return svcs, nil, 0
	}
	now := g.now()
	current := map[netip.Addr]bool{}
	for _, s := range svcs {
		for _, a := range s.Addrs {
			current[a] = true
		}
	}
	if !g.started {
		g.started, g.seen, g.pending = true, current, map[netip.Addr]*waiting{}
		return svcs, nil, 0
	}
	for a := range current {
		if !g.seen[a] {
			g.seen[a], g.pending[a] = true, &waiting{since: now}
		}
	}
	for a := range g.seen {
		if !current[a] {
			delete(g.seen, a)
			delete(g.pending, a) // back later: new again
		}
	}
	if len(g.pending) == 0 {
		return svcs, nil, 0
	}
	synced, asOf := g.read()
	// Every family's proxier must have synced: kube-proxy's proxiers each
	// sync on every change, and a dual-stack Service's two addresses then
	// go out together (one Event, one status change, not two).
	var last time.Time
	known := len(synced) > 0
	for _, t := range synced {
		if last.IsZero() || t.Before(last) {
			last = t
		}
	}
	wait = proxySyncWait
	for a, w := range g.pending {
		if w.programmed(known, last, asOf) {
			log.Info("kube-proxy has programmed a new address", zap.Stringer("ip", a), zap.Duration("after", now.Sub(w.since)))
			delete(g.pending, a)
		} else if left := proxySyncWait - now.Sub(w.since); left <= 0 {
			log.Info("announcing an address kube-proxy has not reported programming", zap.Stringer("ip", a),
				zap.Duration("waited", now.Sub(w.since)), zap.String("kubeProxy", g.where))
			delete(g.pending, a)
		} else {
			wait = min(wait, left)
		}
	}
	if len(g.pending) == 0 {
		return svcs, nil, 0
	}
	passed = make([]ServiceInfo, 0, len(svcs))
	for _, s := range svcs {
		kept, back := s, s
		kept.Addrs, back.Addrs = nil, nil
		for _, a := range s.Addrs {
			if _, wait := g.pending[a]; wait {
				back.Addrs = append(back.Addrs, a)
			} else {
				kept.Addrs = append(kept.Addrs, a)
			}
		}
		if len(kept.Addrs) > 0 {
			passed = append(passed, kept)
		}
		if len(back.Addrs) > 0 {
			held = append(held, back)
		}
	}
	return passed, held, wait
}
