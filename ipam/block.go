package ipam

import (
	"net/netip"
	"slices"
)

// Block keeps x from being handed out, and from being kept by an owner that
// did not ask for x by address (such an owner moves at its next Assign,
// and x stays out of use when it settles). An owner that requests x keeps
// it or may still claim it. The controller blocks an address that a device
// outside the cluster answers for. O(log n + log R); idempotent.
func (a *Allocator) Block(x netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.blocked == nil {
		a.blocked = map[netip.Addr]bool{}
	}
	if _, ok := a.blocked[x]; ok {
		return
	}
	a.blocked[x] = false
	if a.holders.first.get(x) == nil {
		a.takeBlocked(x)
	}
}

// Unblock undoes Block: x is free again unless an owner holds it.
// O(log n + log R).
func (a *Allocator) Unblock(x netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	took, ok := a.blocked[x]
	if !ok {
		return
	}
	delete(a.blocked, x)
	if took {
		if sp := spaceOf(a.lookup, x); sp != nil {
			if u := toU128(x); !sp.buggy(u) {
				sp.put(u)
			}
		}
	}
}

// Blocked lists the blocked addresses, sorted. O(b log b).
func (a *Allocator) Blocked() []netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]netip.Addr, 0, len(a.blocked))
	for x := range a.blocked {
		out = append(out, x)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// takeBlocked removes the unheld, blocked x from its free set (a.mu held).
func (a *Allocator) takeBlocked(x netip.Addr) {
	sp := spaceOf(a.lookup, x)
	if sp == nil {
		return // in no pool now; taken if a pool comes to hold it (setPools)
	}
	if u := toU128(x); !sp.buggy(u) {
		sp.take(u)
	}
	a.blocked[x] = true
}

// blocks reports whether r may not keep or claim x (a.mu held).
func (a *Allocator) blocks(x netip.Addr, r *request) bool {
	_, ok := a.blocked[x]
	return ok && !slices.Contains(r.addresses(), x)
}
