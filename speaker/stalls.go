package speaker

import (
	"context"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
)

// A speaker that memberlist declares dead may only be starved of CPU. On a
// busy node its threads can wait for a CPU for longer than the suspicion
// (`perf sched` in the l2stress bench: up to 430 ms), and memberlist then
// declares a live speaker dead; its addresses moved away and, after the
// hold-down, back. Its host still answers, though: the kernel completes a
// TCP connection to the speaker's memberlist port without the speaker
// running. So a member declared dead whose host accepts a connection within
// hostCheckTimeout stays a member in this node's view for stallGrace more,
// and if it refutes its death meanwhile nothing moves. A host that refuses
// the connection (the speaker is gone) or does not answer (cut off, powered
// off) loses the member at once, and so does a member that said it is
// leaving (a speaker stopping).
//
// The stalled speaker itself learns that it was declared dead when it runs
// again. If its own stall was shorter than stallSafe, the others still held
// it: it takes the death as a suspicion (it asks the link whether another
// node answers for its addresses, and steps back if one does) instead of
// stepping back at once. A longer stall, or a death without a stall of its
// own (a partition), is a step-back as before.
const (
	stallGrace       = 600 * time.Millisecond
	hostCheckTimeout = 50 * time.Millisecond
	// stallTick is how often a speaker notes that it runs; a longer gap
	// between two notes is a stall of its own.
	stallTick = 100 * time.Millisecond
	// stallMin: a speaker silent for less cannot have been declared dead
	// for it (a failed probe and the suspicion take about 480 ms), so a
	// death it hears of had another cause (a partition).
	stallMin = 300 * time.Millisecond
	// stallSafe: the others declare a silent node dead no sooner than about
	// 480 ms into its silence, and hold it stallGrace more: a speaker
	// whose stall was shorter (as measured, up to a stallTick long) is
	// still a member in their view.
	stallSafe = time.Second
)

// stalledMember is a member memberlist declared dead, held for stallGrace
// while its host answers.
type stalledMember struct {
	node  memberlist.Node
	since time.Time
}

// holdStalled keeps a member memberlist declared dead while its host is
// checked (and then for the grace), and reports whether it did; a member
// that said it is leaving goes at once. Called from memberlist's NotifyLeave
// (its lock held): the check runs apart.
func (m *Members) holdStalled(n *memberlist.Node) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n.Name == m.opts.Node || m.meta[n.Name].leaving || m.hostCheck == nil {
		return false
	}
	st := &stalledMember{node: *n, since: time.Now()}
	st.node.Addr = append(net.IP(nil), n.Addr...)
	m.stalled[n.Name] = st
	go m.checkHost(st)
	return true
}

// checkHost connects to the stalled member's memberlist port: a host that
// does not accept the connection loses the member now; one that does keeps
// it until the grace ends.
func (m *Members) checkHost(st *stalledMember) {
	addr := net.JoinHostPort(st.node.Addr.String(), strconv.Itoa(int(st.node.Port)))
	err := m.hostCheck(addr)
	if err != nil {
		m.dropStalled(st, "declared dead, and its host did not accept a connection", err)
		return
	}
	m.opts.Log.Info("member declared dead, but its host answers: kept while it may refute",
		zap.String("node", st.node.Name), zap.Duration("grace", stallGrace))
	time.AfterFunc(time.Until(st.since.Add(stallGrace)), func() {
		m.dropStalled(st, "declared dead, and it did not refute within the grace", nil)
	})
}

// dropStalled makes a stalled member gone, unless it came back meanwhile.
func (m *Members) dropStalled(st *stalledMember, why string, err error) {
	m.mu.Lock()
	current := m.stalled[st.node.Name] == st
	if current {
		delete(m.stalled, st.node.Name)
		delete(m.seenSince, st.node.Name)
	}
	m.mu.Unlock()
	if !current {
		return
	}
	m.opts.Log.Info("member gone", zap.String("node", st.node.Name), zap.String("why", why),
		zap.Duration("afterDeath", time.Since(st.since)), zap.Error(err))
	m.notify()
}

// unstallLocked reports whether a member that memberlist sees alive again
// was held as stalled, and forgets that: it never left this node's view.
func (m *Members) unstallLocked(name string) bool {
	_, ok := m.stalled[name]
	delete(m.stalled, name)
	return ok
}

// withStalled adds the held stalled members to memberlist's live ones.
func (m *Members) withStalled(list []*memberlist.Node) []*memberlist.Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, st := range m.stalled {
		found := false
		for _, n := range list {
			found = found || n.Name == name
		}
		if !found {
			n := st.node
			list = append(list, &n)
		}
	}
	return list
}

// dialHost is the host check: a TCP connection to addr, closed at once (an
// empty stream, which memberlist drops without a word).
func dialHost(addr string) error {
	c, err := net.DialTimeout("tcp", addr, hostCheckTimeout)
	if err != nil {
		return err
	}
	return c.Close()
}

// beat notes every stallTick that this speaker runs, and the longest gap
// between two notes, until ctx ends.
func (m *Members) beat(ctx context.Context) {
	t := time.NewTicker(stallTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			now = time.Now() // the tick's own time is when it was due
			m.mu.Lock()
			if gap := now.Sub(m.beatAt); !m.beatAt.IsZero() && gap > stallTick*3/2 {
				m.stallGap, m.stallAt = gap, now
			}
			m.beatAt = now
			m.mu.Unlock()
		}
	}
}

// recentStallLocked is this speaker's longest stall that ended in the last
// stallSafe or is still going on (0: none, or no beats noted).
func (m *Members) recentStallLocked(now time.Time) time.Duration {
	if m.beatAt.IsZero() {
		return 0
	}
	s := now.Sub(m.beatAt)
	if now.Sub(m.stallAt) < stallSafe {
		s = max(s, m.stallGap)
	}
	return s
}
