package ipam_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/ipam"
	"k8s.io/apimachinery/pkg/labels"
)

// TestProperties runs seeded random sequences of Assign, Settle, Release,
// Restore and SetPools over small pools, and after every operation checks
// the allocator against a model kept by the test: current holders of an
// address may all share it, Stats equals a recount, Assign hands out only
// addresses its request allows and never one another owner is releasing,
// keeps what it may keep and frees nothing. (An owner whose new request
// no longer lets it share an address it holds is releasing it: that pair
// is not judged, only that nobody new joins.)
func TestProperties(t *testing.T) {
	const seeds, ops = 20, 2000
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			m := newModel(t, seed)
			for i := range ops {
				m.step(i)
				if t.Failed() {
					t.Logf("the last operations:\n%s", strings.Join(m.recent, "\n"))
					t.FailNow()
				}
			}
		})
	}
}

var propOwners = []ipam.Owner{"ns1/a", "ns1/b", "ns1/c", "ns1/d", "ns2/a", "ns2/b", "ns2/c", "ns2/d", "ns2/e", "ns2/f"}

// propAddrs are the addresses requests and restores pick from: in pools
// (depending on the configuration), at avoided .255/.0 and outside all.
var propAddrs = addrs(
	"10.0.0.250", "10.0.0.254", "10.0.0.255", "10.0.1.0", "10.0.1.1", "10.0.1.5",
	"10.0.2.0", "10.0.2.3", "10.0.9.9",
	"2001:db8::", "2001:db8::5", "2001:db8:1::2", "2001:db8:2::3", "2001:db8:9::9",
)

type model struct {
	t     *testing.T
	rnd   *rand.Rand
	a     *ipam.Allocator
	pools []config.Pool
	req   map[ipam.Owner]ipam.Request // as the allocator stores it
	cur   map[ipam.Owner][]netip.Addr // the latest Assign result (or restored)
	last  map[ipam.Owner]ipam.Request // the last request sent, to repeat it
	// recent are the last operations, shown when a check fails.
	recent []string
}

func (m *model) logf(format string, args ...any) {
	if len(m.recent) == 40 {
		m.recent = m.recent[1:]
	}
	m.recent = append(m.recent, fmt.Sprintf(format, args...))
}

func newModel(t *testing.T, seed uint64) *model {
	m := &model{
		t:    t,
		rnd:  rand.New(rand.NewPCG(seed, 0x6865726c64)),
		req:  make(map[ipam.Owner]ipam.Request),
		cur:  make(map[ipam.Owner][]netip.Addr),
		last: make(map[ipam.Owner]ipam.Request),
	}
	m.pools = m.randomPools()
	m.a = ipam.New(m.pools)
	return m
}

func (m *model) step(i int) {
	o := propOwners[m.rnd.IntN(len(propOwners))]
	before := m.snapshot()
	switch n := m.rnd.IntN(100); {
	case n < 55:
		r := m.randomRequest(o)
		if prev, ok := m.last[o]; ok && m.rnd.IntN(3) == 0 {
			r = prev
		}
		m.last[o] = r
		got, err := m.a.Assign(o, r)
		m.logf("op %d: Assign(%s, %+v) = %v, %v", i, o, r, got, err)
		m.checkAssign(o, r, got, err, before)
	case n < 70:
		got := m.a.Settle(o)
		want := before.all[o][len(m.cur[o]):]
		if diff := cmp.Diff(want, got, cmpAddr); diff != "" {
			m.t.Errorf("op %d: Settle(%s) (-want +got):\n%s", i, o, diff)
		}
	case n < 80:
		got := m.a.Release(o)
		if diff := cmp.Diff(before.all[o], got, cmpAddr); diff != "" {
			m.t.Errorf("op %d: Release(%s) (-want +got):\n%s", i, o, diff)
		}
		delete(m.cur, o)
	case n < 90:
		as := []netip.Addr{propAddrs[m.rnd.IntN(len(propAddrs))]}
		if m.rnd.IntN(2) == 0 {
			as = append(as, propAddrs[m.rnd.IntN(len(propAddrs))])
		}
		r := m.randomRequest(o)
		err := m.a.Restore(o, as, r)
		m.logf("op %d: Restore(%s, %v) = %v", i, o, as, err)
		if err == nil {
			m.req[o] = r
			for _, x := range as {
				if !slices.Contains(m.cur[o], x) {
					m.cur[o] = append(m.cur[o], x)
				}
			}
		} else if !errors.Is(err, ipam.ErrAddressNotInPool) && !errors.Is(err, ipam.ErrAddressInUse) {
			m.t.Errorf("op %d: Restore: unexpected error %v", i, err)
		}
		m.checkNoneTakenFromLeaving(o, before)
	default:
		m.pools = m.randomPools()
		moved := m.a.SetPools(m.pools)
		m.logf("op %d: SetPools → moved %v", i, moved)
		want := make(map[ipam.Owner][]netip.Addr)
		for _, o := range propOwners {
			for _, x := range m.cur[o] {
				if !m.allows(o, x, m.req[o]) {
					want[o] = append(want[o], x)
				}
			}
		}
		if diff := cmp.Diff(want, moved, cmpAddr); diff != "" {
			m.t.Errorf("op %d: SetPools moved (-want +got):\n%s", i, diff)
		}
	}
	m.checkInvariants(i)
}

// snapshot is what every owner holds before an operation.
type snapshot struct {
	all     map[ipam.Owner][]netip.Addr
	leaving map[netip.Addr][]ipam.Owner
}

func (m *model) snapshot() snapshot {
	s := snapshot{all: make(map[ipam.Owner][]netip.Addr), leaving: make(map[netip.Addr][]ipam.Owner)}
	for _, o := range propOwners {
		all := m.a.Addresses(o)
		s.all[o] = all
		for _, x := range all[len(m.cur[o]):] {
			s.leaving[x] = append(s.leaving[x], o)
		}
	}
	return s
}

func (m *model) checkAssign(o ipam.Owner, r ipam.Request, got []netip.Addr, err error, before snapshot) {
	t := m.t
	if errors.Is(err, ipam.ErrInvalidRequest) {
		if diff := cmp.Diff(m.cur[o], got, cmpAddr); diff != "" {
			t.Errorf("invalid Assign changed the result (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(before.all[o], m.a.Addresses(o), cmpAddr); diff != "" {
			t.Errorf("invalid Assign changed holdings (-want +got):\n%s", diff)
		}
		return
	}
	prevCur := m.cur[o]
	m.req[o], m.cur[o] = r, got

	// Every returned address is allowed, families in order, at most one each.
	var fams []ipam.Family
	for _, x := range got {
		fams = append(fams, ipam.FamilyOf(x))
		if !m.allows(o, x, r) {
			t.Errorf("Assign gave %s, which the request does not allow (pool %q)", x, m.a.PoolOf(x))
		}
	}
	order := slices.DeleteFunc(slices.Clone(r.Families), func(f ipam.Family) bool { return !slices.Contains(fams, f) })
	if !slices.Equal(fams, order) {
		t.Errorf("Assign families %v, want a subsequence of %v without repeats", fams, r.Families)
	}
	if err == nil && len(got) == 0 {
		t.Errorf("Assign succeeded with no address")
	}
	if err == nil && r.Policy == ipam.RequireDualStack && len(got) != 2 {
		t.Errorf("RequireDualStack succeeded with %v", got)
	}

	// Nothing is freed; what was current and is still allowed is kept.
	after := m.a.Addresses(o)
	for _, x := range before.all[o] {
		if !slices.Contains(after, x) {
			t.Errorf("Assign freed %s", x)
		}
	}
	for _, x := range prevCur {
		if m.allows(o, x, r) && !slices.ContainsFunc(got, func(y netip.Addr) bool {
			return ipam.FamilyOf(y) == ipam.FamilyOf(x) && slices.Contains(prevCur, y)
		}) {
			t.Errorf("Assign moved %s, which the request still allows, got %v", x, got)
		}
	}
	for _, x := range got {
		if !slices.Contains(before.all[o], x) && err != nil {
			t.Errorf("failed Assign took %s", x)
		}
	}
	m.checkNoneTakenFromLeaving(o, before)

	// Assign is idempotent.
	if again, err2 := m.a.Assign(o, r); !errors.Is(err2, sentinelOf(err)) || !slices.Equal(again, got) {
		t.Errorf("repeated Assign = %v, %v; first gave %v, %v", again, err2, got, err)
	}
}

// sentinelOf returns the sentinel err wraps, or err.
func sentinelOf(err error) error {
	for _, s := range []error{ipam.ErrPoolExhausted, ipam.ErrNoMatchingPool, ipam.ErrAddressInUse, ipam.ErrAddressNotInPool, ipam.ErrFamilyUnavailable} {
		if errors.Is(err, s) {
			return s
		}
	}
	return err
}

// checkNoneTakenFromLeaving: a newly held address was not leaving for
// anybody else.
func (m *model) checkNoneTakenFromLeaving(o ipam.Owner, before snapshot) {
	for _, x := range m.a.Addresses(o) {
		if slices.Contains(before.all[o], x) {
			continue
		}
		if others := before.leaving[x]; len(others) > 0 {
			m.t.Errorf("%s got %s while %v were releasing it", o, x, others)
		}
	}
}

func (m *model) checkInvariants(i int) {
	t := m.t
	holders := make(map[netip.Addr][]ipam.Owner)
	inUse := make(map[string]uint64)
	seen := make(map[netip.Addr]bool)
	for _, o := range propOwners {
		all := m.a.Addresses(o)
		if cur := m.cur[o]; len(all) < len(cur) || !slices.Equal(all[:len(cur)], cur) {
			t.Errorf("op %d: Addresses(%s) = %v, want the current %v first", i, o, all, cur)
		}
		for _, x := range m.cur[o] {
			holders[x] = append(holders[x], o)
		}
		for _, x := range all {
			if !seen[x] {
				seen[x] = true
				if p := m.a.PoolOf(x); p != "" {
					inUse[p+"/"+ipam.FamilyOf(x).String()]++
				}
			}
		}
	}
	for x, hs := range holders {
		for j, a := range hs {
			for _, b := range hs[j+1:] {
				if !mayShare(m.req[a], m.req[b]) {
					t.Errorf("op %d: %s is held by %s and %s, which may not share it", i, x, a, b)
				}
			}
		}
	}
	for _, s := range m.a.Stats() {
		if k := s.Pool + "/" + s.Family.String(); s.InUse != inUse[k] {
			t.Errorf("op %d: Stats %s InUse = %d, recount %d", i, k, s.InUse, inUse[k])
		}
	}
}

// allows is the model's own reading of the rules for keeping x.
func (m *model) allows(o ipam.Owner, x netip.Addr, r ipam.Request) bool {
	p, ok := m.poolOf(x)
	if !ok || !slices.Contains(r.Families, ipam.FamilyOf(x)) {
		return false
	}
	if p.AvoidBuggyIPs && x.Is4() && (x.As4()[3] == 0 || x.As4()[3] == 255) {
		return false
	}
	if r.Pool != "" && r.Pool != p.Name {
		return false
	}
	if al := p.Allocation; al != nil {
		if len(al.Namespaces) > 0 && !slices.Contains(al.Namespaces, r.Namespace) ||
			!al.NamespaceSelector.Matches(labels.Set(r.NamespaceLabels)) ||
			!al.ServiceSelector.Matches(labels.Set(r.ServiceLabels)) {
			return false
		}
	}
	if len(r.Addresses) > 0 && !slices.Contains(r.Addresses, x) {
		return false
	}
	for _, h := range propOwners {
		if h != o && slices.Contains(m.cur[h], x) && !mayShare(r, m.req[h]) {
			return false
		}
	}
	return true
}

func (m *model) poolOf(x netip.Addr) (config.Pool, bool) {
	for _, p := range m.pools {
		for _, r := range p.Ranges {
			if r.From.Compare(x) <= 0 && x.Compare(r.To) <= 0 {
				return p, true
			}
		}
	}
	return config.Pool{}, false
}

// mayShare is the model's own reading of the sharing rule.
func mayShare(a, b ipam.Request) bool {
	if a.SharingKey == "" || a.SharingKey != b.SharingKey {
		return false
	}
	for _, p := range a.Ports {
		if slices.Contains(b.Ports, p) {
			return false
		}
	}
	return !(a.Local || b.Local) || a.BackendKey == b.BackendKey
}

// randomPools returns a valid configuration: up to three pools on fixed,
// disjoint address blocks, with random names, sizes and rules.
func (m *model) randomPools() []config.Pool {
	rnd := m.rnd
	var out []config.Pool
	maybe := func(p config.Pool) {
		if rnd.IntN(5) == 0 {
			return
		}
		p.AutoAssign = rnd.IntN(4) != 0
		p.AvoidBuggyIPs = rnd.IntN(2) == 0
		switch rnd.IntN(5) {
		case 0:
			allocation(namespaces("ns1"), priority(rnd.IntN(3)))(&p)
		case 1:
			allocation(nsSelector("team=a"), priority(rnd.IntN(3)))(&p)
		case 2:
			allocation(svcSelector("app=web"), priority(rnd.IntN(3)))(&p)
		}
		out = append(out, p)
	}
	v4a := []string{"10.0.0.250-10.0.1.5", "10.0.0.254-10.0.1.1", "10.0.1.0-10.0.1.5"}[rnd.IntN(3)]
	if rnd.IntN(2) == 0 {
		maybe(pool("a", v4a+", 2001:db8::-2001:db8::5"))
	} else {
		maybe(pool("a", v4a))
	}
	maybe(pool([]string{"b", "b2"}[rnd.IntN(2)], "10.0.2.0-10.0.2.3, 2001:db8:1::-2001:db8:1::3"))
	maybe(pool("c", []string{"2001:db8:2::-2001:db8:2::3", "2001:db8:2::2-2001:db8:2::3"}[rnd.IntN(2)]))
	return out
}

func (m *model) randomRequest(o ipam.Owner) ipam.Request {
	rnd := m.rnd
	ns, _, _ := strings.Cut(string(o), "/")
	r := ipam.Request{
		Namespace:       ns,
		NamespaceLabels: map[string]string{"team": []string{"a", "b"}[rnd.IntN(2)]},
		ServiceLabels:   map[string]string{"app": []string{"web", "db"}[rnd.IntN(2)]},
	}
	fams := []ipam.Family{ipam.IPv4, ipam.IPv6}
	if rnd.IntN(2) == 0 {
		fams = []ipam.Family{ipam.IPv6, ipam.IPv4}
	}
	switch rnd.IntN(4) {
	case 0, 1:
		r.Policy, r.Families = ipam.SingleStack, fams[:1]
	case 2:
		r.Policy, r.Families = ipam.PreferDualStack, fams[:1+rnd.IntN(2)]
	case 3:
		r.Policy, r.Families = ipam.RequireDualStack, fams
	}
	if rnd.IntN(5) == 0 {
		for _, f := range r.Families {
			if rnd.IntN(3) != 0 || r.Policy == ipam.RequireDualStack {
				r.Addresses = append(r.Addresses, m.randomAddr(f))
			}
		}
		if rnd.IntN(10) == 0 { // sometimes invalid: a second address
			r.Addresses = append(r.Addresses, propAddrs[rnd.IntN(len(propAddrs))])
		}
	}
	if rnd.IntN(6) == 0 {
		r.Pool = []string{"a", "b", "b2", "c", "nope"}[rnd.IntN(5)]
	}
	r.SharingKey = []string{"", "", "k1", "k2"}[rnd.IntN(4)]
	for _, p := range []ipam.Port{{Protocol: "TCP", Port: 80}, {Protocol: "TCP", Port: 443}, {Protocol: "UDP", Port: 53}} {
		if rnd.IntN(3) == 0 {
			r.Ports = append(r.Ports, p)
		}
	}
	r.Local = rnd.IntN(3) == 0
	r.BackendKey = []string{"app=x", "app=y"}[rnd.IntN(2)]
	return r
}

func (m *model) randomAddr(f ipam.Family) netip.Addr {
	for {
		if x := propAddrs[m.rnd.IntN(len(propAddrs))]; ipam.FamilyOf(x) == f {
			return x
		}
	}
}
