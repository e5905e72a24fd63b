package l2

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Options configure an Announcer. Zero values take the defaults.
type Options struct {
	Log        *zap.Logger           // nil: no logs
	Registerer prometheus.Registerer // nil: metrics not registered
	// GratuitousRepeat is how many gratuitous ARP / unsolicited NA follow the
	// first one when an address starts being answered on an interface
	// (default 3; negative: none), GratuitousInterval the time between them
	// (default 200ms). Repeats cover a lost frame and a switch that is slow
	// to learn the new port.
	GratuitousRepeat   int
	GratuitousInterval time.Duration
	// RefreshInterval is how often every answered address is announced
	// again (default 30s; negative: never). Each refresh also reopens the
	// sockets of an interface whose MAC or index changed: a new MAC does not
	// make a socket fail.
	RefreshInterval time.Duration
}

const (
	defaultRepeat   = 3
	defaultInterval = 200 * time.Millisecond
	defaultRefresh  = 30 * time.Second

	writeTimeout = time.Second            // bounds a send, so a stuck link cannot stall Set
	minRetry     = 250 * time.Millisecond // first wait before reopening a failed socket
	maxRetry     = 5 * time.Second        // longest wait between reopen attempts
	maxFrame     = 1 << 16                // read buffer: any frame, jumbo or not
)

// proto is the protocol of a listener and the metrics' proto label.
type proto string

const (
	protoARP proto = "arp" // IPv4 addresses
	protoNDP proto = "ndp" // IPv6 addresses
)

func protoOf(addr netip.Addr) proto {
	if addr.Is4() {
		return protoARP
	}
	return protoNDP
}

// lkey names a listener: one socket, for one protocol on one interface.
type lkey struct {
	iface string
	proto proto
}

// An Announcer answers ARP and NDP for a set of addresses on a set of
// interfaces. Build it with New, give it addresses with Set and run it with
// Run.
//
// An (address, interface) is announced, 1+GratuitousRepeat times, whenever
// it starts being answered: when Set adds it, or when its interface's socket
// opens later or reopens after a failure. Each interface has an ARP socket
// while it has IPv4 addresses and an NDP socket while it has IPv6 ones;
// opening them needs CAP_NET_RAW.
//
// Every frame those sockets see is also checked for another device's claim
// to an answered address, reported on Conflicts; Probe uses the same
// sockets to ask whether an address is free before it is Set.
type Announcer struct {
	opts Options
	log  *zap.Logger
	m    *metrics
	sys  system

	mu      sync.Mutex
	desired map[netip.Addr][]string // the last Set, normalised; never mutated
	updates chan chan struct{}      // to the running loop; nil when not running
	stopped chan struct{}           // closed when the current Run has ended

	// answer is what a responder consults for every request: the addresses
	// to answer for, per listener. The loop replaces it whole; responders
	// hold the read lock while they check and reply, so once the loop has
	// swapped it no reply for a removed address is still in flight.
	answerMu sync.RWMutex
	answer   map[lkey]map[netip.Addr]struct{}
	quiet    map[netip.Addr]bool // SetQuiet

	// ownMACs are the MACs of every open listener: a frame from one of
	// them is this node's own, never a conflict, even when it arrives on
	// another interface of the same segment. The loop replaces it whole.
	ownMACs atomic.Pointer[map[[6]byte]struct{}]

	// probeMu guards probing, the addresses being probed per listener and
	// the Probe calls waiting on each; responders consult it for every
	// frame that claims an address.
	probeMu sync.RWMutex
	probing map[lkey]map[netip.Addr][]*probe
	probes  chan probeReq // to the running loop; nil when not running (guarded by mu)
	// announces asks the running loop to announce an address again; nil
	// when not running (guarded by mu).
	announces chan announceReq
	idle      chan struct{} // a Probe ended: the loop may close listeners only it needed

	conflicts chan Conflict
	limiter   limiter
}

// New returns an Announcer with no addresses. It starts nothing.
func New(opts Options) *Announcer {
	return newAnnouncer(opts, kernel)
}

func newAnnouncer(opts Options, sys system) *Announcer {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	switch {
	case opts.GratuitousRepeat == 0:
		opts.GratuitousRepeat = defaultRepeat
	case opts.GratuitousRepeat < 0:
		opts.GratuitousRepeat = 0
	}
	if opts.GratuitousInterval <= 0 {
		opts.GratuitousInterval = defaultInterval
	}
	if opts.RefreshInterval == 0 {
		opts.RefreshInterval = defaultRefresh
	}
	return &Announcer{
		opts: opts, log: opts.Log, m: newMetrics(opts.Registerer), sys: sys,
		probing:   map[lkey]map[netip.Addr][]*probe{},
		idle:      make(chan struct{}, 1),
		conflicts: make(chan Conflict, conflictBuffer),
		limiter:   limiter{last: map[limitKey]time.Time{}},
	}
}

// Set replaces the whole set of addresses to answer for: each address maps
// to the interfaces to answer on. It may be called at any time; before Run,
// the set is applied when Run starts. While Run runs, Set returns once the
// set is in force: a removed address is not answered any more, and an
// added (address, interface) is answered and has had its first gratuitous
// ARP / unsolicited NA sent (later if its interface cannot be opened yet).
func (a *Announcer) Set(desired map[netip.Addr][]string) {
	next := make(map[netip.Addr][]string, len(desired))
	for addr, names := range desired {
		ip := addr.Unmap().WithZone("")
		if !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() || ip.IsLoopback() {
			a.log.Warn("not an address to answer for; ignored", zap.Stringer("ip", addr))
			continue
		}
		ifaces := slices.DeleteFunc(slices.Concat(next[ip], names), func(n string) bool { return n == "" })
		slices.Sort(ifaces)
		if ifaces = slices.Compact(ifaces); len(ifaces) > 0 {
			next[ip] = ifaces
		}
	}

	a.mu.Lock()
	a.desired = next
	updates, stopped := a.updates, a.stopped
	a.mu.Unlock()
	if updates == nil {
		return
	}
	done := make(chan struct{})
	select {
	case updates <- done:
	case <-stopped:
		return
	}
	select {
	case <-done:
	case <-stopped:
	}
}

// Announce sends addr's gratuitous ARP or unsolicited NA again on every
// interface it is answered on, as when it started being answered: now,
// then GratuitousRepeat more times. It wins neighbours' caches back from
// another device that claimed the address. It returns once the first
// announcements are sent, and does nothing for an address not answered or
// while Run is not running.
func (a *Announcer) Announce(addr netip.Addr) {
	a.mu.Lock()
	announces, stopped := a.announces, a.stopped
	a.mu.Unlock()
	if announces == nil {
		return
	}
	req := announceReq{addr: addr.Unmap().WithZone(""), done: make(chan struct{})}
	select {
	case announces <- req:
	case <-stopped:
		return
	}
	<-req.done // the loop closes it as soon as it has sent
}

// announceReq asks the loop to announce addr again.
type announceReq struct {
	addr netip.Addr
	done chan struct{}
}

// SetQuiet replaces the set of quiet addresses: answered (while Set lists
// them) only to a request sent directly to this node's MAC, never to one
// sent to everyone. An address being handed to another node is quiet: a
// client asking everyone hears only the new owner, while one that checks
// the entry it has cached, directly, is still answered until the old owner
// lets go (and its packets are still delivered meanwhile).
func (a *Announcer) SetQuiet(addrs map[netip.Addr]bool) {
	a.answerMu.Lock()
	a.quiet = addrs
	a.answerMu.Unlock()
}

// Owned returns the addresses of the last Set, sorted.
func (a *Announcer) Owned() []netip.Addr {
	a.mu.Lock()
	out := slices.Collect(maps.Keys(a.desired))
	a.mu.Unlock()
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Run answers and announces until ctx ends, then closes every socket and
// returns nil once all its goroutines have ended. An interface that cannot
// be opened, or whose socket fails, is retried on a timer; it never stops
// the others.
func (a *Announcer) Run(ctx context.Context) error {
	updates, probes, announces, stopped := make(chan chan struct{}), make(chan probeReq), make(chan announceReq), make(chan struct{})
	a.mu.Lock()
	if a.updates != nil {
		a.mu.Unlock()
		return errors.New("l2: Announcer is already running")
	}
	a.updates, a.probes, a.announces, a.stopped = updates, probes, announces, stopped
	a.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	l := &loop{
		a:         a,
		ctx:       ctx,
		log:       a.log,
		updates:   updates,
		probes:    probes,
		announces: announces,
		failures:  make(chan failure),
		listeners: map[lkey]*listener{},
		bursts:    map[pair]*burst{},
	}
	defer func() {
		cancel()
		l.stop()
		a.mu.Lock()
		a.updates, a.probes, a.announces = nil, nil, nil
		a.mu.Unlock()
		close(stopped)
	}()
	return l.run()
}
