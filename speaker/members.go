package speaker

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
)

// MemberOptions configure the speakers' membership. The defaults (see
// DefaultMemberOptions) detect a silent node in about half a second on a LAN.
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
	Log           *zap.Logger
}

// DefaultMemberOptions are tuned for a LAN. Each speaker sends about
// 1/ProbeInterval probes a second (16 with 60 ms, ~120 bytes each, plus the
// acks): some 4 KB/s per node, whatever the cluster size.
func DefaultMemberOptions() MemberOptions {
	return MemberOptions{Port: 7946, HoldDown: 10 * time.Second, ProbeInterval: 60 * time.Millisecond, ProbeTimeout: 30 * time.Millisecond, SuspicionMult: 3}
}

// Members tracks which speakers are alive, over memberlist (SWIM).
type Members struct {
	opts    MemberOptions
	changed chan struct{}

	mu        sync.Mutex
	ml        *memberlist.Memberlist
	peers     []string             // addresses to join, from Node objects
	joined    time.Time            // when this node last (re)joined the others
	isolated  bool                 // this node lost every other member
	meta      map[string]time.Time // each member's own joined time
	seenSince map[string]time.Time // when this node saw each member come alive
}

// NewMembers prepares membership; Run starts it.
func NewMembers(opts MemberOptions) *Members {
	return &Members{opts: opts, changed: make(chan struct{}, 1), meta: map[string]time.Time{}, seenSince: map[string]time.Time{}}
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
	m.peers = peers
	m.mu.Unlock()
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
	cfg.Logger = log.New(zapWriter{m.opts.Log.Named("memberlist")}, "", 0)
	m.mu.Lock()
	m.joined = time.Now()
	m.mu.Unlock()
	ml, err := memberlist.Create(cfg)
	if err != nil {
		return fmt.Errorf("memberlist on %s:%d: %w", m.opts.Bind, m.opts.Port, err)
	}
	m.mu.Lock()
	m.ml = ml
	m.mu.Unlock()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		m.rejoin(ml)
		select {
		case <-ctx.Done():
			err := ml.Leave(time.Second)
			_ = ml.Shutdown()
			return err
		case <-tick.C:
			if m.settleTick() {
				m.notify()
			}
		}
	}
}

// rejoin joins the peers that are not alive members.
func (m *Members) rejoin(ml *memberlist.Memberlist) {
	alive := map[string]bool{}
	for _, n := range ml.Members() {
		alive[n.Addr.String()] = true
	}
	m.mu.Lock()
	var missing []string
	for _, p := range m.peers {
		if !alive[p] {
			missing = append(missing, netipJoin(p, m.opts.Port))
		}
	}
	m.mu.Unlock()
	if len(missing) > 0 {
		_, _ = ml.Join(missing) // failures are expected while peers are down
	}
}

func netipJoin(addr string, port int) string {
	if a, err := netip.ParseAddr(addr); err == nil {
		return netip.AddrPortFrom(a, uint16(port)).String()
	}
	return addr + ":" + strconv.Itoa(port)
}

// settleTick reports whether some member became settled since the last tick.
func (m *Members) settleTick() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	for name := range m.seenSince {
		since := m.settledSinceLocked(name)
		if !since.IsZero() && now.Sub(since) >= m.opts.HoldDown && now.Sub(since) < m.opts.HoldDown+time.Second {
			return true
		}
	}
	return now.Sub(m.joined) >= m.opts.HoldDown && now.Sub(m.joined) < m.opts.HoldDown+time.Second
}

// Alive returns the live members and whether each has settled (been a
// member for the hold-down). A member counts from the later of the time it
// says it joined and the time this node saw it come back — the latter only
// if this node was itself settled then (an isolated node coming back sees
// everyone "return" and must not conclude it outranks them).
func (m *Members) Alive() map[string]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]bool{}
	if m.ml == nil {
		return out
	}
	now := time.Now()
	for _, n := range m.ml.Members() {
		since := m.settledSinceLocked(n.Name)
		out[n.Name] = now.Sub(since) >= m.opts.HoldDown
	}
	return out
}

func (m *Members) settledSinceLocked(name string) time.Time {
	if name == m.opts.Node {
		return m.joined
	}
	since := m.meta[name]
	if seen := m.seenSince[name]; seen.After(since) && seen.Sub(m.joined) >= m.opts.HoldDown {
		since = seen
	}
	return since
}

// NumMembers is the number of live members, this node included.
func (m *Members) NumMembers() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ml == nil {
		return 0
	}
	return m.ml.NumMembers()
}

type memberEvents struct{ m *Members }

func (e *memberEvents) NotifyJoin(n *memberlist.Node) {
	m := e.m
	m.mu.Lock()
	if n.Name != m.opts.Node {
		m.seenSince[n.Name] = time.Now()
		if t, ok := decodeJoined(n.Meta); ok {
			m.meta[n.Name] = t
		}
		if m.isolated {
			// Back from isolation: this node rejoins the others now and says so.
			m.isolated = false
			m.joined = time.Now()
			if m.ml != nil {
				go func() { _ = m.ml.UpdateNode(time.Second) }()
			}
		}
	}
	m.mu.Unlock()
	m.opts.Log.Info("member joined", zap.String("node", n.Name))
	m.notify()
}

func (e *memberEvents) NotifyLeave(n *memberlist.Node) {
	m := e.m
	m.mu.Lock()
	delete(m.seenSince, n.Name)
	if m.ml != nil && len(m.seenSince) == 0 && n.Name != m.opts.Node {
		m.isolated = true // every other member is gone from this node's view
	}
	m.mu.Unlock()
	m.opts.Log.Info("member gone", zap.String("node", n.Name))
	m.notify()
}

func (e *memberEvents) NotifyUpdate(n *memberlist.Node) {
	m := e.m
	m.mu.Lock()
	if t, ok := decodeJoined(n.Meta); ok && n.Name != m.opts.Node {
		m.meta[n.Name] = t
	}
	m.mu.Unlock()
	m.notify()
}

// memberDelegate publishes this node's joined time as its metadata.
type memberDelegate struct{ m *Members }

func (d *memberDelegate) NodeMeta(limit int) []byte {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(d.m.joined.UnixMilli()))
	return b
}
func (d *memberDelegate) NotifyMsg([]byte)                           {}
func (d *memberDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *memberDelegate) LocalState(join bool) []byte                { return nil }
func (d *memberDelegate) MergeRemoteState(buf []byte, join bool)     {}

func decodeJoined(meta []byte) (time.Time, bool) {
	if len(meta) != 8 {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(binary.BigEndian.Uint64(meta))), true
}

// zapWriter routes memberlist's standard logger into zap at debug level.
type zapWriter struct{ log *zap.Logger }

func (w zapWriter) Write(p []byte) (int, error) {
	w.log.Debug(string(p))
	return len(p), nil
}

var _ io.Writer = zapWriter{}
