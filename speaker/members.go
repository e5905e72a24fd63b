package speaker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
)

// MemberOptions configure the speakers' membership. The defaults (see
// DefaultMemberOptions) detect a silent node in about 0.3 s on a LAN.
type MemberOptions struct {
	Node      string     // this node's name
	Bind      netip.Addr // the node's address
	Port      int
	SecretKey []byte // 16, 24 or 32 bytes (AES); membership traffic is encrypted with it
	// HoldDown is how long a node must be a member before it takes addresses
	// back from others.
	HoldDown time.Duration
	// ProbeInterval, ProbeTimeout and SuspicionMult set failure detection:
	// a node that stops answering is suspected after about
	// ProbeInterval+ProbeTimeout and declared dead SuspicionMult probe
	// intervals later (twice that without a second witness).
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	SuspicionMult int
	// MACs reads this node's interface MACs (l2.LocalMACs), published from
	// the first join on, so that no other speaker takes this node's first
	// announcements for a foreign device's.
	MACs func() []net.HardwareAddr
	Log  *zap.Logger
}

// DefaultMemberOptions are tuned for a LAN of busy nodes. Each speaker
// sends about 1/ProbeInterval probes a second (8 with 120 ms, ~120 bytes
// each, plus the acks): some 2 KB/s per node, whatever the cluster size. A
// silent node is declared dead in about 0.5 s; a live one is declared dead
// only if it cannot answer for about as long (a probe interval and the
// suspicion, 3 × 120 ms), and even then keeps its addresses for the grace
// while its host answers (stalls.go). With 60 ms and 30 ms (detection in
// 0.3 s), two busy loops per core outside the cluster made memberlist
// declare live speakers dead 63 times in 10 minutes (`make bench`, l2stress).
func DefaultMemberOptions() MemberOptions {
	return MemberOptions{Port: 7946, HoldDown: 10 * time.Second, ProbeInterval: 120 * time.Millisecond, ProbeTimeout: 60 * time.Millisecond, SuspicionMult: 3}
}

// Members tracks which speakers are alive, over memberlist (SWIM).
type Members struct {
	opts    MemberOptions
	changed chan struct{}

	mu            sync.Mutex
	ml            *memberlist.Memberlist
	peers         []string  // addresses to join, from Node objects
	joined        time.Time // when this node last (re)joined the others
	isolated      bool      // this node lost its link and has not rejoined since
	isolatedAt    time.Time
	startedAt     time.Time            // when memberlist started
	triedJoin     bool                 // a join of the known peers has completed (merged, or nobody answered)
	wake          chan struct{}        // new peers to join: rejoin now, not at the next tick
	meta          map[string]nodeMeta  // what each member says of itself
	addrs         map[string]string    // each member's address, noted at its events (memberlist rewrites the nodes Members returns)
	dataPathOK    bool                 // this node's data path (kube-proxy) works
	dataPathSince time.Time            // when it last came back (zero: never failed)
	macs          []net.HardwareAddr   // this node's interface MACs, published
	stepBacks     uint64               // times this node stepped back (StepBack)
	steppedAt     time.Time            // the last step-back
	stepCode      string               // its reason
	suspectedAt   time.Time            // when this node last refuted a suspicion of it
	suspicions    uint64               // suspicions refuted so far
	seenSince     map[string]time.Time // when this node saw each member come alive
	lastSettled   map[string]bool      // Alive() at the last tick
	carrier       bool                 // the bind interface's link was up at the last look
	leaving       bool                 // this node is stopping: it says so before it leaves
	stalled       map[string]*stalledMember
	hostCheck     func(addr string) error // nil: no grace for stalled members (stalls.go)
	beatAt        time.Time               // this node's last beat, its longest recent gap and when (stalls.go)
	stallGap      time.Duration
	stallAt       time.Time
	link          string // the bind interface (only Run's goroutine touches link and linkFound)
	linkFound     time.Time
}

// NewMembers prepares membership; Run starts it.
func NewMembers(opts MemberOptions) *Members {
	return &Members{opts: opts, changed: make(chan struct{}, 1), wake: make(chan struct{}, 1), meta: map[string]nodeMeta{}, addrs: map[string]string{},
		seenSince: map[string]time.Time{}, stalled: map[string]*stalledMember{}, hostCheck: dialHost, carrier: true, dataPathOK: true}
}

// Changes signals (coalesced) that membership or settledness changed.
func (m *Members) Changes() <-chan struct{} { return m.changed }

func (m *Members) notify() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// SetPeers gives the addresses of the other speakers (node addresses); Run
// joins those that are not members.
func (m *Members) SetPeers(peers []string) {
	m.mu.Lock()
	added := slices.ContainsFunc(peers, func(p string) bool { return !slices.Contains(m.peers, p) })
	m.peers = peers
	m.mu.Unlock()
	if added {
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
}

// Run joins the cluster and keeps rejoining known peers that are missing
// (a healed partition) until ctx ends; then it leaves, so the others take
// over at once instead of waiting to detect a failure.
func (m *Members) Run(ctx context.Context) error {
	cfg := memberlist.DefaultLANConfig()
	cfg.Name = m.opts.Node
	cfg.BindAddr = m.opts.Bind.String()
	cfg.BindPort = m.opts.Port
	cfg.AdvertiseAddr = m.opts.Bind.String()
	cfg.AdvertisePort = m.opts.Port
	cfg.SecretKey = m.opts.SecretKey
	cfg.ProbeInterval = m.opts.ProbeInterval
	cfg.ProbeTimeout = m.opts.ProbeTimeout
	cfg.SuspicionMult = m.opts.SuspicionMult
	cfg.SuspicionMaxTimeoutMult = 2
	cfg.GossipInterval = 20 * time.Millisecond
	cfg.TCPTimeout = time.Second
	cfg.PushPullInterval = 5 * time.Second
	cfg.Events = &memberEvents{m}
	cfg.Delegate = &memberDelegate{m}
	cfg.Logger = log.New(zapWriter{m.opts.Log.Named("memberlist"), m.refuted, &recentLines{}}, "", 0)
	m.mu.Lock()
	m.joined = time.Now()
	if m.opts.MACs != nil && m.macs == nil {
		m.macs = m.opts.MACs()
	}
	m.mu.Unlock()
	ml, err := memberlist.Create(cfg)
	if err != nil {
		return fmt.Errorf("memberlist on %s:%d: %w", m.opts.Bind, m.opts.Port, err)
	}
	m.mu.Lock()
	m.ml, m.startedAt = ml, time.Now()
	m.mu.Unlock()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	links, poll := m.watchLinks(ctx)
	defer poll.Stop()
	go m.beat(ctx)
	m.rejoin(ml)
	for {
		select {
		case <-ctx.Done():
			// Leaving is a courtesy that speeds up the others' view; when
			// every speaker stops at once (uninstall) nobody is left to
			// hear it, and that is no reason to exit with an error. It
			// says it is leaving first, so that the others do not take
			// its death for a stall (stalls.go): a gossip round or two.
			m.mu.Lock()
			m.leaving = true
			m.mu.Unlock()
			_ = ml.UpdateNode(leavingSaid)
			if err := ml.Leave(time.Second); err != nil {
				m.opts.Log.Info("left the speakers without a goodbye", zap.Error(err))
			}
			return ml.Shutdown()
		case <-m.wake:
			m.rejoin(ml)
		case <-tick.C:
			m.rejoin(ml)
			if m.settleTick() {
				m.notify()
			}
			m.checkCarrier(ml) // also ends isolation after a few seconds alone
		case _, ok := <-links:
			if !ok {
				links = nil
				if ctx.Err() != nil {
					continue // shutting down: the next turn leaves
				}
				m.opts.Log.Info("link events ended: reading the carrier every 50 ms")
				poll.Reset(linkPoll)
			}
			m.checkCarrier(ml)
		case <-poll.C:
			m.checkCarrier(ml)
		}
	}
}

// linkPoll is how often the carrier is read when the kernel's link events
// cannot be had.
const linkPoll = 50 * time.Millisecond

// leavingSaid bounds the wait for a stopping node's "leaving" to be
// gossiped (every 20 ms) before it leaves.
const leavingSaid = 50 * time.Millisecond

// watchLinks subscribes to the kernel's link events; without them it
// returns a timer that polls. The timer is stopped when events come.
func (m *Members) watchLinks(ctx context.Context) (<-chan struct{}, *time.Ticker) {
	poll := time.NewTicker(linkPoll)
	links, err := linkEvents(ctx)
	if err != nil {
		m.opts.Log.Info("no link events: reading the carrier every 50 ms", zap.Error(err))
		return nil, poll
	}
	poll.Stop()
	return links, poll
}

// checkCarrier looks at the bind interface's carrier and, on a change,
// tells the speaker and rejoins (a link that came back).
func (m *Members) checkCarrier(ml *memberlist.Memberlist) {
	if m.watchCarrier() {
		m.notify()
		m.rejoin(ml)
	}
}

// watchCarrier notes the bind interface's link going down (this node is cut
// off: it becomes isolated) and reports changes. Isolation ends when a peer
// is seen again (NotifyJoin), or after a few seconds alone (a one-node cluster).
func (m *Members) watchCarrier() bool {
	// Finding the interface takes two netlink dumps: done once every
	// 10 s (it may be renamed or replaced), not at every look.
	if now := time.Now(); m.link == "" || now.Sub(m.linkFound) > 10*time.Second {
		m.link, m.linkFound = bindLink(m.opts.Bind), now
	}
	up := carrierUp(m.link)
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := up != m.carrier
	m.carrier = up
	switch {
	case !up && !m.isolated:
		m.isolated = true
		m.isolatedAt = time.Now()
		return true
	case up && m.isolated && len(m.peers) == 0 && time.Since(m.isolatedAt) > 3*time.Second:
		m.isolated = false
		return true
	}
	return changed
}

// rejoin joins the peers that are not alive members.
func (m *Members) rejoin(ml *memberlist.Memberlist) {
	alive := map[string]bool{}
	list := ml.Members()
	m.mu.Lock()
	for _, n := range list {
		alive[m.addrs[n.Name]] = true
	}
	var missing []string
	for _, p := range m.peers {
		if !alive[p] {
			missing = append(missing, netipJoin(p, m.opts.Port))
		}
	}
	m.mu.Unlock()
	if len(missing) == 0 {
		return
	}
	_, _ = ml.Join(missing) // failures are expected while peers are down
	m.mu.Lock()
	first := !m.triedJoin
	m.triedJoin = true
	m.mu.Unlock()
	if first {
		m.notify() // Joined may have changed
	}
}

func netipJoin(addr string, port int) string {
	if a, err := netip.ParseAddr(addr); err == nil {
		return netip.AddrPortFrom(a, uint16(port)).String()
	}
	return addr + ":" + strconv.Itoa(port)
}

// settleTick reports whether the settled members changed since the last tick.
func (m *Members) settleTick() bool {
	now := m.Alive()
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := len(now) != len(m.lastSettled)
	for n, s := range now {
		if prev, ok := m.lastSettled[n]; !ok || prev != s {
			changed = true
		}
	}
	m.lastSettled = now
	return changed
}

// Alive returns the live members and whether each has settled. A member
// settles HoldDown after it joined, except that the members that joined
// within HoldDown of the oldest form the starting cohort and are settled at
// once (a cluster starting up does not shuffle its addresses). A member this
// node saw come back while this node was itself settled, claiming a joined
// time a hold-down older than that, counts from then (its own word may not
// have arrived yet); an isolated node coming back sees
// everyone "return" and must not conclude it outranks them, so its own
// sightings do not count.
func (m *Members) Alive() map[string]bool {
	out := map[string]bool{}
	members := m.members()
	if members == nil {
		return out
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	oldest := m.joined
	for _, n := range members {
		if t := m.joinedOfLocked(n.Name); !t.IsZero() && t.Before(oldest) {
			oldest = t
		}
	}
	for _, n := range members {
		joined := m.joinedOfLocked(n.Name)
		// A member's own joined time decides, so every node judges it
		// alike; only a claim at least a hold-down older than its return
		// (its new word has not arrived yet) gives way to the sighting.
		// Judging a restarted member by when each node happened to see it
		// made nodes disagree near the end of its hold-down, and both
		// answered for its addresses.
		if seen := m.seenSince[n.Name]; n.Name != m.opts.Node && seen.Sub(joined) >= m.opts.HoldDown && seen.Sub(m.joined) >= m.opts.HoldDown {
			out[n.Name] = now.Sub(seen) >= m.opts.HoldDown
			continue
		}
		out[n.Name] = now.Sub(joined) >= m.opts.HoldDown || joined.Sub(oldest) < m.opts.HoldDown
	}
	return out
}

// UntilSettled is how long until the next live member settles (0: none is
// waiting). The speaker decides again at that instant rather than at its
// next tick: the new owner and the old one then change their minds within
// milliseconds of each other, as their clocks agree, and the old one does
// not take the new owner's first announcements for a split brain.
func (m *Members) UntilSettled() time.Duration {
	members := m.members()
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	var next time.Duration
	for _, n := range members {
		from := m.joinedOfLocked(n.Name)
		if seen := m.seenSince[n.Name]; n.Name != m.opts.Node && seen.Sub(from) >= m.opts.HoldDown && seen.Sub(m.joined) >= m.opts.HoldDown {
			from = seen
		}
		if d := from.Add(m.opts.HoldDown).Sub(now); d > 0 && (next == 0 || d < next) {
			next = d
		}
	}
	return next
}

// joinedOfLocked is when a member says it joined (this node: its own time).
func (m *Members) joinedOfLocked(name string) time.Time {
	if name == m.opts.Node {
		return m.joined
	}
	return m.meta[name].joined
}

// Joined reports whether this node has found the others after starting:
// every known peer is a member, or a join of the known peers has completed
// (it merged the cluster's state, or nobody answered: those peers are
// down), or, with no peer known after a second, it is alone. Until then it
// must not announce: alone in its own view it would claim every address
// (a busy node used to pass a fixed one-second wait before its join, and
// two nodes then answered for the same addresses).
func (m *Members) Joined() bool {
	list := m.members()
	if list == nil {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.peers) == 0 {
		return time.Since(m.startedAt) >= time.Second
	}
	if m.triedJoin {
		return true
	}
	members := map[string]bool{}
	for _, n := range list {
		members[m.addrs[n.Name]] = true
	}
	for _, p := range m.peers {
		if !members[p] {
			return false
		}
	}
	// Found them all: joined for good. A peer that dies later must not
	// make this node wait for a join attempt to the dead one (a second
	// of TCP timeout, plus the tick) before it takes the addresses over:
	// that made the first failover of every speaker's life 1.5 s slower.
	m.triedJoin = true
	return true
}

// Isolated reports whether this node has lost its link (carrier) and not yet
// rejoined the others since: it must not answer for anything meanwhile, or
// it would claim every address back the moment its cable returns.
func (m *Members) Isolated() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.isolated
}

// NumMembers is the number of live members, this node included.
func (m *Members) NumMembers() int {
	return len(m.members())
}

// members lists memberlist's live members and the stalled ones held (nil
// before Run). memberlist rewrites the nodes it returns at every alive
// message: read only their Name (m.addrs has their addresses). memberlist calls
// our event hooks with its own lock held and they take m.mu, so its methods
// must never be called with m.mu held: that order would deadlock.
func (m *Members) members() []*memberlist.Node {
	m.mu.Lock()
	ml := m.ml
	m.mu.Unlock()
	if ml == nil {
		return nil
	}
	return m.withStalled(ml.Members())
}

type memberEvents struct{ m *Members }

func (e *memberEvents) NotifyJoin(n *memberlist.Node) {
	m := e.m
	m.mu.Lock()
	m.addrs[n.Name] = n.Addr.String()
	if m.unstallLocked(n.Name) {
		// Declared dead while it stalled, and back within the grace: it
		// never left this node's view, and nothing moved.
		if nm, ok := decodeMeta(n.Meta); ok {
			m.meta[n.Name] = nm
		}
		m.mu.Unlock()
		m.opts.Log.Info("member back within the grace: it had stalled", zap.String("node", n.Name))
		m.notify()
		return
	}
	if n.Name != m.opts.Node {
		m.seenSince[n.Name] = time.Now()
		if nm, ok := decodeMeta(n.Meta); ok {
			m.meta[n.Name] = nm
		}
		if m.isolated {
			// Back from isolation: this node rejoins the others now and says so.
			m.isolated = false
			m.joined = time.Now()
			if ml := m.ml; ml != nil {
				go func() { _ = ml.UpdateNode(time.Second) }() // not under m.mu: see members()
			}
		}
	}
	m.mu.Unlock()
	m.opts.Log.Info("member joined", zap.String("node", n.Name))
	m.notify()
}

func (e *memberEvents) NotifyLeave(n *memberlist.Node) {
	m := e.m
	if m.holdStalled(n) {
		m.opts.Log.Info("member declared dead: asking its host", zap.String("node", n.Name))
		return
	}
	m.mu.Lock()
	delete(m.seenSince, n.Name)
	m.mu.Unlock()
	m.opts.Log.Info("member gone", zap.String("node", n.Name))
	m.notify()
}

func (e *memberEvents) NotifyUpdate(n *memberlist.Node) {
	m := e.m
	m.mu.Lock()
	m.addrs[n.Name] = n.Addr.String()
	if n.Name == m.opts.Node && m.leaving {
		m.mu.Unlock()
		return // its own "leaving" while it stops: nothing to decide
	}
	if nm, ok := decodeMeta(n.Meta); ok && n.Name != m.opts.Node {
		m.meta[n.Name] = nm
	}
	m.mu.Unlock()
	m.notify()
}

// memberDelegate publishes this node's metadata (encodeMeta).
type memberDelegate struct{ m *Members }

func (d *memberDelegate) NodeMeta(limit int) []byte {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	return encodeMeta(nodeMeta{joined: d.m.joined, dataPathDown: !d.m.dataPathOK, leaving: d.m.leaving, macs: d.m.macs}, limit)
}
func (d *memberDelegate) NotifyMsg([]byte)                           {}
func (d *memberDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *memberDelegate) LocalState(join bool) []byte                { return nil }
func (d *memberDelegate) MergeRemoteState(buf []byte, join bool)     {}

// zapWriter routes memberlist's standard logger into zap at debug level.
// memberlist says only in its log that the others suspected this node or
// declared it dead (it refutes either at once): refuted hears it.
type zapWriter struct {
	log     *zap.Logger
	refuted func(dead bool)
	seen    *recentLines
}

// recentLines remembers the log lines written in the last minute, so that a
// line repeated at every probe is written once a minute. Lines that differ
// only in numbers (ports, timeouts) count as one.
type recentLines struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func (r *recentLines) fresh(line string) bool {
	if r == nil {
		return true
	}
	line = strings.Map(func(c rune) rune {
		if c >= '0' && c <= '9' {
			return -1
		}
		return c
	}, line)
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.last == nil || len(r.last) > 1000 {
		r.last = map[string]time.Time{}
	}
	if t, ok := r.last[line]; ok && now.Sub(t) < time.Minute {
		return false
	}
	r.last[line] = now
	return true
}

func (w zapWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	switch {
	case strings.HasPrefix(line, "[ERR]"), strings.HasPrefix(line, "[WARN]"):
		// Refuted suspicions, failed probes, failed joins: what explains
		// a false death or a slow rejoin. Repeats (a peer away fails every
		// probe) stay at debug.
		if w.seen.fresh(line) {
			w.log.Warn(line)
		} else {
			w.log.Debug(line)
		}
	case strings.HasPrefix(line, "[INFO]"):
		w.log.Info(line)
	default:
		w.log.Debug(line)
	}
	switch {
	case w.refuted == nil:
	case bytes.Contains(p, []byte("Refuting a dead message")):
		w.refuted(true)
	case bytes.Contains(p, []byte("Refuting a suspect message")):
		w.refuted(false)
	}
	return len(p), nil
}

var _ io.Writer = zapWriter{}

// bindLink names the interface that holds addr ("" if none does).
func bindLink(addr netip.Addr) string {
	ifs, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, ifi := range ifs {
		addrs, _ := ifi.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr() == addr {
				return ifi.Name
			}
		}
	}
	return ""
}

// carrierUp reports whether the link iface has carrier, from sysfs (one
// small read, at each link event). Unknown (no such interface, no sysfs) counts
// as up.
func carrierUp(iface string) bool {
	if iface == "" {
		return true
	}
	b, err := os.ReadFile("/sys/class/net/" + iface + "/carrier")
	return err != nil || strings.TrimSpace(string(b)) == "1"
}
