package l2

import (
	"bytes"
	"net"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Conflict is a frame from another MAC that claims an address this node
// answers for (or probes).
type Conflict struct {
	Addr  netip.Addr
	Iface string
	MAC   net.HardwareAddr // the other MAC (ARP sender hardware address / NA target link-layer address, else Ethernet source)
	Kind  string           // one of the Kind constants
	At    time.Time
}

// Kinds of Conflict: what the other device sent.
const (
	// KindARPReply is an ARP reply with the address as sender IP.
	KindARPReply = "arp-reply"
	// KindARPRequest is an ARP request with the address as sender IP,
	// gratuitous ARP included.
	KindARPRequest = "arp-request"
	// KindNeighborAdvertisement is a neighbour advertisement for the
	// address, solicited or not.
	KindNeighborAdvertisement = "neighbor-advertisement"
	// KindDAD is another device checking, before it takes the address,
	// whether an address this node answers for is free: a duplicate address
	// detection solicitation (RFC 4862 §5.4) or an ARP probe (RFC 5227
	// §2.1.1). It is answered as before, which defends the address.
	KindDAD = "dad"
	// KindProbe is the same for an address this node is probing itself:
	// two devices want it at once (RFC 5227 §2.1.1, RFC 4862 §5.4.3).
	KindProbe = "probe"
)

const (
	conflictBuffer = 256             // Conflicts' channel
	conflictEvery  = time.Second     // at most one Conflict per (address, MAC, interface) this often
	limiterForget  = 3 * time.Second // a limiter entry older than this is forgotten
	limiterMax     = 4096            // limiter entries; beyond, new conflicts are dropped until swept
	probeKeep      = 16              // conflicts one Probe call keeps, one per (interface, MAC, kind)
)

// Conflicts returns the channel on which the Announcer reports every other
// device's claim to an address it answers for or probes, at most once a
// second per address, MAC and interface. The channel is never closed; when
// its buffer is full, a conflict is dropped (and counted) rather than stall
// the responders.
func (a *Announcer) Conflicts() <-chan Conflict {
	return a.conflicts
}

// claimed handles a frame on r's interface from mac that claims addr: it
// reports a conflict if addr is answered here or being probed and mac is
// not one of this node's. probeKind says the frame is a probe (someone
// else wants addr); kind is then chosen by what this node does with addr.
func (r *responder) claimed(addr netip.Addr, mac net.HardwareAddr, kind string, probeKind bool) {
	r.a.answerMu.RLock()
	answered := has(r.a.answer[r.key], addr)
	r.a.answerMu.RUnlock()
	r.a.probeMu.RLock()
	probes := r.a.probing[r.key][addr] // replaced, never mutated, on change
	r.a.probeMu.RUnlock()
	if !answered && len(probes) == 0 {
		return
	}
	if bytes.Equal(mac, r.mac) || r.a.isOwnMAC(mac) {
		return
	}
	if probeKind {
		kind = KindProbe
		if answered {
			kind = KindDAD
		}
	}
	c := Conflict{Addr: addr, Iface: r.key.iface, MAC: bytes.Clone(mac), Kind: kind, At: time.Now()}
	r.conflicts.Inc()
	for _, p := range probes {
		p.add(c)
	}
	if !r.a.limiter.allow(c) {
		return
	}
	select {
	case r.a.conflicts <- c:
		r.a.log.Debug("another device claims an address", zap.Stringer("ip", addr), zap.String("iface", c.Iface),
			zap.Stringer("mac", c.MAC), zap.String("kind", kind))
	default:
		r.a.m.conflictsDropped.Inc()
	}
}

// isOwnMAC tells whether mac is the MAC of any open listener.
func (a *Announcer) isOwnMAC(mac net.HardwareAddr) bool {
	own := a.ownMACs.Load()
	if own == nil || len(mac) != 6 {
		return false
	}
	_, ok := (*own)[[6]byte(mac)]
	return ok
}

// limiter lets through one conflict per (address, MAC, interface) per
// conflictEvery. It forgets entries after limiterForget, and holds at
// most limiterMax, so a flood of forged MACs cannot grow it without bound.
type limiter struct {
	mu    sync.Mutex
	last  map[limitKey]time.Time
	swept time.Time
}

type limitKey struct {
	addr  netip.Addr
	mac   [6]byte
	iface string
}

func (l *limiter) allow(c Conflict) bool {
	var mac [6]byte
	copy(mac[:], c.MAC)
	k := limitKey{c.Addr, mac, c.Iface}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.At.Sub(l.swept) >= conflictEvery { // at most once a second, however many frames come
		for k, at := range l.last {
			if c.At.Sub(at) >= limiterForget {
				delete(l.last, k)
			}
		}
		l.swept = c.At
	}
	if at, ok := l.last[k]; ok && c.At.Sub(at) < conflictEvery {
		return false
	}
	if len(l.last) >= limiterMax {
		return false
	}
	l.last[k] = c.At
	return true
}
