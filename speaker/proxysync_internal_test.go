package speaker

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
)

func TestProgramGate(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	now := t0
	synced := map[string]time.Time{"IPv4": t0.Add(-time.Minute), "IPv6": t0.Add(-time.Minute)}
	g := programGate{
		read:  func() (map[string]time.Time, time.Time) { return synced, now },
		where: "test", now: func() time.Time { return now },
	}
	a4, a6, b4 := netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("2001:db8:1::10"), netip.MustParseAddr("198.51.100.11")
	addrs := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	svc := func(key string, addrs ...netip.Addr) ServiceInfo { return ServiceInfo{Key: key, Addrs: addrs} }
	step := func(name string, in []ServiceInfo, want []ServiceInfo, wantWait bool) {
		t.Helper()
		got, held, wait := g.filter(in, zap.NewNop())
		if diff := cmp.Diff(want, got, addrs); diff != "" {
			t.Errorf("%s: announced (-want +got):\n%s", name, diff)
		}
		if n, total := count(got)+count(held), count(in); n != total {
			t.Errorf("%s: %d addresses passed or held, %d came in", name, n, total)
		}
		if (wait > 0) != wantWait {
			t.Errorf("%s: look again in %v, want waiting %v", name, wait, wantWait)
		}
	}
	// What the first decision sees was programmed before this speaker came.
	step("first decision", []ServiceInfo{svc("a", a4)}, []ServiceInfo{svc("a", a4)}, false)

	now = now.Add(time.Second)
	both := []ServiceInfo{svc("a", a4), svc("b", b4, a6)}
	step("new addresses wait", both, []ServiceInfo{svc("a", a4)}, true)

	now = now.Add(300 * time.Millisecond)
	synced = map[string]time.Time{"IPv4": now.Add(-time.Millisecond), "IPv6": now.Add(-2 * time.Millisecond)}
	step("a sync ended since: it may have begun before", both, []ServiceInfo{svc("a", a4)}, true)

	now = now.Add(proxySyncQuiet - 100*time.Millisecond)
	step("no other sync yet", both, []ServiceInfo{svc("a", a4)}, true)

	now = now.Add(100 * time.Millisecond)
	step("no other sync within kube-proxy's period: the first had them, both families together", both, both, false)

	now = now.Add(time.Second)
	three := append(slices.Clone(both), svc("c", netip.MustParseAddr("198.51.100.12")))
	step("another new one", three, both, true)
	now = now.Add(100 * time.Millisecond)
	synced = map[string]time.Time{"IPv4": now, "IPv6": now}
	step("a first sync", three, both, true)
	now = now.Add(500 * time.Millisecond)
	synced = map[string]time.Time{"IPv4": now, "IPv6": now}
	// kube-proxy may learn of an address later than this speaker: a sync
	// that began after the first ended need not have it (in the lab under
	// load, node3 announced after 1.09 s and looped clients' SYNs).
	step("a second sync soon after: kube-proxy may not have learnt of it yet", three, both, true)
	now = now.Add(proxySyncQuiet)
	step("quiet for kube-proxy's period after the last sync", three, three, false)

	now = now.Add(time.Second)
	four := append(slices.Clone(three), svc("d", netip.MustParseAddr("198.51.100.13")))
	step("one more", four, three, true)
	now = now.Add(proxySyncQuiet + time.Millisecond)
	synced = map[string]time.Time{"IPv4": now, "IPv6": t0} // IPv6's proxier stuck
	step("a proxier that does not sync is quiet: its period has passed", four, four, false)

	now = now.Add(time.Second)
	synced = map[string]time.Time{"IPv4": now, "IPv6": now}
	late := append(slices.Clone(four), svc("g", netip.MustParseAddr("198.51.100.16")))
	step("one more again", late, four, true)
	read := g.read
	answered := now.Add(-time.Millisecond)
	g.read = func() (map[string]time.Time, time.Time) { return synced, answered }
	now = now.Add(proxySyncQuiet + time.Millisecond)
	step("kube-proxy silent since before it came: no news is not quiet", late, four, true)
	g.read = func() (map[string]time.Time, time.Time) { return nil, time.Time{} }
	step("kube-proxy never answered", late, four, true)
	now = now.Add(proxySyncWait)
	step("announced after the longest wait", late, late, false)
	g.read = read
	four = late

	now = now.Add(time.Second)
	five := append(slices.Clone(four), svc("e", netip.MustParseAddr("198.51.100.14")))
	step("and one more", five, four, true)
	now = now.Add(proxySyncQuiet + 2*time.Millisecond)
	synced = map[string]time.Time{"IPv4": now.Add(-time.Millisecond), "IPv6": now.Add(-time.Millisecond)}
	step("a sync completed a full period after it came", five, five, false)

	now = now.Add(time.Second)
	six := append(slices.Clone(five), svc("f", netip.MustParseAddr("198.51.100.15")))
	step("kube-proxy synced it before this speaker saw it", six, five, true)
	now = now.Add(proxySyncQuiet - time.Millisecond)
	step("quiet kube-proxy, not yet its period", six, five, true)
	now = now.Add(time.Millisecond)
	step("quiet kube-proxy for its period", six, six, false)

	now = now.Add(time.Second)
	step("gone", []ServiceInfo{svc("a", a4)}, []ServiceInfo{svc("a", a4)}, false)
	now = now.Add(time.Second)
	step("back: new again", both, []ServiceInfo{svc("a", a4)}, true)

	var none programGate
	if got, held, wait := none.filter(both, zap.NewNop()); !cmp.Equal(got, both, addrs) || held != nil || wait != 0 {
		t.Errorf("without kube-proxy: %v %v, want everything at once", got, wait)
	}
}

func TestProxySyncReadsKubeProxy(t *testing.T) {
	// The shape of kube-proxy's /healthz (v1.37), healthy and not.
	for _, code := range []int{http.StatusOK, http.StatusServiceUnavailable} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(code)
			_, _ = w.Write([]byte(`{"lastUpdated":"2026-12-01T22:31:06.5Z","currentTime":"2026-12-01T22:31:06.5Z","nodeEligible":true,` +
				`"healthy":true,"status":{"IPv4":{"lastUpdated":"2026-12-01T22:30:59.25Z","healthy":true},"IPv6":{"lastUpdated":"2026-12-01T22:30:58Z","healthy":true}}}`))
		}))
		p := NewProxySync(srv.URL)
		err := p.poll(t.Context())
		srv.Close()
		if unhealthy := (&proxyUnhealthy{}); (code == http.StatusOK) != (err == nil) || (err != nil && !errors.As(err, &unhealthy)) {
			t.Fatalf("status %d: poll says %v", code, err)
		}
		got, at := p.lastSynced()
		if at.IsZero() {
			t.Errorf("status %d: no time of the answer", code)
		}
		want := map[string]time.Time{"IPv4": time.Date(2026, 12, 1, 22, 30, 59, 250e6, time.UTC), "IPv6": time.Date(2026, 12, 1, 22, 30, 58, 0, time.UTC)}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("status %d (-want +got):\n%s", code, diff)
		}
	}
	if NewProxySync("") != nil {
		t.Error(`NewProxySync("") is not nil`)
	}
}

func count(svcs []ServiceInfo) int {
	n := 0
	for _, s := range svcs {
		n += len(s.Addrs)
	}
	return n
}
