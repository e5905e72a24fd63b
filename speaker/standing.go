package speaker

import (
	"bytes"
	"encoding/binary"
	"net"
	"time"

	"go.uber.org/zap"
)

// A node's standing among the speakers: what it tells the others about
// itself in its memberlist metadata (when it last joined, whether its data
// path works, its MACs), and how it steps back when it learns that the
// others declared it dead or it sees another node answer for its address.

// nodeMeta is what a member publishes about itself: the time it last
// (re)joined, which every node uses to judge its hold-down alike; whether
// its data path is down (kube-proxy unhealthy: it must own nothing); and
// the MACs of its interfaces, which tell another speaker's answers from a
// foreign device's on the wire.
type nodeMeta struct {
	joined       time.Time
	dataPathDown bool
	leaving      bool // it is stopping: its death is no stall
	macs         []net.HardwareAddr
}

const (
	metaFlagDataPathDown = 1 << iota
	metaFlagLeaving
)

// Why a node steps back (the metric's reason label).
const (
	StepBackDeclaredDead = "declared_dead"
	StepBackSplitBrain   = "split_brain"
)

// encodeMeta: 8 bytes of joined time (Unix ms, big endian), one flags
// byte, then 6 bytes per MAC, as many as fit in limit. Speakers before
// this format read only an 8-byte value and ignore a longer one (they see
// no joined time for the node, as for a node that published none).
func encodeMeta(nm nodeMeta, limit int) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 9+6*len(nm.macs)), uint64(nm.joined.UnixMilli()))
	var flags byte
	if nm.dataPathDown {
		flags |= metaFlagDataPathDown
	}
	if nm.leaving {
		flags |= metaFlagLeaving
	}
	b = append(b, flags)
	for _, mac := range nm.macs {
		if len(mac) != 6 || len(b)+6 > limit {
			continue
		}
		b = append(b, mac...)
	}
	return b
}

func decodeMeta(b []byte) (nodeMeta, bool) {
	if len(b) < 8 {
		return nodeMeta{}, false
	}
	nm := nodeMeta{joined: time.UnixMilli(int64(binary.BigEndian.Uint64(b)))}
	if len(b) > 8 {
		nm.dataPathDown = b[8]&metaFlagDataPathDown != 0
		nm.leaving = b[8]&metaFlagLeaving != 0
		for rest := b[9:]; len(rest) >= 6; rest = rest[6:] {
			nm.macs = append(nm.macs, net.HardwareAddr(bytes.Clone(rest[:6])))
		}
	}
	return nm, true
}

// SetDataPath records whether this node's Service data path works. A node
// whose data path fails owns nothing; when it works again the node counts
// as rejoining, so it takes addresses back only after the hold-down. The
// others learn either through the node's metadata.
func (m *Members) SetDataPath(ok bool) {
	m.mu.Lock()
	if ok == m.dataPathOK {
		m.mu.Unlock()
		return
	}
	m.dataPathOK = ok
	if ok {
		m.joined = time.Now()
		m.dataPathSince = m.joined
	}
	m.mu.Unlock()
	m.republish()
	m.notify()
}

// DataPathOK reports whether this node's data path works (SetDataPath).
func (m *Members) DataPathOK() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.dataPathOK
}

// DataPathSettled reports whether the data path works and, if it failed
// before, has worked for the hold-down since.
func (m *Members) DataPathSettled() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.dataPathOK && (m.dataPathSince.IsZero() || time.Since(m.dataPathSince) >= m.opts.HoldDown)
}

// SetMACs publishes this node's interface MACs, when they changed.
func (m *Members) SetMACs(macs []net.HardwareAddr) {
	m.mu.Lock()
	same := len(macs) == len(m.macs)
	for i := 0; same && i < len(macs); i++ {
		same = bytes.Equal(macs[i], m.macs[i])
	}
	if same {
		m.mu.Unlock()
		return
	}
	m.macs = macs
	m.mu.Unlock()
	m.republish()
}

// MACs are this node's interface MACs, as published.
func (m *Members) MACs() []net.HardwareAddr {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.macs
}

// NodeOfMAC names the speaker whose interface has mac ("" for a device
// that is no speaker). A member declared dead keeps its MACs here: a node
// cut off from the others is still known by its MAC on the wire.
func (m *Members) NodeOfMAC(mac net.HardwareAddr) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, own := range m.macs {
		if bytes.Equal(own, mac) {
			return m.opts.Node
		}
	}
	for name, nm := range m.meta {
		for _, other := range nm.macs {
			if bytes.Equal(other, mac) {
				return name
			}
		}
	}
	return ""
}

// DataPathDown lists the live members that say their data path is down.
func (m *Members) DataPathDown() map[string]bool {
	out := map[string]bool{}
	m.mu.Lock()
	if !m.dataPathOK {
		out[m.opts.Node] = true
	}
	for name, nm := range m.meta {
		if nm.dataPathDown {
			out[name] = true
		}
	}
	m.mu.Unlock()
	return out
}

// Known lists the nodes that have ever been members with this node
// (itself included): the speakers a majority is counted over.
func (m *Members) Known() map[string]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]bool{m.opts.Node: true}
	for name := range m.meta {
		out[name] = true
	}
	return out
}

// StepBack makes this node rejoin the others: it counts as new (its
// hold-down starts again, on every node alike since they read its joined
// time), so it takes addresses back only once it has proved stable. The
// speaker drops what it answers for at once (StepBacks tells it).
func (m *Members) StepBack(code, reason string) {
	m.mu.Lock()
	now := time.Now()
	if now.Sub(m.steppedAt) < time.Second {
		m.joined = now // a repeat (memberlist refutes each dead message): no new log
		m.mu.Unlock()
		m.republish()
		return
	}
	m.joined, m.steppedAt = now, now
	m.stepBacks++
	m.stepCode = code
	m.mu.Unlock()
	m.opts.Log.Warn("stepping back: answering for nothing until the hold-down has passed", zap.String("reason", reason))
	m.republish()
	m.notify()
}

// Rejoin makes this node count as new (its hold-down starts again) without
// dropping anything: a node that saw only a minority of the speakers alive
// and sees most of them again must not judge the others by when it saw
// them come back (they never left each other), nor outrank them.
func (m *Members) Rejoin(reason string) {
	m.mu.Lock()
	m.joined = time.Now()
	m.mu.Unlock()
	m.opts.Log.Info("rejoining the speakers: taking nothing back before the hold-down", zap.String("reason", reason))
	m.republish()
	m.notify()
}

// StepBacks counts the step-backs so far and gives the last one's code.
func (m *Members) StepBacks() (uint64, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stepBacks, m.stepCode
}

// refuted is memberlist telling (through its log) that the others had
// suspected this node, or declared it dead: then they may have taken its
// addresses over meanwhile. A node that comes back from a stall gets the
// suspicion first and refutes it, which makes memberlist ignore the death
// that followed (same incarnation): so a suspicion is noted, and a node
// recently suspected that sees another speaker answer for its address
// concludes it was declared dead (conflicts.go). A death heard after a
// stall of this node's own that the others forgive (stalls.go) counts as a
// suspicion too. It is called with memberlist's lock held, so the
// step-back runs apart.
func (m *Members) refuted(dead bool) {
	if dead {
		m.mu.Lock()
		stall := m.recentStallLocked(time.Now())
		m.mu.Unlock()
		if stall >= stallMin && stall < stallSafe {
			m.opts.Log.Info("the others declared this node dead while it stalled, within their grace: checking for a new owner instead of stepping back",
				zap.Duration("stall", stall))
			dead = false
		}
	}
	if !dead {
		m.mu.Lock()
		m.suspectedAt = time.Now()
		m.suspicions++
		m.mu.Unlock()
		m.notify()
		return
	}
	go m.StepBack(StepBackDeclaredDead, "the other speakers declared this node dead")
}

// Suspicions counts the suspicions of this node refuted so far.
func (m *Members) Suspicions() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.suspicions
}

// SuspectedWithin reports whether the others suspected this node within d.
func (m *Members) SuspectedWithin(d time.Duration) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.suspectedAt.IsZero() && time.Since(m.suspectedAt) < d
}

// republish gossips this node's metadata anew. Not under m.mu (members()).
func (m *Members) republish() {
	m.mu.Lock()
	ml := m.ml
	m.mu.Unlock()
	if ml != nil {
		go func() { _ = ml.UpdateNode(time.Second) }()
	}
}
