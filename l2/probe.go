package l2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// ErrNotRunning is returned by Probe when Run is not running: probes go
// out through the sockets Run owns.
var ErrNotRunning = errors.New("l2: Announcer is not running")

// probeLinger is how long a socket that only Probes needed stays open
// after the last of them ended: an address found free is usually Set at
// once, on the same interface.
const probeLinger = time.Second

// Probe asks whether another device answers for addr on ifaces: it sends
// ARP probes (sender IP 0.0.0.0, target addr, RFC 5227 §2.1.1) or DAD
// neighbour solicitations (source ::, to addr's solicited-node group, no
// source link-layer option, RFC 4862 §5.4.2) — count probes spaced over
// wait — and returns the conflicts seen until wait has passed (nil: nobody
// answered). It does not answer for addr. While it waits, another device's
// probe for addr is a conflict too (Kind KindProbe).
//
// Probes go out through the interface's socket, which Run opens if no
// address needs it yet, so Probe needs Run running (else ErrNotRunning)
// and many concurrent Probes cost no socket each. An interface that cannot
// be probed (it cannot be opened, or a send fails) is named in the error;
// the conflicts seen on the others are returned with it. When ctx ends,
// Probe returns what it has seen so far and ctx's error.
//
// The RFCs' own timings are longer (RFC 5227: 3 probes 1-2 s apart, then 2
// s; RFC 4862: 1 s): a short wait trusts that a defender answers at once.
func (a *Announcer) Probe(ctx context.Context, addr netip.Addr, ifaces []string, count int, wait time.Duration) ([]Conflict, error) {
	ip := addr.Unmap().WithZone("")
	if !ip.IsValid() || ip.IsUnspecified() || ip.IsMulticast() || ip.IsLoopback() {
		return nil, fmt.Errorf("probe %s: not an address to answer for", addr)
	}
	names := slices.DeleteFunc(slices.Clone(ifaces), func(n string) bool { return n == "" })
	slices.Sort(names)
	if names = slices.Compact(names); len(names) == 0 {
		return nil, fmt.Errorf("probe %s: no interface given", ip)
	}
	count = max(count, 1)
	wait = max(wait, 0)

	a.mu.Lock()
	reqs, stopped := a.probes, a.stopped
	a.mu.Unlock()
	if reqs == nil {
		return nil, fmt.Errorf("probe %s: %w", ip, ErrNotRunning)
	}
	keys := make([]lkey, len(names))
	for i, name := range names {
		keys[i] = lkey{name, protoOf(ip)}
	}
	p := &probe{}
	a.startProbe(keys, ip, p) // before any probe goes out, so no answer is missed
	defer a.endProbe(keys, ip, p)

	req := probeReq{addr: ip, keys: keys, reply: make(chan []probeTarget, 1)}
	select {
	case reqs <- req:
	case <-stopped:
		return nil, fmt.Errorf("probe %s: %w", ip, ErrNotRunning)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	targets := <-req.reply // the loop answers every request it takes, at once

	build := arpProbe
	if !ip.Is4() {
		build = dadSolicitation
	}
	var errs []error
	for i := range targets {
		t := &targets[i]
		if t.err == nil {
			t.frame, t.dst, t.err = build(t.mac, ip)
		}
		if t.err != nil {
			errs = append(errs, fmt.Errorf("probe %s on %s: %w", ip, t.key.iface, t.err))
		}
	}

	start := time.Now()
	for i := range count {
		if !sleepUntil(ctx, start.Add(wait*time.Duration(i)/time.Duration(count))) {
			break
		}
		for j := range targets {
			t := &targets[j]
			if t.err != nil {
				continue
			}
			if t.err = send(t.conn, t.frame, t.dst); t.err != nil {
				a.m.errors.WithLabelValues(string(t.key.proto), t.key.iface, "write").Inc()
				errs = append(errs, fmt.Errorf("probe %s on %s: %w", ip, t.key.iface, t.err))
			}
		}
	}
	if !sleepUntil(ctx, start.Add(wait)) {
		errs = append(errs, ctx.Err())
	}
	return p.conflicts(), errors.Join(errs...)
}

// sleepUntil waits until t or until ctx ends; false if ctx ended.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// probe collects the conflicts one Probe call sees: one per (interface,
// MAC, kind), at most probeKeep.
type probe struct {
	mu   sync.Mutex
	seen []Conflict
}

func (p *probe) add(c Conflict) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.seen) >= probeKeep || slices.ContainsFunc(p.seen, func(s Conflict) bool {
		return s.Iface == c.Iface && s.Kind == c.Kind && bytes.Equal(s.MAC, c.MAC)
	}) {
		return
	}
	p.seen = append(p.seen, c)
}

func (p *probe) conflicts() []Conflict {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.seen)
}

// startProbe registers p as probing addr on keys. The slices in probing
// are replaced, never appended to in place: responders read them after
// releasing the lock.
func (a *Announcer) startProbe(keys []lkey, addr netip.Addr, p *probe) {
	a.probeMu.Lock()
	defer a.probeMu.Unlock()
	for _, k := range keys {
		if a.probing[k] == nil {
			a.probing[k] = map[netip.Addr][]*probe{}
		}
		a.probing[k][addr] = append(slices.Clip(a.probing[k][addr]), p)
	}
}

// endProbe unregisters p and tells the loop, which closes what only
// Probes needed once probeLinger has passed.
func (a *Announcer) endProbe(keys []lkey, addr netip.Addr, p *probe) {
	a.probeMu.Lock()
	for _, k := range keys {
		rest := slices.DeleteFunc(slices.Clone(a.probing[k][addr]), func(q *probe) bool { return q == p })
		switch {
		case len(rest) > 0:
			a.probing[k][addr] = rest
		case len(a.probing[k]) > 1:
			delete(a.probing[k], addr)
		default:
			delete(a.probing, k)
		}
	}
	a.probeMu.Unlock()
	select {
	case a.idle <- struct{}{}:
	default: // a sweep is already pending
	}
}

// probedOn lists the addresses being probed on k.
func (a *Announcer) probedOn(k lkey) []netip.Addr {
	a.probeMu.RLock()
	defer a.probeMu.RUnlock()
	out := make([]netip.Addr, 0, len(a.probing[k]))
	for addr := range a.probing[k] {
		out = append(out, addr)
	}
	return out
}

// probeReq asks the loop for the sockets to probe addr through.
type probeReq struct {
	addr  netip.Addr
	keys  []lkey
	reply chan []probeTarget // buffered: the loop never waits on it
}

// probeTarget is one interface to probe on: its socket and MAC now, or why
// it cannot be probed.
type probeTarget struct {
	key   lkey
	conn  net.PacketConn
	mac   net.HardwareAddr
	err   error
	frame []byte // filled in by Probe
	dst   net.HardwareAddr
}

// prepareProbe makes sure each interface of req has an open socket,
// opening one if no address needed it, and has joined addr's
// solicited-node group. A socket that failed and waits for its retry is
// not opened early: a broken link does not get an open attempt per Probe.
func (l *loop) prepareProbe(req probeReq) []probeTarget {
	out := make([]probeTarget, 0, len(req.keys))
	for _, k := range req.keys {
		ls := l.listeners[k]
		if ls == nil {
			ls = &listener{key: k}
			l.listeners[k] = ls
			l.open(ls)
		}
		if ls.conn == nil {
			err := ls.err
			if err == nil {
				err = errors.New("socket closed")
			}
			out = append(out, probeTarget{key: k, err: fmt.Errorf("cannot listen: %w", err)})
			continue
		}
		l.joinGroup(ls, req.addr)
		out = append(out, probeTarget{key: k, conn: ls.conn, mac: ls.mac})
	}
	return out
}
