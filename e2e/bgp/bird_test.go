package bgp_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldlb/herald/e2e/lab"
)

// The BIRD tests give their Services addresses from 198.19.0.40 and
// 2001:db8:100::40 on (pool "bgp"), clear of the FRR tests' addresses.

// birdScenario is one test's arrangement with BIRD as the router: how BIRD
// peers with the nodes, and the matching Herald configuration.
type birdScenario struct {
	lab.BIRDPeering
	SpeakerPassword string
	GracefulRestart bool
	LocalPref       uint32
	Communities     bool
}

// yaml is the Herald configuration for s: one peer "tor" (BIRD), one
// advertisement of pool "bgp" to it.
func (s birdScenario) yaml() string {
	var b strings.Builder
	b.WriteString(poolsYAML)
	fmt.Fprintf(&b, "bgpPeers:\n- name: tor\n  address: %s\n  asn: %d\n  myASN: %d\n  holdTime: 9s\n  connectTime: 1s\n",
		s.RouterAddress(), lab.BIRDASN, s.NodeASN)
	if s.SpeakerPassword != "" {
		fmt.Fprintf(&b, "  passwordSecret: {name: %s, key: password}\n", passwordSecret)
	}
	if s.BFD {
		b.WriteString("  bfdProfile: fast\n")
	}
	if s.GracefulRestart {
		b.WriteString("  gracefulRestart: true\n")
	}
	b.WriteString("bfdProfiles:\n- {name: fast, receiveInterval: 100ms, transmitInterval: 100ms, detectMultiplier: 3}\n")
	b.WriteString("communities:\n- {name: no-export, value: \"65535:65281\"}\n")
	b.WriteString("bgpAdvertisements:\n- name: default\n  pools: [bgp, many]\n  peers: [tor]\n")
	if s.LocalPref != 0 {
		fmt.Fprintf(&b, "  localPref: %d\n", s.LocalPref)
	}
	if s.Communities {
		b.WriteString("  communities: [\"64500:100\", \"large:64500:1:2\", no-export]\n")
	}
	return b.String()
}

func needBIRD(t *testing.T) *lab.Lab {
	t.Helper()
	l := needLab(t)
	if !l.BIRD {
		t.Skip("the lab runs no BIRD (lab.Config.BIRD)")
	}
	return l
}

// useBIRD sets s up (BIRD first, so the speakers' first dial succeeds) and
// undoes it when the test ends. With wantUp it waits until BIRD's session
// with every node is Established.
func useBIRD(t *testing.T, l *lab.Lab, s birdScenario, wantUp bool) {
	t.Helper()
	ctx := t.Context()
	if err := l.PeerBIRD(ctx, s.BIRDPeering); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.UnpeerBIRD(context.Background()); err != nil {
			t.Errorf("restore BIRD: %v", err)
		}
	})
	configure(t, l, s.SpeakerPassword, s.yaml())
	if wantUp {
		if _, err := l.WaitBIRDEstablished(ctx, l.PeerAddresses(s.Peering), 30*time.Second); err != nil {
			t.Fatalf("%v (BIRD's log: %s; speaker logs: %s)", err, l.LogPath("bird"), l.LogPath(lab.SpeakerName("node1")))
		}
	}
}

// getBehindBIRD fetches the VIP from the client behind BIRD (a new
// connection each time) until it answers or timeout passes.
func getBehindBIRD(t *testing.T, l *lab.Lab, vip string, timeout time.Duration) string {
	t.Helper()
	body, err := l.HTTPGetEventually(t.Context(), l.BIRDExternalNS(), "http://"+net.JoinHostPort(vip, "80")+"/", timeout)
	if err != nil {
		t.Fatalf("GET %s from the client behind BIRD: %v", vip, err)
	}
	return body
}

// expectBIRDAttributes checks every route BIRD holds for addr against want,
// rendered as "aspath=... localPref=... communities=[...] large=[...]".
func expectBIRDAttributes(t *testing.T, l *lab.Lab, addr, want string) {
	t.Helper()
	routes, err := l.BIRDRoutes(t.Context(), lab.HostPrefix(addr))
	if err != nil {
		t.Fatal(err)
	}
	if len(routes) == 0 {
		t.Fatalf("BIRD holds no route for %s", addr)
	}
	for _, r := range routes {
		got := fmt.Sprintf("aspath=%s localPref=%d communities=%v large=%v", r.ASPath, r.LocalPref, r.Communities, r.LargeCommunities)
		if got != want {
			t.Errorf("%s from %s: %s, want %s", addr, r.Protocol, got, want)
		}
	}
}

func TestBIRDEBGP(t *testing.T) {
	l := needBIRD(t)
	useBIRD(t, l, birdScenario{BIRDPeering: lab.BIRDPeering{Peering: lab.Peering{NodeASN: eBGPASN}}, Communities: true}, true)
	vip, vip6 := "198.19.0.40", "2001:db8:100::40"
	app(t, l, "bird-ebgp", "web", vip+","+vip6, false, map[string]string{"a": "node1"})
	// Cluster policy: every node advertises; BIRD's kernel protocol merges
	// the three routes into one multipath route of each family.
	l.ExpectBIRDRoute(t, vip, l.NodeAddrs(false), 30*time.Second)
	l.ExpectBIRDRoute(t, vip6, l.NodeAddrs(true), 10*time.Second)
	want := fmt.Sprintf("aspath=%d localPref=100 communities=[64500:100 65535:65281] large=[64500:1:2]", eBGPASN)
	expectBIRDAttributes(t, l, vip, want)
	expectBIRDAttributes(t, l, vip6, want)
	if body := getBehindBIRD(t, l, vip, 20*time.Second); !strings.HasPrefix(body, "pod=bird-ebgp/") {
		t.Errorf("GET %s = %q", vip, body)
	}
	getBehindBIRD(t, l, vip6, 10*time.Second)
}

func TestBIRDIBGP(t *testing.T) {
	l := needBIRD(t)
	useBIRD(t, l, birdScenario{BIRDPeering: lab.BIRDPeering{Peering: lab.Peering{NodeASN: lab.BIRDASN}}, LocalPref: 150, Communities: true}, true)
	vip, vip6 := "198.19.0.41", "2001:db8:100::41"
	app(t, l, "bird-ibgp", "web", vip+","+vip6, false, map[string]string{"a": "node2", "b": "node3"})
	l.ExpectBIRDRoute(t, vip, l.NodeAddrs(false), 30*time.Second)
	l.ExpectBIRDRoute(t, vip6, l.NodeAddrs(true), 10*time.Second)
	// LOCAL_PREF travels over iBGP; the path is empty.
	want := "aspath= localPref=150 communities=[64500:100 65535:65281] large=[64500:1:2]"
	expectBIRDAttributes(t, l, vip, want)
	expectBIRDAttributes(t, l, vip6, want)
	getBehindBIRD(t, l, vip, 20*time.Second)
	getBehindBIRD(t, l, vip6, 10*time.Second)
}

func TestBIRDPassword(t *testing.T) {
	l := needBIRD(t)
	t.Run("right", func(t *testing.T) {
		useBIRD(t, l, birdScenario{BIRDPeering: lab.BIRDPeering{Peering: lab.Peering{NodeASN: eBGPASN, Password: "s3cret-B"}}, SpeakerPassword: "s3cret-B"}, true)
		vip := "198.19.0.42"
		app(t, l, "bird-password", "web", vip, false, map[string]string{"a": "node1"})
		l.ExpectBIRDRoute(t, vip, l.NodeAddrs(false), 30*time.Second)
	})
	t.Run("wrong", func(t *testing.T) {
		ctx := t.Context()
		before, err := l.NetStat(ctx, l.BIRDNS(), "TcpExtTCPMD5Failure")
		if err != nil {
			t.Fatal(err)
		}
		useBIRD(t, l, birdScenario{BIRDPeering: lab.BIRDPeering{Peering: lab.Peering{NodeASN: eBGPASN, Password: "s3cret-B"}}, SpeakerPassword: "wrong"}, false)
		// TCP-MD5 drops every segment of a mismatched key: no session ever
		// comes up; BIRD's kernel counts the segments it dropped, and each
		// speaker says its session is down.
		deadline := time.Now().Add(10 * time.Second)
		var protos map[netip.Addr]lab.BIRDProtocol
		for time.Now().Before(deadline) {
			if protos, err = l.BIRDProtocols(ctx); err != nil {
				t.Fatal(err)
			}
			for a, p := range protos {
				if p.Established() {
					t.Fatalf("BIRD's session with %s came up with a wrong password", a)
				}
			}
			time.Sleep(500 * time.Millisecond)
		}
		for a, p := range protos {
			t.Logf("BIRD's session with %s: %s (%s; last error %q)", a, p.State, p.Info, p.LastError)
		}
		after, err := l.NetStat(ctx, l.BIRDNS(), "TcpExtTCPMD5Failure")
		if err != nil {
			t.Fatal(err)
		}
		if after <= before {
			t.Errorf("BIRD's kernel dropped no segment for a wrong MD5 signature (TcpExtTCPMD5Failure %d → %d)", before, after)
		}
		t.Logf("TcpExtTCPMD5Failure in BIRD's namespace: %d → %d", before, after)
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

func TestBIRDBFDWithdrawsACutNode(t *testing.T) {
	l := needBIRD(t)
	ctx := t.Context()
	useBIRD(t, l, birdScenario{BIRDPeering: lab.BIRDPeering{Peering: lab.Peering{NodeASN: lab.BIRDASN, BFD: true}}}, true)
	vip := "198.19.0.43"
	app(t, l, "bird-bfd", "web", vip, false, map[string]string{"a": "node1", "b": "node2"})
	l.ExpectBIRDRoute(t, vip, l.NodeAddrs(false), 30*time.Second)
	n3 := l.NodeAddrs(false, "node3")[0]
	deadline := time.Now().Add(10 * time.Second)
	for {
		sessions, err := l.BIRDBFDSessions(ctx)
		if err == nil && sessions[n3] == "Up" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("BIRD's BFD session with node3 not up after 10 s: %v (err %v)", sessions, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := l.CutLink(ctx, "node3"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.RestoreLink(context.Background(), "node3") })
	start := time.Now()
	// 100 ms × 3 detects in 300 ms; BIRD writes its kernel table at once.
	rest := l.NodeAddrs(false, "node1", "node2")
	if got, err := l.WaitKernelNextHops(ctx, l.BIRDNS(), lab.HostPrefix(vip), rest, time.Second); err != nil {
		t.Fatalf("node3 cut: %v (got %v; BIRD's log: %s)", err, got, l.LogPath("bird"))
	}
	t.Logf("node3's next hop left BIRD's kernel table %v after the cut", time.Since(start).Round(time.Millisecond))
	l.ExpectBIRDRoute(t, vip, rest, time.Second)
	getBehindBIRD(t, l, vip, 5*time.Second)

	// Back on the wire, node3 peers and advertises again (BIRD retries
	// after its error wait time of 1 s).
	if err := l.RestoreLink(ctx, "node3"); err != nil {
		t.Fatal(err)
	}
	l.ExpectBIRDRoute(t, vip, l.NodeAddrs(false), 60*time.Second)
}

func TestBIRDIPv6Session(t *testing.T) {
	l := needBIRD(t)
	useBIRD(t, l, birdScenario{BIRDPeering: lab.BIRDPeering{Peering: lab.Peering{NodeASN: eBGPASN, IPv6: true}}}, true)
	vip, vip6 := "198.19.0.44", "2001:db8:100::44"
	app(t, l, "bird-ipv6", "web", vip+","+vip6, false, map[string]string{"a": "node1", "b": "node3"})
	l.ExpectBIRDRoute(t, vip6, l.NodeAddrs(true), 30*time.Second)
	// The IPv4 address rides the IPv6 sessions with the nodes' IPv4 next hops.
	l.ExpectBIRDRoute(t, vip, l.NodeAddrs(false), 10*time.Second)
	protos, err := l.BIRDProtocols(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range l.NodeAddrs(true) {
		if p := protos[a]; p.Imported["ipv4"] == 0 || p.Imported["ipv6"] == 0 {
			t.Errorf("BIRD's IPv6 session with %s imported %v, want routes of both families", a, p.Imported)
		}
	}
	getBehindBIRD(t, l, vip6, 20*time.Second)
	getBehindBIRD(t, l, vip, 10*time.Second)
}

func TestBIRDSIGTERMWithoutGracefulRestartWithdraws(t *testing.T) {
	l := needBIRD(t)
	ctx := t.Context()
	useBIRD(t, l, birdScenario{BIRDPeering: lab.BIRDPeering{Peering: lab.Peering{NodeASN: lab.BIRDASN}}}, true)
	node := quietSpeaker(t, l)
	t.Cleanup(func() { restartSpeakerIfGone(t, l, node) })
	var others []string
	for _, n := range l.Nodes {
		if n.Name != node {
			others = append(others, n.Name)
		}
	}
	vip := "198.19.0.45"
	app(t, l, "bird-sigterm", "web", vip, false, map[string]string{"a": others[0]})
	l.ExpectBIRDRoute(t, vip, l.NodeAddrs(false), 30*time.Second)
	l.HoldContainer(lab.SpeakerName(node)) // until restartSpeakerIfGone
	p, ok := l.Proc(lab.SpeakerName(node))
	if !ok {
		t.Fatalf("no speaker on %s", node)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	// Read BIRD's kernel table while watching the process: the route must
	// lose the node no later than the process ends (BIRD writes its kernel
	// table within a millisecond; 200 ms cover reading a withdrawal sent
	// just before the exit).
	var withdrawn, exited time.Time
	want := l.NodeAddrs(false, others...)
	for withdrawn.IsZero() && time.Since(sent) < 15*time.Second {
		if !p.Alive() && exited.IsZero() {
			exited = time.Now()
		}
		hops, err := l.KernelNextHops(ctx, l.BIRDNS(), lab.HostPrefix(vip))
		if err == nil && slices.Equal(hops, want) {
			withdrawn = time.Now()
		}
	}
	switch {
	case withdrawn.IsZero():
		t.Fatalf("%s's next hop still in BIRD's kernel table 15 s after SIGTERM", node)
	case !exited.IsZero() && withdrawn.Sub(exited) > 200*time.Millisecond:
		t.Errorf("%s's next hop left BIRD's kernel table %v after its speaker exited, want before", node, withdrawn.Sub(exited))
	}
	t.Logf("SIGTERM -> %s's next hop gone from BIRD's kernel table: %v", node, withdrawn.Sub(sent).Round(time.Millisecond))
	for p.Alive() && time.Since(sent) < 15*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	l.ForgetProcess(p)
	l.ExpectBIRDRoute(t, vip, want, 2*time.Second)
}

func TestBIRDGracefulRestartLosesNoGET(t *testing.T) {
	l := needBIRD(t)
	ctx := t.Context()
	useBIRD(t, l, birdScenario{BIRDPeering: lab.BIRDPeering{Peering: lab.Peering{NodeASN: lab.BIRDASN}}, GracefulRestart: true}, true)
	node := quietSpeaker(t, l)
	t.Cleanup(func() { restartSpeakerIfGone(t, l, node) })
	// Local policy with the only pod on the node: it alone advertises, so
	// the address is reachable only while BIRD keeps its route.
	vip := "198.19.0.46"
	app(t, l, "bird-restart", "web", vip, true, map[string]string{"a": node})
	hop := l.NodeAddrs(false, node)
	l.ExpectBIRDRoute(t, vip, hop, 30*time.Second)
	url := "http://" + net.JoinHostPort(vip, "80") + "/"
	if _, err := l.HTTPGetSteady(ctx, l.BIRDExternalNS(), url, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	protos, err := l.BIRDProtocols(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !protos[hop[0]].NeighborGR {
		t.Fatalf("%s's OPEN to BIRD carries no graceful restart capability: %+v", node, protos[hop[0]])
	}

	probe := lab.StartProbe(l.BIRDExternalNS(), url, 50*time.Millisecond, 2*time.Minute)
	defer probe.Stop()
	watch := watchKernelRoute(l, l.BIRDNS(), lab.HostPrefix(vip), hop[0], 2*time.Minute)
	defer watch.Stop()
	time.Sleep(time.Second)
	stopped := stopSpeaker(t, l, node, 10*time.Second)
	// BIRD keeps the route, stale, while the speaker is away.
	time.Sleep(500 * time.Millisecond)
	if protos, err := l.BIRDProtocols(ctx); err != nil {
		t.Fatal(err)
	} else if p := protos[hop[0]]; !p.Restarting {
		t.Errorf("after %s's speaker exited BIRD's session is %s (%s), not in graceful restart", node, p.State, p.LastError)
	}
	if _, err := startSpeaker(ctx, l, node); err != nil {
		t.Fatal(err)
	}
	waitBIRDRestartDone(t, l, hop[0], 30*time.Second)
	time.Sleep(2 * time.Second)
	watch.expectNoGap(t, stopped, "BIRD")
	probe.ExpectNoLoss(t, "across a graceful restart of "+node+"'s speaker (BIRD)")
}

// waitBIRDRestartDone waits until BIRD's session with addr is Established
// and out of graceful restart (the speaker's End-of-RIB arrived).
func waitBIRDRestartDone(t *testing.T, l *lab.Lab, addr netip.Addr, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		protos, err := l.BIRDProtocols(t.Context())
		p := protos[addr]
		if err == nil && p.Established() && !p.Restarting {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("BIRD's session with %s after the restart, %s: %s, restarting %v (err %v)", addr, timeout, p.State, p.Restarting, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// routeWatch samples the kernel table of a router's namespace and records
// every sample in which a prefix's route lacked one next hop.
type routeWatch struct {
	prefix netip.Prefix
	hop    netip.Addr
	stop   chan struct{}
	done   chan struct{}
	// Written by the sampling goroutine, read after done is closed.
	samples, missing  int
	firstGap, lastGap time.Time
	seen              []string // what the first samples without hop held
}

// watchKernelRoute samples the route for prefix in namespace ns every
// 15 ms until Stop, or for at most limit.
func watchKernelRoute(l *lab.Lab, ns string, prefix netip.Prefix, hop netip.Addr, limit time.Duration) *routeWatch {
	w := &routeWatch{prefix: prefix, hop: hop, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		defer cancel()
		tick := time.NewTicker(15 * time.Millisecond)
		defer tick.Stop()
		for {
			hops, err := l.KernelNextHops(ctx, ns, prefix)
			now := time.Now()
			w.samples++
			if err != nil || !slices.Contains(hops, hop) {
				w.missing++
				if w.firstGap.IsZero() {
					w.firstGap = now
				}
				w.lastGap = now
				if len(w.seen) < 3 {
					w.seen = append(w.seen, fmt.Sprintf("%s: %v (err %v)", now.Format("15:04:05.000"), hops, err))
				}
			}
			select {
			case <-w.stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// Stop ends the sampling; it may be called again.
func (w *routeWatch) Stop() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// expectNoGap fails t if any sample lacked the next hop, timing the gap
// from since (when the speaker exited).
func (w *routeWatch) expectNoGap(t *testing.T, since time.Time, router string) {
	t.Helper()
	w.Stop()
	if w.missing == 0 {
		t.Logf("%s's kernel route for %s kept %s in all %d samples", router, w.prefix, w.hop, w.samples)
		return
	}
	t.Errorf("%s's kernel route for %s lacked %s in %d of %d samples, from %v to %v after the speaker exited: %s",
		router, w.prefix, w.hop, w.missing, w.samples, w.firstGap.Sub(since).Round(time.Millisecond),
		w.lastGap.Sub(since).Round(time.Millisecond), strings.Join(w.seen, "; "))
}

// logSince returns the lines written to the log at path after offset that
// mention one of words (the last 40 of them).
func logSince(path string, offset int64, words ...string) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return fmt.Sprintf("(%s: %v)", path, err)
	}
	var out []string
	for line := range strings.SplitSeq(string(b[offset:]), "\n") {
		for _, w := range words {
			if strings.Contains(line, w) {
				out = append(out, line)
				break
			}
		}
	}
	return strings.Join(out[max(0, len(out)-40):], "\n")
}

// logSize is the current size of the log at path (0 if there is none).
func logSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
