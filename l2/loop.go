package l2

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// listener is one socket: ARP or NDP on one interface, with the addresses
// it answers for. Only the loop goroutine touches it.
type listener struct {
	key   lkey
	addrs map[netip.Addr]struct{} // replaced whole, never mutated: published as is

	conn   net.PacketConn // nil while closed
	groups groupConn      // NDP: solicited-node memberships
	joined map[netip.Addr]struct{}
	index  int              // interface index at open
	mac    net.HardwareAddr // interface MAC at open
	gen    uint64           // tells this opening's reader from earlier ones

	openedAt time.Time
	retryAt  time.Time     // when to try opening again; zero: not waiting
	backoff  time.Duration // the last wait between attempts
	lastErr  string        // the last error logged, to log each problem once
	err      error         // why it is closed
}

// pair is one address on one listener.
type pair struct {
	key  lkey
	addr netip.Addr
}

// burst is what remains of a takeover's repeated announcements.
type burst struct {
	left int
	at   time.Time
}

// failure reports that a listener's reader stopped on an error.
type failure struct {
	key lkey
	gen uint64
	err error
}

// loop is the state of one Run: it owns the sockets and the timers; the
// readers it starts only answer requests and report conflicts.
type loop struct {
	a         *Announcer
	ctx       context.Context
	log       *zap.Logger
	wg        sync.WaitGroup
	updates   chan chan struct{}
	probes    chan probeReq
	announces chan announceReq
	failures  chan failure

	listeners   map[lkey]*listener
	bursts      map[pair]*burst
	applied     map[netip.Addr][]string
	nextRefresh time.Time
	idleSweep   time.Time // when to close listeners that only ended Probes needed; zero: none pending
	gen         uint64
}

func (l *loop) run() error {
	if l.ctx.Err() != nil {
		return nil
	}
	l.apply()
	if l.a.opts.RefreshInterval > 0 {
		l.nextRefresh = time.Now().Add(l.a.opts.RefreshInterval)
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if next := l.next(); next.IsZero() {
			timer.Stop()
		} else {
			timer.Reset(time.Until(next))
		}
		select {
		case <-l.ctx.Done():
			return nil
		case done := <-l.updates:
			l.apply()
			close(done)
		case req := <-l.announces:
			l.announce(req.addr)
			close(req.done)
		case req := <-l.probes:
			req.reply <- l.prepareProbe(req)
		case <-l.a.idle:
			if l.idleSweep.IsZero() {
				l.idleSweep = time.Now().Add(probeLinger)
			}
		case f := <-l.failures:
			l.readFailed(f)
		case now := <-timer.C:
			l.due(now)
		}
	}
}

// apply brings the listeners in line with the last Set: open what is new
// and join its groups, publish the new set, announce what was added, then
// leave groups and close sockets no longer needed.
func (l *loop) apply() {
	l.a.mu.Lock()
	desired := l.a.desired
	l.a.mu.Unlock()

	want := map[lkey]map[netip.Addr]struct{}{}
	for addr, ifaces := range desired {
		for _, name := range ifaces {
			k := lkey{name, protoOf(addr)}
			if want[k] == nil {
				want[k] = map[netip.Addr]struct{}{}
			}
			want[k][addr] = struct{}{}
		}
	}

	var announce []pair
	for k, addrs := range want {
		ls := l.listeners[k]
		if ls == nil {
			ls = &listener{key: k}
			l.listeners[k] = ls
		}
		prev := ls.addrs
		ls.addrs = addrs
		if ls.conn == nil {
			if l.open(ls) {
				announce = append(announce, pairs(ls)...)
			}
			continue
		}
		l.joinGroups(ls)
		for addr := range addrs {
			if !has(prev, addr) {
				announce = append(announce, pair{k, addr})
			}
		}
	}
	for k, ls := range l.listeners {
		if _, ok := want[k]; !ok {
			ls.addrs = nil
		}
	}

	l.publish()
	slices.SortFunc(announce, comparePairs)
	for _, p := range announce {
		l.takeover(p)
	}

	l.closeIdle()
	for p := range l.bursts {
		if ls := l.listeners[p.key]; ls == nil || !has(ls.addrs, p.addr) {
			delete(l.bursts, p) // removed while its repeats were pending
		}
	}
	l.logChanges(desired)
}

// logChanges logs each address that starts or stops being answered, or
// moves between interfaces, and updates the owned-addresses gauge.
func (l *loop) logChanges(desired map[netip.Addr][]string) {
	// A takeover of many addresses is one line, not one per address: the
	// log must not slow the failover path.
	const each = 20
	var started, stopped []netip.Addr
	for addr, ifaces := range desired {
		if prev, ok := l.applied[addr]; !ok || !slices.Equal(prev, ifaces) {
			started = append(started, addr)
		}
	}
	for addr := range l.applied {
		if _, ok := desired[addr]; !ok {
			stopped = append(stopped, addr)
		}
	}
	if len(started)+len(stopped) > each {
		l.log.Info("answering for other addresses", zap.Int("started", len(started)), zap.Int("stopped", len(stopped)), zap.Int("answered", len(desired)))
	} else {
		for _, addr := range started {
			l.log.Info("answering", zap.Stringer("ip", addr), zap.Strings("iface", desired[addr]))
		}
		for _, addr := range stopped {
			l.log.Info("no longer answering", zap.Stringer("ip", addr))
		}
	}
	l.applied = desired
	counts := map[proto]int{}
	for addr := range desired {
		counts[protoOf(addr)]++
	}
	l.a.m.owned.WithLabelValues(string(protoARP)).Set(float64(counts[protoARP]))
	l.a.m.owned.WithLabelValues(string(protoNDP)).Set(float64(counts[protoNDP]))
}

// closeIdle closes the listeners that neither answer for an address nor
// serve a Probe, and leaves the groups no address or Probe needs any more.
func (l *loop) closeIdle() {
	for k, ls := range l.listeners {
		probed := l.a.probedOn(k)
		if len(ls.addrs) == 0 && len(probed) == 0 {
			l.shut(ls)
			delete(l.listeners, k)
			l.log.Info("stopped listening", zap.String("iface", k.iface), zap.String("proto", string(k.proto)))
			continue
		}
		if ls.conn != nil {
			l.leaveGroups(ls, probed)
		}
	}
}

// publish makes the listeners' current addresses the ones responders answer
// for. When it returns, no responder is still replying for an address that
// is no longer there.
func (l *loop) publish() {
	answer := make(map[lkey]map[netip.Addr]struct{}, len(l.listeners))
	for k, ls := range l.listeners {
		if len(ls.addrs) > 0 {
			answer[k] = ls.addrs
		}
	}
	l.a.answerMu.Lock()
	l.a.answer = answer
	l.a.answerMu.Unlock()
}

// open opens ls's socket, joins its groups and starts its reader. On
// failure it schedules a retry and returns false.
func (l *loop) open(ls *listener) bool {
	ifi, err := l.a.sys.interfaceByName(ls.key.iface)
	switch {
	case err != nil:
	case ifi.Flags&net.FlagUp == 0:
		err = errors.New("interface is down")
	case len(ifi.HardwareAddr) != 6:
		err = errors.New("not an Ethernet interface")
	}
	var conn net.PacketConn
	var groups groupConn
	if err == nil {
		if ls.key.proto == protoARP {
			conn, err = l.a.sys.listenARP(ifi)
		} else {
			conn, groups, err = l.a.sys.listenNDP(ifi)
		}
	}
	if err != nil {
		ls.err = err
		l.a.m.errors.WithLabelValues(string(ls.key.proto), ls.key.iface, "open").Inc()
		l.logOnce(ls, "cannot listen; will retry", err)
		l.scheduleRetry(ls)
		return false
	}

	l.gen++
	ls.conn, ls.groups, ls.joined = conn, groups, map[netip.Addr]struct{}{}
	ls.index, ls.mac, ls.gen = ifi.Index, slices.Clone(ifi.HardwareAddr), l.gen
	ls.openedAt, ls.retryAt, ls.lastErr, ls.err = time.Now(), time.Time{}, "", nil
	l.publishMACs()
	l.joinGroups(ls)
	l.log.Info("listening", zap.String("iface", ls.key.iface), zap.String("proto", string(ls.key.proto)),
		zap.Stringer("mac", ls.mac))

	r, gen := l.a.newResponder(ls.key, conn, ls.mac), ls.gen
	l.wg.Go(func() { l.read(r, gen) })
	return true
}

// read answers the frames of one socket until it fails, then reports the
// failure to the loop.
func (l *loop) read(r *responder, gen uint64) {
	buf := make([]byte, maxFrame)
	for {
		n, _, err := r.conn.ReadFrom(buf)
		if err != nil {
			select {
			case l.failures <- failure{r.key, gen, err}:
			case <-l.ctx.Done():
			}
			return
		}
		if r.key.proto == protoARP {
			r.handleARP(buf[:n])
		} else {
			r.handleND(buf[:n])
		}
	}
}

// readFailed closes a socket whose reader failed (the interface went down
// or away) and retries it on a timer.
func (l *loop) readFailed(f failure) {
	ls := l.listeners[f.key]
	if ls == nil || ls.conn == nil || ls.gen != f.gen {
		return // a socket the loop closed itself
	}
	l.a.m.errors.WithLabelValues(string(f.key.proto), f.key.iface, "read").Inc()
	l.log.Warn("socket failed; will reopen", zap.String("iface", f.key.iface), zap.String("proto", string(f.key.proto)), zap.Error(f.err))
	if time.Since(ls.openedAt) > maxRetry {
		ls.backoff = 0 // it had worked for a while: start again from a short wait
	}
	l.shut(ls)
	ls.err = f.err
	l.scheduleRetry(ls)
}

func (l *loop) scheduleRetry(ls *listener) {
	ls.backoff = min(max(2*ls.backoff, minRetry), maxRetry)
	ls.retryAt = time.Now().Add(ls.backoff)
}

// shut closes ls's sockets (which ends its reader and drops its group
// memberships) and its pending announcements.
func (l *loop) shut(ls *listener) {
	if ls.conn == nil {
		return
	}
	ls.conn.Close()
	if ls.groups != nil {
		ls.groups.Close()
	}
	ls.conn, ls.groups, ls.joined = nil, nil, nil
	l.publishMACs()
	for p := range l.bursts {
		if p.key == ls.key {
			delete(l.bursts, p)
		}
	}
}

// stop ends answering: nothing is answered once it has unpublished the set,
// and it returns when every reader has ended.
func (l *loop) stop() {
	l.a.answerMu.Lock()
	l.a.answer = nil
	l.a.answerMu.Unlock()
	for _, ls := range l.listeners {
		l.shut(ls)
	}
	l.wg.Wait()
	l.a.m.owned.WithLabelValues(string(protoARP)).Set(0)
	l.a.m.owned.WithLabelValues(string(protoNDP)).Set(0)
}

// next returns when the loop must next act: a retry, a repeated
// announcement or a refresh; zero if nothing is pending.
func (l *loop) next() time.Time {
	next := l.nextRefresh
	earlier := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, b := range l.bursts {
		earlier(b.at)
	}
	earlier(l.idleSweep)
	for _, ls := range l.listeners {
		if ls.conn == nil {
			earlier(ls.retryAt)
		}
	}
	return next
}

// due does what is due at now: reopen failed sockets, send repeated
// announcements, refresh.
func (l *loop) due(now time.Time) {
	for _, ls := range l.sortedListeners() {
		if ls.conn == nil && !ls.retryAt.IsZero() && !now.Before(ls.retryAt) && l.open(ls) {
			for _, p := range pairs(ls) {
				l.takeover(p)
			}
		}
	}

	var repeat []pair
	for p, b := range l.bursts {
		if !now.Before(b.at) {
			repeat = append(repeat, p)
		}
	}
	slices.SortFunc(repeat, comparePairs)
	for _, p := range repeat {
		l.gratuitous(p)
		b := l.bursts[p]
		if b.left--; b.left == 0 {
			delete(l.bursts, p)
		} else {
			b.at = b.at.Add(l.a.opts.GratuitousInterval)
		}
	}

	if !l.idleSweep.IsZero() && !now.Before(l.idleSweep) {
		l.idleSweep = time.Time{}
		l.closeIdle()
	}

	if !l.nextRefresh.IsZero() && !now.Before(l.nextRefresh) {
		l.refresh()
		l.nextRefresh = now.Add(l.a.opts.RefreshInterval)
	}
}

// refresh announces every answered address again. First it reopens a
// socket whose interface was replaced or changed its MAC (neither makes the
// socket fail), and retries group joins that failed.
func (l *loop) refresh() {
	for _, ls := range l.sortedListeners() {
		if ls.conn == nil {
			continue
		}
		ifi, err := l.a.sys.interfaceByName(ls.key.iface)
		if err != nil || ifi.Index != ls.index || !bytes.Equal(ifi.HardwareAddr, ls.mac) {
			l.log.Info("interface changed; reopening", zap.String("iface", ls.key.iface), zap.String("proto", string(ls.key.proto)))
			l.shut(ls)
			if l.open(ls) {
				for _, p := range pairs(ls) {
					l.takeover(p)
				}
			}
			continue
		}
		l.joinGroups(ls)
		for _, p := range pairs(ls) {
			l.gratuitous(p)
		}
	}
}

// announce announces addr again on every open listener answering for it,
// as on takeover.
func (l *loop) announce(addr netip.Addr) {
	for _, ls := range l.sortedListeners() {
		if ls.conn != nil && has(ls.addrs, addr) {
			l.takeover(pair{ls.key, addr})
		}
	}
}

// takeover announces p now and schedules its repeats.
func (l *loop) takeover(p pair) {
	l.gratuitous(p)
	if n := l.a.opts.GratuitousRepeat; n > 0 {
		l.bursts[p] = &burst{left: n, at: time.Now().Add(l.a.opts.GratuitousInterval)}
	}
}

// gratuitous sends one gratuitous ARP or unsolicited NA for p.
func (l *loop) gratuitous(p pair) {
	ls := l.listeners[p.key]
	if ls == nil || ls.conn == nil {
		return
	}
	var frame []byte
	var dst net.HardwareAddr
	var err error
	if p.key.proto == protoARP {
		frame, dst, err = arpAnnouncement(ls.mac, p.addr)
	} else {
		frame, dst, err = neighborAdvertisement(ls.mac, p.addr, allNodes, nil, false)
	}
	if err == nil {
		err = send(ls.conn, frame, dst)
	}
	if err != nil {
		l.a.m.errors.WithLabelValues(string(p.key.proto), p.key.iface, "write").Inc()
		l.logOnce(ls, "cannot announce", err, zap.Stringer("ip", p.addr))
		return
	}
	l.a.m.gratuitous.WithLabelValues(string(p.key.proto), p.key.iface).Inc()
}

// logOnce logs a listener's problem at warning level the first time and at
// debug level while it repeats, so a link that stays broken does not flood
// the log.
func (l *loop) logOnce(ls *listener, msg string, err error, fields ...zap.Field) {
	fields = append(fields, zap.String("iface", ls.key.iface), zap.String("proto", string(ls.key.proto)), zap.Error(err))
	if err.Error() == ls.lastErr {
		l.log.Debug(msg, fields...)
		return
	}
	ls.lastErr = err.Error()
	l.log.Warn(msg, fields...)
}

// publishMACs publishes the MACs of the open listeners: frames from them
// are this node's own.
func (l *loop) publishMACs() {
	own := map[[6]byte]struct{}{}
	for _, ls := range l.listeners {
		if ls.conn != nil && len(ls.mac) == 6 {
			own[[6]byte(ls.mac)] = struct{}{}
		}
	}
	l.a.ownMACs.Store(&own)
}

func (l *loop) sortedListeners() []*listener {
	out := slices.Collect(maps.Values(l.listeners))
	slices.SortFunc(out, func(a, b *listener) int {
		return cmp.Or(cmp.Compare(a.key.iface, b.key.iface), cmp.Compare(a.key.proto, b.key.proto))
	})
	return out
}

// pairs lists ls's addresses as pairs, sorted.
func pairs(ls *listener) []pair {
	out := make([]pair, 0, len(ls.addrs))
	for addr := range ls.addrs {
		out = append(out, pair{ls.key, addr})
	}
	slices.SortFunc(out, comparePairs)
	return out
}

func comparePairs(a, b pair) int {
	return cmp.Or(cmp.Compare(a.key.iface, b.key.iface), cmp.Compare(a.key.proto, b.key.proto), a.addr.Compare(b.addr))
}

func has(set map[netip.Addr]struct{}, addr netip.Addr) bool {
	_, ok := set[addr]
	return ok
}
