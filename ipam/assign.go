package ipam

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Assign computes what the owner should hold for req, and returns its
// addresses in req.Families order. It is idempotent and level-based:
//
//   - Every address the owner holds that req still allows is kept, never
//     moved. Allowed means: inside a pool that may serve req (the requested
//     pool if any; allocation rules match), of a family req asks for, one of
//     req.Addresses if any are requested, and still legally shared with the
//     other current holders. autoAssign: false does not disallow a holding.
//   - Families without such an address get one. With requested addresses
//     the owner gets exactly those, and nothing in families they do not
//     cover; autoAssign: false pools serve them, and a request for an address
//     outside the requested pool fails with ErrAddressNotInPool. Without,
//     the pool is the requested one, else the first with free addresses among
//     the matching autoAssign pools with allocation rules (by priority, then
//     name) and then the autoAssign pools without rules (by name). An owner
//     with a sharing key first joins the lowest address it may legally share
//     in those pools, in that order. The address is the lowest free one.
//   - Families: SingleStack gets its family or fails; PreferDualStack gets
//     every family it can and fails only when it gets none (with the
//     primary family's error); RequireDualStack gets both or fails.
//
// Assign never frees anything: holdings req no longer allows become leaving,
// still held (by nobody else) until Settle. On error it takes nothing new
// and returns the addresses the owner keeps with an error wrapping one of the
// sentinels; an invalid request (ErrInvalidRequest) changes nothing at all.
func (a *Allocator) Assign(name Owner, req Request) ([]netip.Addr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	o := a.owners[name]
	r, err := compile(name, req)
	if err != nil {
		if o == nil {
			return nil, err
		}
		return slices.Clone(o.held[:o.cur]), err
	}
	if o == nil {
		o = &owner{req: request{owner: name}}
	}

	fams := r.familyList()
	explicit := len(r.addresses()) > 0
	var keptBuf, resultBuf, freshBuf [2]netip.Addr // at most one per family
	kept, result, fresh := keptBuf[:0], resultBuf[:0], freshBuf[:0]
	var firstErr error
	failed := false
	for _, f := range fams {
		if x, ok := a.keeper(o, f, &r); ok {
			kept = append(kept, x)
			result = append(result, x)
			continue
		}
		var x netip.Addr
		if explicit {
			want, ok := r.requested(f)
			if !ok {
				continue
			}
			x, err = want, a.claimable(o, want, &r)
		} else {
			x, err = a.pick(o, &r, f)
		}
		if err != nil {
			firstErr = cmp.Or(firstErr, err)
			failed = failed || explicit || r.policy != PreferDualStack
			continue
		}
		result = append(result, x)
		fresh = append(fresh, x)
	}
	if len(result) == 0 && firstErr != nil {
		failed = true
	}

	a.setRequest(o, r)
	if failed {
		result, fresh = kept, nil
	}
	for _, x := range fresh {
		if !o.holds(x) {
			a.hold(o, x)
		}
	}
	a.layout(o, result)
	if failed {
		return slices.Clone(result), firstErr
	}
	return slices.Clone(result), nil
}

// keeper returns the address of family f that o holds and r allows,
// preferring a current one over a leaving one.
func (a *Allocator) keeper(o *owner, f Family, r *request) (netip.Addr, bool) {
	var leaving netip.Addr
	for i, x := range o.held {
		if FamilyOf(x) != f || !a.allows(o, x, r) {
			continue
		}
		if i < o.cur {
			return x, true
		}
		if !leaving.IsValid() {
			leaving = x
		}
	}
	return leaving, leaving.IsValid()
}

// allows reports whether o, asking with r, may keep x.
func (a *Allocator) allows(o *owner, x netip.Addr, r *request) bool {
	sp := spaceOf(a.lookup, x)
	if sp == nil || !sp.usable(x) || !r.hasFamily(sp.family) || a.blocks(x, r) {
		return false
	}
	if p := r.pool(); p != "" && p != sp.pool.name {
		return false
	}
	if !sp.pool.matches(r) {
		return false
	}
	if want := r.addresses(); len(want) > 0 && !slices.Contains(want, x) {
		return false
	}
	return a.shareError(o, x, r, false) == nil
}

// shareError says why o, asking with r, may not hold x alongside its other
// holders; nil when it may. Only current holders are judged, except that
// nobody new (nor anybody, when strict) may take an address another holder
// is releasing: its Service may still show it.
func (a *Allocator) shareError(o *owner, x netip.Addr, r *request, strict bool) error {
	joining := strict || !o.holds(x)
	var err error
	a.holders.of(x, func(h *owner) bool {
		switch {
		case h == o:
		case h.leaving(x):
			if joining {
				err = fmt.Errorf("%s is being released by %s: %w", x, h.name(), ErrAddressInUse)
			}
		default:
			if why := shareConflict(r.share(), h.req.share()); why != "" {
				err = fmt.Errorf("%s is held by %s and may not be shared: %s: %w", x, h.name(), why, ErrAddressInUse)
			}
		}
		return err == nil
	})
	return err
}

// claimable says why o, asking with r, may not have the requested address x.
func (a *Allocator) claimable(o *owner, x netip.Addr, r *request) error {
	sp := spaceOf(a.lookup, x)
	if sp == nil {
		return fmt.Errorf("requested address %s is in no pool: %w", x, ErrAddressNotInPool)
	}
	p := sp.pool
	if !sp.usable(x) {
		return fmt.Errorf("requested address %s ends in .0 or .255, which pool %q avoids: %w", x, p.name, ErrAddressNotInPool)
	}
	if want := r.pool(); want != "" && want != p.name {
		return fmt.Errorf("requested address %s is not in the requested pool %q but in pool %q: %w", x, want, p.name, ErrAddressNotInPool)
	}
	if !p.matches(r) {
		return fmt.Errorf("requested address %s is in pool %q, which does not serve %s: %w", x, p.name, r.who(), ErrNoMatchingPool)
	}
	return a.shareError(o, x, r, false)
}

// candidates returns the spaces of family f that may serve r without a
// requested address, in the order to try them.
func (a *Allocator) candidates(r *request, f Family) ([]*space, error) {
	if name := r.pool(); name != "" {
		p := a.pools[name]
		switch {
		case p == nil:
			return nil, fmt.Errorf("requested pool %q does not exist: %w", name, ErrNoMatchingPool)
		case !p.matches(r):
			return nil, fmt.Errorf("requested pool %q does not serve %s: %w", name, r.who(), ErrNoMatchingPool)
		case p.space(f) == nil:
			return nil, fmt.Errorf("requested pool %q has no %v addresses: %w", name, f, ErrFamilyUnavailable)
		}
		return []*space{p.space(f)}, nil
	}
	var out []*space
	matched := 0
	for _, p := range a.auto {
		if p.matches(r) {
			matched++
			if sp := p.space(f); sp != nil {
				out = append(out, sp)
			}
		}
	}
	switch {
	case matched == 0:
		return nil, fmt.Errorf("no autoAssign pool serves %s: %w", r.who(), ErrNoMatchingPool)
	case len(out) == 0:
		var names []string
		for _, p := range a.auto {
			if p.matches(r) {
				names = append(names, strconv.Quote(p.name))
			}
		}
		return nil, fmt.Errorf("no %v addresses in the pools serving %s (%s): %w", f, r.who(), strings.Join(names, ", "), ErrFamilyUnavailable)
	}
	return out, nil
}

// pick chooses a new address of family f for o, asking with r and
// requesting no address.
func (a *Allocator) pick(o *owner, r *request, f Family) (netip.Addr, error) {
	cands, err := a.candidates(r, f)
	if err != nil {
		return netip.Addr{}, err
	}
	if x, ok := a.joinable(o, r, cands); ok {
		return x, nil
	}
	for _, sp := range cands {
		if x, ok := sp.lowest(); ok {
			return fromU128(x, f), nil
		}
	}
	if len(cands) == 1 {
		return netip.Addr{}, fmt.Errorf("pool %q has no free %v address: %w", cands[0].pool.name, f, ErrPoolExhausted)
	}
	names := make([]string, len(cands))
	for i, sp := range cands {
		names[i] = strconv.Quote(sp.pool.name)
	}
	return netip.Addr{}, fmt.Errorf("pools %s have no free %v address: %w", strings.Join(names, ", "), f, ErrPoolExhausted)
}

// joinable finds the address o may share under r's sharing key: in the
// first candidate space that has one, the lowest. O(k log k) for k
// addresses held under the key.
func (a *Allocator) joinable(o *owner, r *request, cands []*space) (netip.Addr, bool) {
	byKey := a.keys[r.key()]
	if r.key() == "" || len(byKey) == 0 {
		return netip.Addr{}, false
	}
	in := make(map[*space][]netip.Addr)
	for x := range byKey {
		if sp := spaceOf(a.lookup, x); sp != nil && sp.usable(x) && !o.holds(x) && !a.blocks(x, r) {
			in[sp] = append(in[sp], x)
		}
	}
	for _, sp := range cands {
		xs := in[sp]
		slices.SortFunc(xs, netip.Addr.Compare)
		for _, x := range xs {
			if a.shareError(o, x, r, false) == nil {
				return x, true
			}
		}
	}
	return netip.Addr{}, false
}

// who describes the requester for error messages.
func (r *request) who() string {
	return fmt.Sprintf("namespace %q, Service labels {%s}", r.namespace(), labelString(r.serviceLabels))
}

func labelString(m map[string]string) string {
	kv := make([]string, 0, len(m))
	for k, v := range m {
		kv = append(kv, k+"="+v)
	}
	slices.Sort(kv)
	return strings.Join(kv, ",")
}
