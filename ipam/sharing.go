package ipam

import (
	"fmt"
	"net/netip"
	"slices"
)

// shareConflict says why an owner asking with a may not share an address with
// a holder that asked with b; "" when they may. Sharing needs the same
// non-empty key, no (protocol, port) used by both and, when either side has
// externalTrafficPolicy Local, the same backends: the address is then
// announced only from nodes with a local endpoint, which must be right for
// both Services.
func shareConflict(a, b *sharing) string {
	switch {
	case b == nil:
		return "the holder has no sharing key"
	case a == nil:
		return fmt.Sprintf("this Service has no sharing key (the holder's is %q)", b.key)
	case a.key != b.key:
		return fmt.Sprintf("the sharing keys differ (the holder's is %q, this Service's %q)", b.key, a.key)
	}
	for _, p := range a.ports {
		if slices.Contains(b.ports, p) {
			return fmt.Sprintf("both use port %v", p)
		}
	}
	if (a.local || b.local) && a.backend != b.backend {
		return "their backends differ and one has externalTrafficPolicy Local"
	}
	return ""
}

// holders records who holds each address: the first holder in an
// addrIndex, the rare further holders of a shared address in a map.
type holders struct {
	first addrIndex
	more  map[netip.Addr][]*owner
}

func newHolders() holders {
	return holders{first: newAddrIndex(), more: make(map[netip.Addr][]*owner)}
}

// add records o as a holder of x and reports whether x was free.
func (h *holders) add(x netip.Addr, o *owner) (wasFree bool) {
	if h.first.get(x) == nil {
		h.first.set(x, o)
		return true
	}
	h.more[x] = append(h.more[x], o)
	return false
}

// remove forgets o as a holder of x and reports whether x is now free.
func (h *holders) remove(x netip.Addr, o *owner) (nowFree bool) {
	more := h.more[x]
	if h.first.get(x) == o {
		if len(more) == 0 {
			h.first.set(x, nil)
			return true
		}
		h.first.set(x, more[0])
		more = more[1:]
	} else if i := slices.Index(more, o); i >= 0 {
		more = slices.Delete(more, i, i+1)
	}
	if len(more) == 0 {
		delete(h.more, x)
	} else {
		h.more[x] = more
	}
	return false
}

// of calls fn for every holder of x until fn returns false.
func (h *holders) of(x netip.Addr, fn func(*owner) bool) {
	o := h.first.get(x)
	if o == nil || !fn(o) {
		return
	}
	for _, o := range h.more[x] {
		if !fn(o) {
			return
		}
	}
}

// keyIndex lists, per sharing key, the addresses held by owners whose request
// carries that key, with the number of such holders. It finds addresses a new
// owner may join without scanning all holdings.
type keyIndex map[string]map[netip.Addr]int

func (k keyIndex) add(key string, x netip.Addr) {
	if key == "" {
		return
	}
	m := k[key]
	if m == nil {
		m = make(map[netip.Addr]int)
		k[key] = m
	}
	m[x]++
}

func (k keyIndex) remove(key string, x netip.Addr) {
	m := k[key]
	if m == nil {
		return
	}
	if m[x]--; m[x] <= 0 {
		delete(m, x)
	}
	if len(m) == 0 {
		delete(k, key)
	}
}
