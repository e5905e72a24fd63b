package ipam_test

import (
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/ipam"
	"k8s.io/apimachinery/pkg/labels"
)

// pool builds an autoAssign pool from comma-separated ranges ("a-b", a
// CIDR or one address), given in ascending order.
func pool(name, addrs string, opts ...func(*config.Pool)) config.Pool {
	p := config.Pool{Name: name, AutoAssign: true}
	for _, s := range strings.Split(addrs, ",") {
		s = strings.TrimSpace(s)
		var r config.Range
		switch {
		case strings.Contains(s, "-"):
			from, to, _ := strings.Cut(s, "-")
			r = config.Range{From: netip.MustParseAddr(from), To: netip.MustParseAddr(to)}
		case strings.Contains(s, "/"):
			pfx := netip.MustParsePrefix(s).Masked()
			r = config.Range{From: pfx.Addr(), To: lastOf(pfx)}
		default:
			a := netip.MustParseAddr(s)
			r = config.Range{From: a, To: a}
		}
		p.Ranges = append(p.Ranges, r)
	}
	for _, o := range opts {
		o(&p)
	}
	return p
}

func lastOf(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := range b {
		if bits := p.Bits() - 8*i; bits < 8 {
			if bits < 0 {
				bits = 0
			}
			b[i] |= 0xff >> bits
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func manual(p *config.Pool)     { p.AutoAssign = false }
func avoidBuggy(p *config.Pool) { p.AvoidBuggyIPs = true }

// allocation restricts a pool; with no options it matches everyone.
func allocation(opts ...func(*config.Allocation)) func(*config.Pool) {
	return func(p *config.Pool) {
		al := &config.Allocation{NamespaceSelector: labels.Everything(), ServiceSelector: labels.Everything()}
		for _, o := range opts {
			o(al)
		}
		p.Allocation = al
	}
}

func namespaces(ns ...string) func(*config.Allocation) {
	return func(al *config.Allocation) { al.Namespaces = ns }
}

func nsSelector(sel string) func(*config.Allocation) {
	return func(al *config.Allocation) { al.NamespaceSelector = mustSelector(sel) }
}

func svcSelector(sel string) func(*config.Allocation) {
	return func(al *config.Allocation) { al.ServiceSelector = mustSelector(sel) }
}

func priority(n int) func(*config.Allocation) {
	return func(al *config.Allocation) { al.Priority = n }
}

func mustSelector(s string) labels.Selector {
	sel, err := labels.Parse(s)
	if err != nil {
		panic(err)
	}
	return sel
}

// req builds a request: by default SingleStack IPv4 from namespace "default".
func req(opts ...func(*ipam.Request)) ipam.Request {
	r := ipam.Request{Namespace: "default", Policy: ipam.SingleStack, Families: []ipam.Family{ipam.IPv4}}
	for _, o := range opts {
		o(&r)
	}
	return r
}

func v6(r *ipam.Request) { r.Families = []ipam.Family{ipam.IPv6} }

func families(p ipam.FamilyPolicy, fs ...ipam.Family) func(*ipam.Request) {
	return func(r *ipam.Request) { r.Policy, r.Families = p, fs }
}

func preferDual(r *ipam.Request) { families(ipam.PreferDualStack, ipam.IPv4, ipam.IPv6)(r) }

func requireDual(r *ipam.Request) { families(ipam.RequireDualStack, ipam.IPv4, ipam.IPv6)(r) }

func inNamespace(ns string, kv ...string) func(*ipam.Request) {
	return func(r *ipam.Request) { r.Namespace, r.NamespaceLabels = ns, labelMap(kv) }
}

func svcLabels(kv ...string) func(*ipam.Request) {
	return func(r *ipam.Request) { r.ServiceLabels = labelMap(kv) }
}

func labelMap(kv []string) map[string]string {
	m := make(map[string]string)
	for _, s := range kv {
		k, v, _ := strings.Cut(s, "=")
		m[k] = v
	}
	return m
}

func ips(as ...string) func(*ipam.Request) {
	return func(r *ipam.Request) { r.Addresses = addrs(as...) }
}

func fromPool(name string) func(*ipam.Request) {
	return func(r *ipam.Request) { r.Pool = name }
}

// share sets a sharing key and ports such as "TCP/80".
func share(key string, ports ...string) func(*ipam.Request) {
	return func(r *ipam.Request) {
		r.SharingKey = key
		r.Ports = nil
		for _, p := range ports {
			proto, n, _ := strings.Cut(p, "/")
			port, err := strconv.ParseUint(n, 10, 16)
			if err != nil {
				panic(err)
			}
			r.Ports = append(r.Ports, ipam.Port{Protocol: proto, Port: uint16(port)})
		}
	}
}

// local sets externalTrafficPolicy Local with the given backends.
func local(backend string) func(*ipam.Request) {
	return func(r *ipam.Request) { r.Local, r.BackendKey = true, backend }
}

func backend(key string) func(*ipam.Request) {
	return func(r *ipam.Request) { r.BackendKey = key }
}

func addrs(as ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range as {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

// checkErr checks err against a sentinel (nil for none) and that its
// message names everything in msg.
func checkErr(t *testing.T, err, want error, msg ...string) {
	t.Helper()
	if !errors.Is(err, want) || (want == nil) != (err == nil) {
		t.Fatalf("error = %v, want %v", err, want)
	}
	for _, m := range msg {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
}

// step is one operation on an allocator and what it must give.
type step struct {
	name string
	run  func(t *testing.T, a *ipam.Allocator)
}

func assign(o ipam.Owner, r ipam.Request, want ...string) step {
	return assignErr(o, r, nil, want...)
}

// assignErr expects Assign to return want with an error wrapping wantErr
// whose message mentions each of msg (given after a "" separator in want).
func assignErr(o ipam.Owner, r ipam.Request, wantErr error, want ...string) step {
	i := slices.Index(want, "")
	var msg []string
	if i >= 0 {
		want, msg = want[:i], want[i+1:]
	}
	return step{"Assign " + string(o), func(t *testing.T, a *ipam.Allocator) {
		t.Helper()
		got, err := a.Assign(o, r)
		checkErr(t, err, wantErr, msg...)
		if diff := cmp.Diff(addrs(want...), got, cmpAddr); diff != "" {
			t.Fatalf("Assign(%s) (-want +got):\n%s", o, diff)
		}
	}}
}

func settle(o ipam.Owner, want ...string) step {
	return step{"Settle " + string(o), func(t *testing.T, a *ipam.Allocator) {
		t.Helper()
		if diff := cmp.Diff(addrs(want...), a.Settle(o), cmpAddr); diff != "" {
			t.Fatalf("Settle(%s) (-want +got):\n%s", o, diff)
		}
	}}
}

func release(o ipam.Owner, want ...string) step {
	return step{"Release " + string(o), func(t *testing.T, a *ipam.Allocator) {
		t.Helper()
		if diff := cmp.Diff(addrs(want...), a.Release(o), cmpAddr); diff != "" {
			t.Fatalf("Release(%s) (-want +got):\n%s", o, diff)
		}
	}}
}

func restore(o ipam.Owner, as []string, r ipam.Request, wantErr error, msg ...string) step {
	return step{"Restore " + string(o), func(t *testing.T, a *ipam.Allocator) {
		t.Helper()
		checkErr(t, a.Restore(o, addrs(as...), r), wantErr, msg...)
	}}
}

// held checks everything o holds: current addresses, then leaving ones.
func held(o ipam.Owner, want ...string) step {
	return step{"Addresses " + string(o), func(t *testing.T, a *ipam.Allocator) {
		t.Helper()
		if diff := cmp.Diff(addrs(want...), a.Addresses(o), cmpAddr); diff != "" {
			t.Fatalf("Addresses(%s) (-want +got):\n%s", o, diff)
		}
	}}
}

func setPools(want map[ipam.Owner][]string, pools ...config.Pool) step {
	return step{"SetPools", func(t *testing.T, a *ipam.Allocator) {
		t.Helper()
		wantMoved := make(map[ipam.Owner][]netip.Addr)
		for o, as := range want {
			wantMoved[o] = addrs(as...)
		}
		if diff := cmp.Diff(wantMoved, a.SetPools(pools), cmpAddr); diff != "" {
			t.Fatalf("SetPools (-want +got):\n%s", diff)
		}
	}}
}

// inUse checks the InUse figures of Stats, as "pool/family=n".
func inUse(want ...string) step {
	return step{"Stats", func(t *testing.T, a *ipam.Allocator) {
		t.Helper()
		var got []string
		for _, s := range a.Stats() {
			got = append(got, s.Pool+"/"+s.Family.String()+"="+strconv.FormatUint(s.InUse, 10))
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("Stats InUse (-want +got):\n%s", diff)
		}
	}}
}

// cmpAddr compares addresses by value and treats nil and empty alike.
var cmpAddr = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmpopts.EquateEmpty(),
}

// scenario is a table row: steps run in order against a fresh allocator.
type scenario struct {
	name  string
	pools []config.Pool
	steps []step
}

func runScenarios(t *testing.T, tests []scenario) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := ipam.New(tt.pools)
			for i, s := range tt.steps {
				t.Logf("step %d: %s", i, s.name)
				s.run(t, a)
			}
		})
	}
}

func pools(ps ...config.Pool) []config.Pool { return ps }
