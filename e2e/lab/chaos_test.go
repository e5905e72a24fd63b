package lab_test

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/heraldlb/herald/e2e/lab"
)

func TestMultiSpans(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	one, two := []string{"a"}, []string{"a", "b"}
	for _, tc := range []struct {
		name   string
		rounds []lab.Round
		want   []time.Duration
	}{
		{name: "none"},
		{name: "always one", rounds: []lab.Round{{at(0), one}, {at(20), one}, {at(40), nil}}},
		{name: "a single request answered by two", rounds: []lab.Round{{at(0), one}, {at(20), two}, {at(40), one}}, want: []time.Duration{0}},
		{name: "first to last of a run", rounds: []lab.Round{{at(0), two}, {at(20), two}, {at(40), []string{"a", "b", "c"}}, {at(60), one}},
			want: []time.Duration{40 * time.Millisecond}},
		{name: "a run at the end", rounds: []lab.Round{{at(0), one}, {at(20), two}, {at(45), two}}, want: []time.Duration{25 * time.Millisecond}},
		{name: "unanswered requests end a run", rounds: []lab.Round{{at(0), two}, {at(20), two}, {at(40), nil}, {at(60), two}},
			want: []time.Duration{20 * time.Millisecond, 0}},
		{name: "longest first", rounds: []lab.Round{{at(0), two}, {at(20), one}, {at(40), two}, {at(60), two}, {at(80), two}, {at(100), one}, {at(120), two}, {at(140), two}},
			want: []time.Duration{40 * time.Millisecond, 20 * time.Millisecond, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, lab.MultiSpans(tc.rounds)); diff != "" {
				t.Errorf("MultiSpans (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDirectionString(t *testing.T) {
	for d, want := range map[lab.Direction]string{lab.Both: "both", lab.Out: "out", lab.In: "in", lab.Direction(7): "Direction(7)"} {
		if got := d.String(); got != want {
			t.Errorf("Direction(%d).String() = %q, want %q", int(d), got, want)
		}
	}
}

// reaches reports whether one ping from namespace ns to addr is answered.
func reaches(ctx context.Context, l *lab.Lab, ns string, addr netip.Addr) bool {
	_, err := l.Exec(ctx, ns, "ping", "-c", "1", "-W", "1", addr.String())
	return err == nil
}

func TestChaosPartition(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	n1, n2, n3 := l.Nodes[0], l.Nodes[1], l.Nodes[2]
	t.Cleanup(func() { _ = l.Heal(context.Background(), n1.Name) })
	for _, tc := range []struct {
		dir           lab.Direction
		hooks, absent []string
	}{
		{lab.Both, []string{"hook input", "hook output"}, nil},
		{lab.Out, []string{"hook output"}, []string{"hook input"}},
		{lab.In, []string{"hook input"}, []string{"hook output"}},
	} {
		t.Run(tc.dir.String(), func(t *testing.T) {
			if err := l.Partition(ctx, n1.Name, []string{n2.Name}, tc.dir); err != nil {
				t.Fatal(err)
			}
			rules, err := l.Exec(ctx, n1.NS, "nft", "list", "table", "inet", "herald_chaos")
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range tc.hooks {
				if !strings.Contains(rules, h) {
					t.Errorf("partition %v: no %q in\n%s", tc.dir, h, rules)
				}
			}
			for _, h := range tc.absent {
				if strings.Contains(rules, h) {
					t.Errorf("partition %v: %q in\n%s", tc.dir, h, rules)
				}
			}
			// A ping needs both directions: every partition stops it.
			for _, a := range []netip.Addr{n2.IPv4, n2.IPv6} {
				if reaches(ctx, l, n1.NS, a) {
					t.Errorf("partition %v: %s reaches %s", tc.dir, n1.Name, a)
				}
			}
			for _, a := range []netip.Addr{n1.IPv4, n1.IPv6} {
				if reaches(ctx, l, n2.NS, a) {
					t.Errorf("partition %v: %s reaches %s", tc.dir, n2.Name, a)
				}
			}
			// Nobody else is cut off.
			for _, p := range []struct {
				ns string
				to netip.Addr
			}{{n1.NS, n3.IPv4}, {n1.NS, n3.IPv6}, {n1.NS, lab.Client4}, {n1.NS, lab.Client6}, {n1.NS, lab.Router4}, {n1.NS, lab.APIServer6}, {l.ClientNS(), n1.IPv4}, {l.ClientNS(), n1.IPv6}} {
				if !reaches(ctx, l, p.ns, p.to) {
					t.Errorf("partition %v: %s does not reach %s", tc.dir, p.ns, p.to)
				}
			}
		})
	}
	if err := l.Heal(ctx, n1.Name); err != nil {
		t.Fatal(err)
	}
	if err := l.Heal(ctx, n1.Name); err != nil {
		t.Errorf("heal without a partition: %v", err)
	}
	for _, a := range []netip.Addr{n2.IPv4, n2.IPv6} {
		if !reaches(ctx, l, n1.NS, a) {
			t.Errorf("healed: %s does not reach %s", n1.Name, a)
		}
	}
}

func TestChaosKubeProxy(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	n := l.Nodes[2]
	t.Cleanup(func() { _ = l.StartKubeProxy(context.Background(), n.Name) })
	healthy := func() bool {
		c := &http.Client{Transport: &http.Transport{DialContext: lab.DialContext(n.NS)}, Timeout: time.Second}
		resp, err := c.Get("http://127.0.0.1:10256/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	if err := l.StopKubeProxy(ctx, n.Name); err != nil {
		t.Fatal(err)
	}
	if healthy() {
		t.Error("kube-proxy's /healthz answers after StopKubeProxy")
	}
	if out, err := l.Exec(ctx, n.NS, "iptables-save", "-t", "nat"); err != nil || !strings.Contains(out, "KUBE-SERVICES") {
		t.Errorf("kube-proxy's rules are gone after it died (err %v)", err)
	}
	if err := l.StopKubeProxy(ctx, n.Name); err == nil {
		t.Error("StopKubeProxy of a stopped kube-proxy: no error")
	}
	start := time.Now()
	if err := l.StartKubeProxy(ctx, n.Name); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-proxy healthy %v after its start", time.Since(start).Round(time.Millisecond))
	if !healthy() {
		t.Error("kube-proxy's /healthz does not answer after StartKubeProxy")
	}
}

func TestChaosForeignHost(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	f, err := l.AddForeignHost(ctx, "foreign1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.RemoveForeignHost(context.Background(), f) })
	if !strings.HasPrefix(f.NS, l.Prefix+"-") {
		t.Errorf("foreign host namespace %q is not under the lab's prefix %q (Down would leave it)", f.NS, l.Prefix)
	}
	for _, addr := range []netip.Addr{netip.MustParseAddr("198.51.100.240"), netip.MustParseAddr("2001:db8:1::240")} {
		t.Run(addr.String(), func(t *testing.T) {
			// A stale entry for addr: the announcement must move it to f.MAC.
			stale := "02:00:00:00:00:01"
			if _, err := l.Exec(ctx, l.ClientNS(), "ip", "neigh", "replace", addr.String(), "lladdr", stale, "dev", "eth0", "nud", "stale"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_, _ = l.Exec(context.Background(), l.ClientNS(), "ip", "neigh", "del", addr.String(), "dev", "eth0")
			})
			w, err := l.WatchAnswers(ctx, addr, 20*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			time.Sleep(200 * time.Millisecond)
			if got := w.Answerers(time.Time{}, time.Time{}); len(got) > 0 {
				t.Errorf("before the claim %s is answered by %v", addr, got)
			}
			if err := l.ForeignClaim(ctx, f, addr); err != nil {
				t.Fatal(err)
			}
			claimed := time.Now()
			neigh, err := l.Neighbours(ctx, l.ClientNS())
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(neigh, func(n lab.Neighbour) bool { return n.IP == addr })
			if i < 0 || strings.ToLower(neigh[i].MAC) != f.MAC {
				t.Errorf("after the announcement the client has no entry for %s with %s: %+v", addr, f.MAC, neigh)
			}
			time.Sleep(300 * time.Millisecond)
			if got := w.Last(); !slices.Equal(got, []string{f.MAC}) {
				t.Errorf("after the claim the last request for %s was answered by %v, want %s", addr, got, f.MAC)
			}
			if got := w.Answerers(claimed.Add(40*time.Millisecond), time.Time{}); got[f.MAC] < 10 || len(got) != 1 {
				t.Errorf("answers in the 260 ms after the claim: %v, want ~13 from %s alone", got, f.MAC)
			}
			if spans := w.MultiSpans(); len(spans) > 0 {
				t.Errorf("spans with two answerers: %v", spans)
			}
			if err := l.ForeignRelease(ctx, f, addr); err != nil {
				t.Fatal(err)
			}
			if err := l.ForeignRelease(ctx, f, addr); err != nil {
				t.Errorf("release twice: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
			if got := w.Last(); len(got) > 0 {
				t.Errorf("after the release %s is answered by %v", addr, got)
			}
			w.Stop()
			if err := w.Err(); err != nil {
				t.Error(err)
			}
			rounds := w.Rounds(time.Time{}, time.Time{})
			t.Logf("%d requests in %v", len(rounds), rounds[len(rounds)-1].At.Sub(rounds[0].At).Round(time.Millisecond))
		})
	}
}
