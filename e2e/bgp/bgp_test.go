package bgp_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/heraldlb/herald/e2e/lab"
	"github.com/heraldlb/herald/speaker"
)

const eBGPASN = 64501

func TestIBGPFromAllNodes(t *testing.T) {
	l := needLab(t)
	use(t, l, scenario{Peering: lab.Peering{NodeASN: lab.RouterASN}, LocalPref: 150, Communities: true}, true)
	vip, vip6 := "198.19.0.1", "2001:db8:100::1"
	app(t, l, "ibgp", "web", vip+","+vip6, false, map[string]string{"a": "node1", "b": "node2"})

	// Cluster policy: every node advertises, the router spreads over all.
	l.ExpectRoute(t, vip, l.NodeAddrs(false), 30*time.Second)
	// The IPv6 address rides the IPv4 sessions with the nodes' IPv6 next hops.
	l.ExpectRoute(t, vip6, l.NodeAddrs(true), 10*time.Second)

	for _, p := range []netip.Prefix{lab.HostPrefix(vip), lab.HostPrefix(vip6)} {
		paths, err := l.BGPPaths(t.Context(), p)
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range paths {
			got := fmt.Sprintf("internal=%v multipath=%v localPref=%d communities=%v large=%v",
				path.Internal, path.Multi, path.LocalPref, path.Communities, path.LargeCommunities)
			want := "internal=true multipath=true localPref=150 communities=[64500:100 noExport] large=[64500:1:2]"
			if got != want {
				t.Errorf("%s from %s: %s, want %s", p, path.Peer, got, want)
			}
		}
	}
	body := getFromExternal(t, l, vip, 20*time.Second)
	if !strings.HasPrefix(body, "pod=ibgp/") {
		t.Errorf("GET %s = %q", vip, body)
	}
	getFromExternal(t, l, vip6, 10*time.Second)

	// Each node tells on the Service that it advertises it, once.
	want := map[string]int{}
	for _, n := range l.Nodes {
		want["advertised from node "+n.Name] = 1
	}
	var got map[string]int
	deadline := time.Now().Add(10 * time.Second)
	for {
		events, err := l.Kube().CoreV1().Events("ibgp").List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=web"})
		if err != nil {
			t.Fatal(err)
		}
		got = map[string]int{}
		for _, e := range events.Items {
			if e.Reason == speaker.ReasonBGPAdvertised {
				for _, n := range l.Nodes {
					if strings.Contains(e.Message, "node "+n.Name+" ") {
						got["advertised from node "+n.Name] += int(max(e.Count, 1))
					}
				}
			}
		}
		if cmp.Equal(want, got) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s Events on ibgp/web (-want +got):\n%s", speaker.ReasonBGPAdvertised, diff)
	}
}

func TestEBGPFromAllNodes(t *testing.T) {
	l := needLab(t)
	use(t, l, scenario{Peering: lab.Peering{NodeASN: eBGPASN}, Communities: true}, true)
	vip, vip6 := "198.19.0.2", "2001:db8:100::2"
	app(t, l, "ebgp", "web", vip+","+vip6, false, map[string]string{"a": "node3"})
	l.ExpectRoute(t, vip, l.NodeAddrs(false), 30*time.Second)
	l.ExpectRoute(t, vip6, l.NodeAddrs(true), 10*time.Second)
	paths, err := l.BGPPaths(t.Context(), lab.HostPrefix(vip))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range paths {
		got := fmt.Sprintf("internal=%v multipath=%v aspath=%s communities=%v large=%v",
			path.Internal, path.Multi, path.ASPath, path.Communities, path.LargeCommunities)
		want := fmt.Sprintf("internal=false multipath=true aspath=%d communities=[64500:100 noExport] large=[64500:1:2]", eBGPASN)
		if got != want {
			t.Errorf("%s from %s: %s, want %s", vip, path.Peer, got, want)
		}
	}
	getFromExternal(t, l, vip, 20*time.Second)
	getFromExternal(t, l, vip6, 10*time.Second)
}

func TestPasswordPeer(t *testing.T) {
	l := needLab(t)
	t.Run("right", func(t *testing.T) {
		use(t, l, scenario{Peering: lab.Peering{NodeASN: lab.RouterASN, Password: "s3cret-A"}, SpeakerPassword: "s3cret-A"}, true)
		vip := "198.19.0.3"
		app(t, l, "password", "web", vip, false, map[string]string{"a": "node1"})
		l.ExpectRoute(t, vip, l.NodeAddrs(false), 30*time.Second)
	})
	t.Run("wrong", func(t *testing.T) {
		use(t, l, scenario{Peering: lab.Peering{NodeASN: lab.RouterASN, Password: "s3cret-A"}, SpeakerPassword: "wrong"}, false)
		// TCP-MD5 drops every segment of a mismatched key: no session ever
		// comes up, and each speaker says its session is down.
		ctx := t.Context()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			nbrs, err := l.BGPNeighbors(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for a, n := range nbrs {
				if n.Established() {
					t.Fatalf("the session with %s came up with a wrong password", a)
				}
			}
			time.Sleep(500 * time.Millisecond)
		}
		for _, n := range l.Nodes {
			m, err := speakerMetrics(ctx, l, n.Name)
			if err != nil {
				t.Fatal(err)
			}
			if v, ok := lab.Metric(m, "herald_bgp_session_up", "peer", "tor"); !ok || v != 0 {
				t.Errorf("speaker on %s: herald_bgp_session_up{peer=\"tor\"} = %v (present %v), want 0", n.Name, v, ok)
			}
		}
	})
}

func TestMultihopPeer(t *testing.T) {
	l := needLab(t)
	// The nodes dial the router's external address, two hops away through
	// its bridge address (their default route).
	use(t, l, scenario{Peering: lab.Peering{NodeASN: eBGPASN, Multihop: true}}, true)
	vip := "198.19.0.4"
	app(t, l, "multihop", "web", vip, false, map[string]string{"a": "node2"})
	l.ExpectRoute(t, vip, l.NodeAddrs(false), 30*time.Second)
	getFromExternal(t, l, vip, 20*time.Second)
}

func TestIPv6Session(t *testing.T) {
	l := needLab(t)
	use(t, l, scenario{Peering: lab.Peering{NodeASN: eBGPASN, IPv6: true}}, true)
	vip, vip6 := "198.19.0.5", "2001:db8:100::5"
	app(t, l, "ipv6", "web", vip+","+vip6, false, map[string]string{"a": "node1", "b": "node3"})
	l.ExpectRoute(t, vip6, l.NodeAddrs(true), 30*time.Second)
	// The IPv4 address rides the IPv6 sessions with the nodes' IPv4 next hops.
	l.ExpectRoute(t, vip, l.NodeAddrs(false), 10*time.Second)
	getFromExternal(t, l, vip6, 20*time.Second)
	getFromExternal(t, l, vip, 10*time.Second)
}

func TestLocalPolicyFollowsPods(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	use(t, l, scenario{Peering: lab.Peering{NodeASN: lab.RouterASN}}, true)
	vip := "198.19.0.6"
	app(t, l, "local", "web", vip, true, map[string]string{"a": "node1", "b": "node2"})
	l.ExpectRoute(t, vip, l.NodeAddrs(false, "node1", "node2"), 30*time.Second)
	body := getFromExternal(t, l, vip, 20*time.Second)
	if !strings.Contains(body, "client="+lab.External4.String()+":") {
		t.Errorf("with Local policy the pod should see the external client's own address: %q", body)
	}
	// Move the pod on node1 to node3.
	if _, err := l.AddPod(ctx, lab.PodSpec{Namespace: "local", Name: "c", Node: "node3", Labels: map[string]string{"app": "web"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.DeletePod(context.Background(), "local", "c") })
	if err := l.DeletePod(ctx, "local", "a"); err != nil {
		t.Fatal(err)
	}
	l.ExpectRoute(t, vip, l.NodeAddrs(false, "node2", "node3"), 15*time.Second)
	getFromExternal(t, l, vip, 10*time.Second)
}

func TestManyServicesNeverResetASession(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	use(t, l, scenario{Peering: lab.Peering{NodeASN: lab.RouterASN}}, true)
	const ns, n = "many", 100
	app(t, l, ns, "seed", "198.19.0.7", false, map[string]string{"a": "node1"})
	l.ExpectRoute(t, "198.19.0.7", l.NodeAddrs(false), 30*time.Second)
	before, err := l.BGPNeighbors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pool := netip.MustParsePrefix(manyPool)
	inPool := func() (int, error) {
		table, err := l.BGPTable(ctx, "ipv4")
		full := 0
		for p, peers := range table {
			if pool.Overlaps(p) && len(peers) == len(l.Nodes) {
				full++
			}
		}
		return full, err
	}
	waitCount := func(want int, timeout time.Duration) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			got, err := inPool()
			if err == nil && got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d prefixes of %s advertised by every node after %s, want %d (err %v)", got, manyPool, timeout, want, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// All of them select the seed's pod: each has a ready endpoint.
	each := func(f func(name string) error) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for w := range 10 {
			wg.Go(func() {
				for i := w; i < n; i += 10 {
					errs <- f(fmt.Sprintf("svc-%03d", i))
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	each(func(name string) error {
		return createService(ctx, l, ns, name, "seed", map[string]string{"herald.dev/pool": "many"}, false)
	})
	t.Cleanup(func() {
		for i := range n {
			_ = l.Kube().CoreV1().Services(ns).Delete(context.Background(), fmt.Sprintf("svc-%03d", i), metav1.DeleteOptions{})
		}
	})
	waitCount(n, 2*time.Minute)
	each(func(name string) error {
		return l.Kube().CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{})
	})
	waitCount(0, time.Minute)

	after, err := l.BGPNeighbors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range l.NodeAddrs(false) {
		b, f := before[a], after[a]
		// FRR derives the epoch from the uptime: it wobbles by a second.
		// Its connection counters are what a reset would move.
		moved := f.EstablishedEpoch - b.EstablishedEpoch
		if !f.Established() || moved > 1 || moved < -1 || f.ConnectionsEstablished != b.ConnectionsEstablished || f.ConnectionsDropped != b.ConnectionsDropped {
			t.Errorf("session with %s was reset: before %s since %d (%d up, %d dropped), after %s since %d (%d up, %d dropped; last reset: %s)",
				a, b.State, b.EstablishedEpoch, b.ConnectionsEstablished, b.ConnectionsDropped,
				f.State, f.EstablishedEpoch, f.ConnectionsEstablished, f.ConnectionsDropped, f.LastResetDueTo)
		}
	}
}

func TestBFDWithdrawsACutNode(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	use(t, l, scenario{Peering: lab.Peering{NodeASN: lab.RouterASN, BFD: true}}, true)
	vip := "198.19.0.8"
	app(t, l, "bfd", "web", vip, false, map[string]string{"a": "node1", "b": "node2"})
	l.ExpectRoute(t, vip, l.NodeAddrs(false), 30*time.Second)
	n3 := l.NodeAddrs(false, "node3")[0]
	deadline := time.Now().Add(10 * time.Second)
	for {
		nbrs, err := l.BGPNeighbors(ctx)
		if err == nil && nbrs[n3].BFD == "Up" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("BFD with node3 not up at the router after 10 s: %+v (err %v)", nbrs[n3], err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := l.CutLink(ctx, "node3"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.RestoreLink(context.Background(), "node3") })
	start := time.Now()
	// 100 ms × 3 detects in 300 ms; 3 s leaves room for a loaded machine
	// (the bench measures the real figure).
	if got, err := l.WaitBGPNextHops(ctx, lab.HostPrefix(vip), l.NodeAddrs(false, "node1", "node2"), 3*time.Second); err != nil {
		t.Fatalf("node3 cut: %v (got %v)", err, got)
	}
	t.Logf("node3's next hop left the router's BGP table %v after the cut", time.Since(start).Round(time.Millisecond))
	l.ExpectRoute(t, vip, l.NodeAddrs(false, "node1", "node2"), time.Second)
	getFromExternal(t, l, vip, 5*time.Second)

	// Back on the wire, node3 peers and advertises again.
	if err := l.RestoreLink(ctx, "node3"); err != nil {
		t.Fatal(err)
	}
	l.ExpectRoute(t, vip, l.NodeAddrs(false), 60*time.Second)
}

// getLoop GETs url from the external client every 50 ms (a new connection
// each) until stop is closed, at most max times, and reports the failures.
func getLoop(ctx context.Context, l *lab.Lab, url string, stop <-chan struct{}, max int) (ok int, failures []string) {
	client := lab.HTTPClient(l.ExternalNS(), 2*time.Second)
	for range max {
		select {
		case <-stop:
			return ok, failures
		case <-ctx.Done():
			return ok, append(failures, ctx.Err().Error())
		case <-time.After(50 * time.Millisecond):
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != 200 {
				err = fmt.Errorf("status %s", resp.Status)
			}
		}
		if err != nil {
			failures = append(failures, time.Now().Format("15:04:05.000")+" "+err.Error())
			continue
		}
		ok++
	}
	return ok, failures
}

func TestGracefulRestartLosesNoGET(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	use(t, l, scenario{Peering: lab.Peering{NodeASN: lab.RouterASN}, GracefulRestart: true}, true)
	t.Cleanup(func() { restartSpeakerIfGone(t, l, "node1") })
	// Local policy with the only pod on node1: node1 alone advertises, so
	// the address is reachable only while the router keeps its route.
	vip := "198.19.0.9"
	app(t, l, "restart", "web", vip, true, map[string]string{"a": "node1"})
	n1 := l.NodeAddrs(false, "node1")
	l.ExpectRoute(t, vip, n1, 30*time.Second)
	getFromExternal(t, l, vip, 20*time.Second)
	nbrs, err := l.BGPNeighbors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if gr := nbrs[n1[0]].GracefulRestart; gr != "advertisedAndReceived" {
		t.Fatalf("graceful restart capability with node1: %q, want advertisedAndReceived", gr)
	}

	stop := make(chan struct{})
	type result struct {
		ok       int
		failures []string
	}
	done := make(chan result, 1)
	go func() {
		ok, failures := getLoop(ctx, l, "http://"+net.JoinHostPort(vip, "80")+"/", stop, 1200)
		done <- result{ok, failures}
	}()
	time.Sleep(time.Second)
	stopSpeaker(t, l, "node1", 10*time.Second)
	// The router keeps the route, stale, while node1's speaker is away.
	time.Sleep(500 * time.Millisecond)
	paths, err := l.BGPPaths(ctx, lab.HostPrefix(vip))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 1 || paths[0].NextHop != n1[0] {
		t.Errorf("after node1's speaker exited the router holds %+v, want node1's path kept (stale)", paths)
	} else if !paths[0].Stale {
		t.Logf("node1's path is kept but not marked stale: %+v", paths[0])
	}
	if _, err := startSpeaker(ctx, l, "node1"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.WaitEstablished(ctx, n1, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		paths, err := l.BGPPaths(ctx, lab.HostPrefix(vip))
		if err == nil && len(paths) == 1 && paths[0].NextHop == n1[0] && !paths[0].Stale {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restarted speaker did not refresh its route within 30 s: %+v (err %v)", paths, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	close(stop)
	r := <-done
	t.Logf("%d GETs answered, %d failed", r.ok, len(r.failures))
	if len(r.failures) > 0 {
		t.Errorf("GETs failed across a graceful restart:\n%s", strings.Join(r.failures, "\n"))
	}
	if r.ok < 20 {
		t.Errorf("only %d GETs were answered", r.ok)
	}
}

func TestSIGTERMWithoutGracefulRestartWithdraws(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	use(t, l, scenario{Peering: lab.Peering{NodeASN: lab.RouterASN}}, true)
	t.Cleanup(func() { restartSpeakerIfGone(t, l, "node1") })
	vip := "198.19.0.10"
	app(t, l, "sigterm", "web", vip, false, map[string]string{"a": "node2"})
	l.ExpectRoute(t, vip, l.NodeAddrs(false), 30*time.Second)
	l.HoldContainer(lab.SpeakerName("node1")) // until restartSpeakerIfGone
	p, ok := l.Proc(lab.SpeakerName("node1"))
	if !ok {
		t.Fatal("no speaker on node1")
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	// Read the router's table while watching the process: the route must
	// go no later than the process (a 200 ms grace covers FRR's reading a
	// withdrawal sent just before the exit).
	var withdrawn, exited time.Time
	want := l.NodeAddrs(false, "node2", "node3")
	for withdrawn.IsZero() && time.Since(sent) < 15*time.Second {
		alive := p.Alive()
		if !alive && exited.IsZero() {
			exited = time.Now()
		}
		hops, err := l.BGPNextHops(ctx, lab.HostPrefix(vip))
		if err == nil && slices.Equal(hops, want) {
			withdrawn = time.Now()
		}
	}
	switch {
	case withdrawn.IsZero():
		t.Fatalf("node1's next hop still at the router 15 s after SIGTERM")
	case !exited.IsZero() && withdrawn.Sub(exited) > 200*time.Millisecond:
		t.Errorf("node1's next hop left the router %v after its speaker exited, want before", withdrawn.Sub(exited))
	}
	t.Logf("SIGTERM -> next hop withdrawn: %v", withdrawn.Sub(sent).Round(time.Millisecond))
	for p.Alive() && time.Since(sent) < 15*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	l.ForgetProcess(p)
	paths, err := l.BGPPaths(ctx, lab.HostPrefix(vip))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range paths {
		if path.Peer == l.NodeAddrs(false, "node1")[0] {
			t.Errorf("the router still holds node1's path: %+v", path)
		}
	}
}

func TestAPIServerAwayWithdrawsNothing(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	use(t, l, scenario{Peering: lab.Peering{NodeASN: lab.RouterASN}}, true)
	vip := "198.19.0.11"
	app(t, l, "apiserver", "web", vip, false, map[string]string{"a": "node1", "b": "node3"})
	all := l.NodeAddrs(false)
	l.ExpectRoute(t, vip, all, 30*time.Second)
	before, err := l.BGPNeighbors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	api, ok := l.Proc("kube-apiserver")
	if !ok {
		t.Fatal("no kube-apiserver process")
	}
	if err := api.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	cont := sync.OnceFunc(func() { _ = api.Signal(syscall.SIGCONT) })
	t.Cleanup(cont)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		bgpHops, err := l.BGPNextHops(ctx, lab.HostPrefix(vip))
		if err != nil {
			t.Fatal(err)
		}
		rib, err := l.RIBNextHops(ctx, lab.HostPrefix(vip))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(bgpHops, all) || !slices.Equal(rib, all) {
			t.Fatalf("with the API server stopped the router's next hops became BGP %v, installed %v; want %v", bgpHops, rib, all)
		}
		time.Sleep(500 * time.Millisecond)
	}
	getFromExternal(t, l, vip, 5*time.Second)
	cont()
	after, err := l.BGPNeighbors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range all {
		if b, f := before[a], after[a]; !f.Established() || f.ConnectionsDropped != b.ConnectionsDropped {
			t.Errorf("session with %s was reset while the API server was away: %+v", a, f)
		}
	}
	// The API server answers again before the test's cleanup needs it.
	deadline = time.Now().Add(30 * time.Second)
	for {
		if _, err := l.Kube().CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the API server did not answer within 30 s of SIGCONT")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
