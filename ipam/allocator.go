package ipam

import (
	"fmt"
	"math/big"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/heraldlb/herald/config"
)

// Allocator hands out addresses from pools to owners (Services) and keeps
// track of who holds what. It is safe for concurrent use.
//
// An owner's holdings are either current (what its latest Assign returned,
// or what Restore claimed) or leaving: no longer allowed by its request, but
// still held, so that nobody else gets them, until Settle. An address may be
// held by several owners that may share it.
//
// Costs, for n held addresses, P pools and R ranges in the configuration;
// a pool's size never matters. An owner holds a handful of addresses, and
// joining a shared address adds O(k log k) for the k addresses held under
// the sharing key asked for.
//
//	Assign           O(log n + log R + P) (P: selectors matched)
//	Settle, Release  O(log n + log R) per address given up
//	Restore          O(log n + log R) per address
//	SetPools         O(n log n + R log R + P log P)
//	Addresses        O(1)
//	PoolOf           O(log R)
//	Stats            O(P)
//
// Memory is O(n + R): per pool and family a B-tree of free intervals (at most
// one more interval than there are held addresses and ranges; one for a pool
// filled from its start), an index from address to holders, and one small
// record per owner with its request. A million allocations in one IPv6 /64
// take about 190 bytes each, owner names included (BenchmarkAssignRelease).
type Allocator struct {
	mu      sync.Mutex
	pools   map[string]*pool
	byName  []*pool    // every pool, by name
	auto    []*pool    // the pools automatic choice may use, in its order
	lookup  []rangeRef // every range of every pool, ascending
	owners  map[Owner]*owner
	holders holders
	keys    keyIndex
	// blocked addresses (Block); true when the block took the address out
	// of its free set (nobody held it).
	blocked map[netip.Addr]bool
}

// owner is what the allocator knows of one owner; it exists while the owner
// holds an address.
type owner struct {
	req request // from the latest valid Assign, or Restore; names the owner
	// held[:cur] are current, in the order Assign returned them;
	// held[cur:] are leaving.
	held []netip.Addr
	cur  int
}

func (o *owner) name() Owner { return o.req.owner }

func (o *owner) holds(x netip.Addr) bool { return slices.Contains(o.held, x) }

func (o *owner) leaving(x netip.Addr) bool { return slices.Index(o.held, x) >= o.cur }

// New returns an allocator serving pools, which must be valid as config.Parse
// returns them (ranges sorted, single-family, no address in two pools).
func New(pools []config.Pool) *Allocator {
	a := &Allocator{
		owners:  make(map[Owner]*owner),
		holders: newHolders(),
		keys:    make(keyIndex),
	}
	a.setPools(pools)
	return a
}

// SetPools replaces the pools (a configuration reload). Every holding stays
// held, also one the new pools no longer contain (it then counts in no
// pool's Stats). It returns, per owner, the current holdings its stored
// request no longer allows: the address is in no pool, in one that no longer
// serves the owner, or is now avoided. Re-Assign those owners to move them.
// Owners holding nothing are not tracked, so Services still pending must be
// re-Assigned too. O(n log n + R log R + P log P).
func (a *Allocator) SetPools(pools []config.Pool) map[Owner][]netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.setPools(pools)
	moved := make(map[Owner][]netip.Addr)
	for _, o := range a.owners {
		for _, x := range o.held[:o.cur] {
			if !a.allows(o, x, &o.req) {
				moved[o.name()] = append(moved[o.name()], x)
			}
		}
	}
	return moved
}

func (a *Allocator) setPools(cfg []config.Pool) {
	a.pools = make(map[string]*pool, len(cfg))
	a.byName, a.auto, a.lookup = nil, nil, nil
	for _, cp := range cfg {
		p := &pool{name: cp.Name, autoAssign: cp.AutoAssign, alloc: cp.Allocation}
		for _, r := range cp.Ranges {
			f := FamilyOf(r.From)
			sp := p.space(f)
			if sp == nil {
				sp = &space{pool: p, family: f, avoid: f == IPv4 && cp.AvoidBuggyIPs, size: new(big.Int)}
				p.spaces[familyIndex(f)] = sp
			}
			sp.ranges = append(sp.ranges, r)
			sp.size.Add(sp.size, sp.rangeSize(r))
			a.lookup = append(a.lookup, rangeRef{from: r.From, to: r.To, sp: sp})
		}
		a.pools[p.name] = p
		a.byName = append(a.byName, p)
		if p.autoAssign {
			a.auto = append(a.auto, p)
		}
	}
	slices.SortFunc(a.byName, func(x, y *pool) int { return strings.Compare(x.name, y.name) })
	slices.SortFunc(a.auto, autoOrder)
	slices.SortFunc(a.lookup, func(x, y rangeRef) int { return x.from.Compare(y.from) })

	held := make(map[*space][]u128)
	a.holders.first.all(func(x netip.Addr) {
		if sp := spaceOf(a.lookup, x); sp != nil {
			held[sp] = append(held[sp], toU128(x))
		}
	})
	for _, p := range a.byName {
		for _, sp := range p.spaces {
			if sp != nil {
				h := held[sp]
				slices.SortFunc(h, u128.cmp)
				sp.build(h)
			}
		}
	}
	for x := range a.blocked {
		if a.holders.first.get(x) == nil {
			a.takeBlocked(x)
		}
	}
}

// Settle frees every address the owner holds beyond its latest Assign
// result (the leaving ones) and returns them. Call it once the Service's
// status no longer shows them, so an address is never visible on two
// Services. A shared address stays held by its other holders.
// O(log n + log R) per address.
func (a *Allocator) Settle(name Owner) []netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	o := a.owners[name]
	if o == nil || o.cur == len(o.held) {
		return nil
	}
	gone := slices.Clone(o.held[o.cur:])
	for _, x := range gone {
		a.unhold(o, x)
	}
	o.held = slices.Clip(o.held[:o.cur])
	if len(o.held) == 0 {
		delete(a.owners, name)
	}
	return gone
}

// Release frees everything the owner holds (its Service is gone) and
// returns it, current addresses first. A shared address stays held by its
// other holders. O(log n + log R) per address.
func (a *Allocator) Release(name Owner) []netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	o := a.owners[name]
	if o == nil {
		return nil
	}
	for _, x := range o.held {
		a.unhold(o, x)
	}
	delete(a.owners, name)
	return o.held
}

// Restore claims addresses a Service already has (at controller start,
// before any Assign), as current holdings, and stores req for later
// decisions even if Assign would reject it. It is atomic: all addresses are
// claimed or none. It does not judge pool allocation rules (the next Assign
// decides whether the addresses stay), only that each address is in a pool
// (else ErrAddressNotInPool) and that its other holders, if any, may share it
// with this owner and are not releasing it (else ErrAddressInUse).
// O(log n + log R) per address.
func (a *Allocator) Restore(name Owner, addrs []netip.Addr, req Request) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	r, _ := compile(name, req)
	var claim []netip.Addr
	for _, x := range addrs {
		if !x.IsValid() || x.Zone() != "" {
			return fmt.Errorf("restore %q: not a plain IP address: %w", x, ErrInvalidRequest)
		}
		if !slices.Contains(claim, x) {
			claim = append(claim, x)
		}
	}
	o := a.owners[name]
	if o == nil {
		o = &owner{req: request{owner: name}}
	}
	for _, x := range claim {
		if spaceOf(a.lookup, x) == nil {
			return fmt.Errorf("restore %s: it is in no pool: %w", x, ErrAddressNotInPool)
		}
		if err := a.shareError(o, x, &r, true); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	}
	// req replaces the owner's request: what it already holds as current
	// must still be shareable under it.
	for _, x := range o.held[:o.cur] {
		if slices.Contains(claim, x) {
			continue
		}
		if err := a.shareError(o, x, &r, false); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	}
	a.setRequest(o, r)
	cur := slices.Clone(o.held[:o.cur])
	for _, x := range claim {
		if !o.holds(x) {
			a.hold(o, x)
		}
		if !slices.Contains(cur, x) {
			cur = append(cur, x)
		}
	}
	a.layout(o, cur)
	return nil
}

// Addresses returns everything the owner holds: its current addresses (as
// Assign last returned them), then the leaving ones.
func (a *Allocator) Addresses(name Owner) []netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	if o := a.owners[name]; o != nil {
		return slices.Clone(o.held)
	}
	return nil
}

// PoolOf returns the name of the pool whose ranges contain addr, or "".
// O(log R).
func (a *Allocator) PoolOf(addr netip.Addr) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if sp := spaceOf(a.lookup, addr.WithZone("")); sp != nil {
		return sp.pool.name
	}
	return ""
}

// PoolStats describes one family of one pool.
type PoolStats struct {
	Pool   string
	Family Family
	// Size is the number of addresses that may be handed out (without .0
	// and .255 when the pool avoids them), exact for any pool size.
	Size *big.Int
	// InUse is the number of distinct held addresses in the pool: a shared
	// address counts once, a leaving one counts.
	InUse uint64
}

// Stats returns every pool's figures per family it has addresses of,
// sorted by pool then family. O(P).
func (a *Allocator) Stats() []PoolStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []PoolStats
	for _, p := range a.byName {
		for _, sp := range p.spaces {
			if sp != nil {
				out = append(out, PoolStats{Pool: p.name, Family: sp.family, Size: new(big.Int).Set(sp.size), InUse: sp.inUse})
			}
		}
	}
	return out
}

// hold makes o a holder of x. O(log n + log R).
func (a *Allocator) hold(o *owner, x netip.Addr) {
	if a.holders.add(x, o) {
		if sp := spaceOf(a.lookup, x); sp != nil {
			sp.inUse++
			if u := toU128(x); !sp.buggy(u) && !a.blocked[x] {
				sp.take(u)
			}
		}
		if _, ok := a.blocked[x]; ok {
			a.blocked[x] = false // out of the free set for its holder now
		}
	}
	a.keys.add(o.req.key(), x)
}

// unhold ends o's hold on x, freeing x if o was its last holder.
// O(log n + log R).
func (a *Allocator) unhold(o *owner, x netip.Addr) {
	a.keys.remove(o.req.key(), x)
	if a.holders.remove(x, o) {
		if sp := spaceOf(a.lookup, x); sp != nil {
			sp.inUse--
			if _, ok := a.blocked[x]; ok {
				a.blocked[x] = true // stays out of the free set
			} else if u := toU128(x); !sp.buggy(u) {
				sp.put(u)
			}
		}
	}
}

// setRequest stores r as o's request, moving o's holdings in the sharing-key
// index if the key changed.
func (a *Allocator) setRequest(o *owner, r request) {
	if old, key := o.req.key(), r.key(); old != key {
		for _, x := range o.held {
			a.keys.remove(old, x)
			a.keys.add(key, x)
		}
	}
	o.req = r
}

// layout makes cur o's current holdings, in that order, and every other
// address it holds leaving; o is tracked while it holds anything.
func (a *Allocator) layout(o *owner, cur []netip.Addr) {
	if o.cur != len(cur) || !slices.Equal(o.held[:o.cur], cur) {
		held := make([]netip.Addr, 0, len(o.held)+len(cur))
		held = append(held, cur...)
		for _, x := range o.held {
			if !slices.Contains(cur, x) {
				held = append(held, x)
			}
		}
		o.held, o.cur = held, len(cur)
	}
	if len(o.held) == 0 {
		delete(a.owners, o.name())
	} else {
		a.owners[o.name()] = o
	}
}
