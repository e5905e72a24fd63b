package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/heraldlb/herald/e2e/lab"
)

// The BIRD benchmark (issue 13): a 3-node lab with BIRD 2 next to FRR.
//
//   - bgp_bird_bfd_withdraw_ms: iBGP with BIRD, BFD 100 ms × 3; each node's
//     link cut in turn (10 cuts); node cut → its next hop gone from BIRD's
//     table (birdc polled back to back, ~5 ms a round trip).
//   - bgp_gr_bfd_lost_gets: graceful restart with BFD; the speaker of the
//     one node that serves a Local Service is stopped (SIGTERM) and started
//     again 5 times, against FRR (`bfd check-control-plane-failure`) and
//     against BIRD (`bfd graceful`, `graceful restart on`), each from its
//     own external client GETting every 20 ms; the worse router's count.
const (
	birdBenchPrefix   = "hbenchbird"
	birdBenchNS       = "benchbird"
	birdCuts          = 10
	birdRestarts      = 5
	birdBudget        = 20 * time.Minute
	birdRestartPause  = 2 * time.Second // stopped: well past BFD's 300 ms detection
	birdRestartSettle = 15 * time.Second
)

var (
	birdCutVIP = netip.MustParseAddr("198.19.0.1")
	birdGRVIP  = netip.MustParseAddr("198.19.0.2")
)

func birdBenchConfig(gr bool) string {
	return fmt.Sprintf(`pools:
- name: bench
  addresses: ["198.19.0.0/24"]
  autoAssign: false
bgpPeers:
- name: bird
  address: %s
  asn: %d
  myASN: %d
  holdTime: 9s
  connectTime: 1s
  bfdProfile: fast
  gracefulRestart: %t
- name: frr
  address: %s
  asn: %d
  myASN: %d
  holdTime: 9s
  connectTime: 1s
  bfdProfile: fast
  gracefulRestart: %t
bfdProfiles:
- {name: fast, receiveInterval: 100ms, transmitInterval: 100ms, detectMultiplier: 3}
bgpAdvertisements:
- name: default
  pools: [bench]
`, lab.BIRD4, lab.BIRDASN, lab.BIRDASN, gr, lab.Router4, lab.RouterASN, lab.BIRDASN, gr)
}

// benchBGPBIRD prints bgp_bird_bfd_withdraw_ms and bgp_gr_bfd_lost_gets.
func benchBGPBIRD(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, birdBudget)
	defer cancel()
	l, err := lab.Up(ctx, lab.Config{Prefix: birdBenchPrefix, BIRD: true})
	if err != nil {
		return err
	}
	defer func() {
		if err := l.Down(); err != nil {
			fmt.Fprintln(os.Stderr, "bgpbird: lab down:", err)
		}
	}()
	bird := lab.BIRDPeering{Peering: lab.Peering{NodeASN: lab.BIRDASN, BFD: true}}
	if err := l.PeerBIRD(ctx, bird); err != nil {
		return err
	}
	if err := l.ApplyHeraldConfig(ctx, birdBenchConfig(false)); err != nil {
		return err
	}
	if _, err := l.StartController(ctx, "herald-controller", "--metrics-addr=", "--leader-elect=false"); err != nil {
		return err
	}
	for _, n := range l.Nodes {
		if _, err := l.StartSpeaker(ctx, n.Name, "--metrics-addr="); err != nil {
			return err
		}
		if _, err := l.AddPod(ctx, lab.PodSpec{Namespace: birdBenchNS, Name: "web-" + n.Name, Node: n.Name, Labels: map[string]string{"app": "web"}}); err != nil {
			return err
		}
	}
	all := l.NodeAddrs(false)
	if _, err := l.WaitBIRDEstablished(ctx, all, time.Minute); err != nil {
		return fmt.Errorf("%w (see %s)", err, l.LogPath(lab.SpeakerName("node1")))
	}
	fmt.Println("# bgpbird: iBGP with BIRD 2 from 3 nodes, BFD 100 ms x 3, hold time 9 s")
	withdraw, err := birdCutRuns(ctx, l, all)
	if err != nil {
		return fmt.Errorf("BFD withdraw: %w", err)
	}
	fmt.Printf("# bgpbird BFD withdraw over %d cuts: %v ms (node cut -> its next hop gone from BIRD's table)\n", len(withdraw), msList(withdraw))
	fmt.Printf("bgp_bird_bfd_withdraw_ms=%d\n", ms(pct(withdraw, 1)))

	lost, err := birdGRRuns(ctx, l)
	if err != nil {
		return fmt.Errorf("graceful restarts: %w", err)
	}
	fmt.Printf("bgp_gr_bfd_lost_gets=%d\n", lost)
	return nil
}

// birdCutRuns cuts each node's link in turn and times its next hop's
// removal from BIRD's table for a Service every node advertises.
func birdCutRuns(ctx context.Context, l *lab.Lab, all []netip.Addr) ([]time.Duration, error) {
	if err := createWeb(ctx, l.Kube(), birdBenchNS, "cut", birdCutVIP); err != nil {
		return nil, err
	}
	prefix := netip.PrefixFrom(birdCutVIP, 32)
	var out []time.Duration
	for i := range birdCuts {
		n := l.Nodes[i%len(l.Nodes)]
		if err := waitBIRDSteady(ctx, l, prefix, all, n.IPv4, 90*time.Second); err != nil {
			return out, fmt.Errorf("before cut %d: %w", i+1, err)
		}
		if err := l.CutLink(ctx, n.Name); err != nil {
			return out, err
		}
		cut := time.Now()
		var gone time.Duration
		for time.Since(cut) < 10*time.Second {
			if hops, err := birdNextHops(ctx, l, prefix); err == nil && !slices.Contains(hops, n.IPv4) {
				gone = time.Since(cut)
				break
			}
		}
		if err := l.RestoreLink(ctx, n.Name); err != nil {
			return out, err
		}
		if gone == 0 {
			return out, fmt.Errorf("cut %d: %s's next hop still in BIRD's table 10 s after the cut", i+1, n.Name)
		}
		fmt.Fprintf(os.Stderr, "bgpbird cut %2d %s: next hop withdrawn after %d ms\n", i+1, n.Name, ms(gone))
		out = append(out, gone)
	}
	return out, nil
}

func birdNextHops(ctx context.Context, l *lab.Lab, prefix netip.Prefix) ([]netip.Addr, error) {
	routes, err := l.BIRDRoutes(ctx, prefix)
	if err != nil {
		return nil, err
	}
	var hops []netip.Addr
	for _, r := range routes {
		hops = append(hops, r.NextHop)
	}
	return hops, nil
}

// waitBIRDSteady waits until every node's route is in BIRD's table and
// BFD is up with the node cut next.
func waitBIRDSteady(ctx context.Context, l *lab.Lab, prefix netip.Prefix, all []netip.Addr, next netip.Addr, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		hops, err := birdNextHops(ctx, l, prefix)
		bfd, berr := l.BIRDBFDSessions(ctx)
		if err == nil && berr == nil && bfd[next] == "Up" && !slices.ContainsFunc(all, func(a netip.Addr) bool { return !slices.Contains(hops, a) }) {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("BIRD's next hops %v (want %v), BFD %v (errors %v, %v)", hops, all, bfd, err, berr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// birdGRRuns restarts node1's speaker birdRestarts times with graceful
// restart and BFD on both routers' sessions, each router set to honour
// it, and returns the GETs lost through the worse router.
func birdGRRuns(ctx context.Context, l *lab.Lab) (int, error) {
	bird := lab.BIRDPeering{Peering: lab.Peering{NodeASN: lab.BIRDASN, BFD: true}, BFDGraceful: true, GracefulRestart: true}
	if err := l.PeerBIRD(ctx, bird); err != nil {
		return 0, err
	}
	frr := lab.Peering{NodeASN: lab.BIRDASN, BFD: true}
	if err := l.PeerNodes(ctx, frr); err != nil {
		return 0, err
	}
	lines := []string{fmt.Sprintf("router bgp %d", lab.RouterASN)}
	for _, a := range l.PeerAddresses(frr) {
		lines = append(lines, "neighbor "+a.String()+" bfd check-control-plane-failure")
	}
	if err := l.ConfigureRouter(ctx, lines...); err != nil {
		return 0, err
	}
	if err := l.ApplyHeraldConfig(ctx, birdBenchConfig(true)); err != nil {
		return 0, err
	}
	node := l.Nodes[0]
	if _, err := l.AddPod(ctx, lab.PodSpec{Namespace: birdBenchNS, Name: "solo", Node: node.Name, Labels: map[string]string{"app": "solo"}}); err != nil {
		return 0, err
	}
	if err := createLocal(ctx, l, "solo", birdGRVIP); err != nil {
		return 0, err
	}
	prefix := netip.PrefixFrom(birdGRVIP, 32)
	hop := []netip.Addr{node.IPv4}
	url := "http://" + netip.AddrPortFrom(birdGRVIP, 80).String() + "/"
	clients := []struct{ name, ns string }{{"FRR", l.ExternalNS()}, {"BIRD", l.BIRDExternalNS()}}
	lost := map[string]int{}
	for i := range birdRestarts {
		if err := l.WaitRoute(ctx, birdGRVIP.String(), hop, 60*time.Second); err != nil {
			return 0, fmt.Errorf("before restart %d, FRR: %w", i+1, err)
		}
		if _, err := l.WaitKernelNextHops(ctx, l.BIRDNS(), prefix, hop, 60*time.Second); err != nil {
			return 0, fmt.Errorf("before restart %d, BIRD: %w", i+1, err)
		}
		var probes []*lab.Probe
		for _, c := range clients {
			if _, err := l.HTTPGetSteady(ctx, c.ns, url, 30*time.Second); err != nil {
				return 0, fmt.Errorf("before restart %d, via %s: %w", i+1, c.name, err)
			}
			probes = append(probes, lab.StartProbe(c.ns, url, 20*time.Millisecond, time.Minute))
		}
		time.Sleep(time.Second)
		err := restartSpeaker(ctx, l, node.Name)
		if err == nil {
			err = sleepUntil(ctx, time.Now().Add(birdRestartSettle))
		}
		var line []string
		for j, p := range probes {
			p.Stop()
			lost[clients[j].name] += p.Failed()
			line = append(line, fmt.Sprintf("%s %d of %d lost", clients[j].name, p.Failed(), p.Sent()))
		}
		if err != nil {
			return 0, fmt.Errorf("restart %d: %w", i+1, err)
		}
		fmt.Fprintf(os.Stderr, "bgpbird graceful restart %d of %s's speaker: %s\n", i+1, node.Name, strings.Join(line, ", "))
	}
	fmt.Printf("# bgpbird graceful restarts with BFD (%d, %s's speaker, SIGTERM then started again after %s; GETs every 20 ms through each router): FRR %d lost, BIRD %d lost\n",
		birdRestarts, node.Name, birdRestartPause, lost["FRR"], lost["BIRD"])
	return max(lost["FRR"], lost["BIRD"]), nil
}

// restartSpeaker stops node's speaker with SIGTERM, waits birdRestartPause
// and starts it again.
func restartSpeaker(ctx context.Context, l *lab.Lab, node string) error {
	p, ok := l.Proc(lab.SpeakerName(node))
	if !ok {
		return fmt.Errorf("no speaker on %s", node)
	}
	p.Stop(10 * time.Second)
	l.ForgetProcess(p)
	if err := sleepUntil(ctx, time.Now().Add(birdRestartPause)); err != nil {
		return err
	}
	_, err := l.StartSpeaker(ctx, node, "--metrics-addr=")
	return err
}

// createLocal creates a Service with externalTrafficPolicy Local that asks
// for addr and selects the pods labelled app=name.
func createLocal(ctx context.Context, l *lab.Lab, name string, addr netip.Addr) error {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: birdBenchNS, Name: name, Annotations: map[string]string{"herald.dev/ips": addr.String()}},
		Spec: corev1.ServiceSpec{
			Type:                  corev1.ServiceTypeLoadBalancer,
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			Selector:              map[string]string{"app": name},
			Ports:                 []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	_, err := l.Kube().CoreV1().Services(birdBenchNS).Create(ctx, s, metav1.CreateOptions{})
	return err
}
