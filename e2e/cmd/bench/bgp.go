package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/heraldlb/herald/e2e/lab"
)

// The BGP benchmark (issue 6, "Benchmark"): a 3-node lab whose speakers
// peer over iBGP with FRR in the router namespace, BFD 100 ms × 3. Every
// figure is read from FRR's BGP table through vtysh, polled back to back
// (one vtysh round trip is ~30 ms on this machine, the resolution of the
// millisecond figures: each is taken when the first vtysh that shows the
// change returns, so it may be late by up to one round trip, never early).
const (
	bgpPrefix   = "hbenchbgp"
	bgpNS       = "benchbgp"
	bgpBigNS    = "benchbgp10k"
	bgpCuts     = 10
	bgpAnnounce = 50
	bgpBig      = 10000
	bgpBudget   = 25 * time.Minute
	// bgpCreators write the 10,000 Services, EndpointSlices and statuses.
	bgpCreators = 32
)

// bgpConfig: pool "announce" for the cut and announce Services (asked for
// by address), pool "big" for the 10,000 (written straight into their
// status, so its width is what matters, not its allocation).
const bgpConfig = `pools:
- name: announce
  addresses: ["198.19.0.0/24"]
  autoAssign: false
- name: big
  addresses: ["198.18.0.0/16"]
  autoAssign: false
bgpPeers:
- name: tor
  address: 198.51.100.1
  asn: 64500
  myASN: 64500
  holdTime: 9s
  connectTime: 1s
  bfdProfile: fast
bfdProfiles:
- {name: fast, receiveInterval: 100ms, transmitInterval: 100ms, detectMultiplier: 3}
bgpAdvertisements:
- name: default
  pools: [announce, big]
`

var (
	bgpCutVIP      = netip.MustParseAddr("198.19.0.1")
	bgpAnnounceVIP = netip.MustParseAddr("198.19.0.10") // .10 - .59
	bgpBigFirst    = netip.MustParseAddr("198.18.1.0")  // 198.18.1.0 - 198.18.40.15
)

// benchBGP prints bgp_bfd_withdraw_ms, bgp_announce_p99_ms,
// bgp_10k_converge_s and speaker_10k_rss_mib; details go to stderr.
func benchBGP(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, bgpBudget)
	defer cancel()
	l, err := lab.Up(ctx, lab.Config{Prefix: bgpPrefix})
	if err != nil {
		return err
	}
	defer func() {
		if err := l.Down(); err != nil {
			fmt.Fprintln(os.Stderr, "bgp: lab down:", err)
		}
	}()
	peering := lab.Peering{NodeASN: lab.RouterASN, BFD: true}
	if err := l.PeerNodes(ctx, peering); err != nil {
		return err
	}
	if err := l.ApplyHeraldConfig(ctx, bgpConfig); err != nil {
		return err
	}
	if _, err := l.StartController(ctx, "herald-controller", "--metrics-addr=", "--leader-elect=false"); err != nil {
		return err
	}
	for _, n := range l.Nodes {
		if _, err := l.StartSpeaker(ctx, n.Name, "--metrics-addr="); err != nil {
			return err
		}
		if _, err := l.AddPod(ctx, lab.PodSpec{Namespace: bgpNS, Name: "web-" + n.Name, Node: n.Name, Labels: map[string]string{"app": "web"}}); err != nil {
			return err
		}
	}
	if _, err := l.WaitEstablished(ctx, l.PeerAddresses(peering), time.Minute); err != nil {
		return fmt.Errorf("%w (see %s)", err, l.LogPath(lab.SpeakerName("node1")))
	}
	fmt.Println("# bgp: iBGP with FRR 8.4 from 3 nodes, BFD 100 ms x 3, hold time 9 s")

	withdraw, err := bgpCutRuns(ctx, l, peering)
	if err != nil {
		return fmt.Errorf("BFD withdraw: %w", err)
	}
	announce, err := bgpAnnounceRuns(ctx, l)
	if err != nil {
		return fmt.Errorf("announce: %w", err)
	}
	converge, rss, err := bgpConverge10k(ctx, l)
	if err != nil {
		return fmt.Errorf("10k: %w", err)
	}
	fmt.Printf("# bgp BFD withdraw over %d cuts: %v ms (node cut -> its next hop gone from FRR's BGP table)\n", len(withdraw), msList(withdraw))
	fmt.Printf("# bgp announce over %d Services: p50 %d ms, max %d ms (Service create -> first path in FRR's BGP table)\n",
		len(announce), ms(pct(announce, 0.5)), ms(pct(announce, 1)))
	fmt.Printf("bgp_bfd_withdraw_ms=%d\n", ms(pct(withdraw, 1)))
	fmt.Printf("bgp_announce_p99_ms=%d\n", ms(pct(announce, 0.99)))
	fmt.Printf("bgp_10k_converge_s=%.1f\n", converge.Seconds())
	fmt.Printf("speaker_10k_rss_mib=%.0f\n", rss)
	return nil
}

// bgpCutRuns cuts each node's link in turn (bgpCuts times) and measures
// the time from the cut until the node's next hop for a Service every node
// advertises is gone from FRR's BGP table: BFD detection at the router
// (100 ms × 3), bgpd dropping the session's paths, and ≤ one vtysh poll.
func bgpCutRuns(ctx context.Context, l *lab.Lab, peering lab.Peering) ([]time.Duration, error) {
	if err := createWeb(ctx, l.Kube(), bgpNS, "cut", bgpCutVIP); err != nil {
		return nil, err
	}
	prefix := netip.PrefixFrom(bgpCutVIP, 32)
	all := l.PeerAddresses(peering)
	var out []time.Duration
	for i := range bgpCuts {
		n := l.Nodes[i%len(l.Nodes)]
		// Steady first: every node advertises, and BFD is up with the node cut next.
		if got, err := l.WaitBGPNextHops(ctx, prefix, all, 90*time.Second); err != nil {
			return out, fmt.Errorf("before cut %d: %w (got %v)", i+1, err, got)
		}
		if err := waitBFDUp(ctx, l, n.IPv4, 30*time.Second); err != nil {
			return out, fmt.Errorf("before cut %d: %w", i+1, err)
		}
		if err := l.CutLink(ctx, n.Name); err != nil {
			return out, err
		}
		cut := time.Now()
		var gone time.Duration
		for time.Since(cut) < 10*time.Second {
			hops, err := l.BGPNextHops(ctx, prefix)
			if err == nil && !slices.Contains(hops, n.IPv4) {
				gone = time.Since(cut)
				break
			}
		}
		if err := l.RestoreLink(ctx, n.Name); err != nil {
			return out, err
		}
		if gone == 0 {
			return out, fmt.Errorf("cut %d: %s's next hop still in FRR's table 10 s after the cut", i+1, n.Name)
		}
		fmt.Fprintf(os.Stderr, "bgp cut %2d %s: next hop withdrawn after %d ms\n", i+1, n.Name, ms(gone))
		out = append(out, gone)
	}
	return out, nil
}

func waitBFDUp(ctx context.Context, l *lab.Lab, peer netip.Addr, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		nbrs, err := l.BGPNeighbors(ctx)
		if err == nil && nbrs[peer].Established() && nbrs[peer].BFD == "Up" {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("session with %s not established with BFD up after %s: %+v (err %v)", peer, timeout, nbrs[peer], err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// bgpAnnounceRuns creates bgpAnnounce Services one after the other, each
// asking for its own address and selecting the ready pods of every node,
// and measures from the create call until FRR's BGP table first holds a
// path for the address. That spans the API server's write,
// kube-controller-manager's EndpointSlice, herald-controller's allocation
// and status write, the speakers' watches and decision, GoBGP's UPDATE,
// bgpd's processing, and ≤ one vtysh poll.
func bgpAnnounceRuns(ctx context.Context, l *lab.Lab) ([]time.Duration, error) {
	var out []time.Duration
	addr := bgpAnnounceVIP
	for i := range bgpAnnounce {
		prefix := netip.PrefixFrom(addr, 32)
		start := time.Now()
		if err := createWeb(ctx, l.Kube(), bgpNS, fmt.Sprintf("announce-%02d", i), addr); err != nil {
			return out, err
		}
		var took time.Duration
		for time.Since(start) < 10*time.Second {
			paths, err := l.BGPPaths(ctx, prefix)
			if err == nil && len(paths) > 0 {
				took = time.Since(start)
				break
			}
		}
		if took == 0 {
			return out, fmt.Errorf("%s not in FRR's table 10 s after its Service was created (see %s)", addr, l.LogPath("herald-controller"))
		}
		out = append(out, took)
		addr = addr.Next()
	}
	return out, nil
}

// createWeb creates a Service for the lab's app=web pods asking for addr.
func createWeb(ctx context.Context, kube kubernetes.Interface, ns, name string, addr netip.Addr) error {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{"herald.dev/ips": addr.String()}},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	_, err := kube.CoreV1().Services(ns).Create(ctx, s, metav1.CreateOptions{})
	return err
}

// bgpConverge10k measures a speaker start with 10,000 advertised Services:
// the objects are written first (with the speakers and the controller
// stopped), then the speakers start together and the clock runs until
// FRR's BGP table holds all 10,000 prefixes from every node. That spans
// process start, the informers' initial lists, session establishment
// (OPEN, capabilities, BFD), the decision for 10,000 Services and the
// UPDATEs. Creating 10,000 Services through the API server takes minutes
// on 2 cores, which says nothing about Herald; hence the start-up figure.
// It returns that time and the largest speaker RSS (VmRSS) seen at
// convergence and 5 s later.
func bgpConverge10k(ctx context.Context, l *lab.Lab) (time.Duration, float64, error) {
	if p, ok := l.Proc("herald-controller"); ok {
		p.Stop(5 * time.Second)
		l.ForgetProcess(p)
	}
	for _, n := range l.Nodes {
		if p, ok := l.Proc(lab.SpeakerName(n.Name)); ok {
			p.Stop(10 * time.Second)
			l.ForgetProcess(p)
		}
	}
	// The earlier Services go, so FRR's table holds exactly the 10,000 later.
	list, err := l.Kube().CoreV1().Services(bgpNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, 0, err
	}
	for _, s := range list.Items {
		if err := l.Kube().CoreV1().Services(bgpNS).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return 0, 0, err
		}
	}
	pod, ok := podOf(l, bgpNS, "web-node1")
	if !ok {
		return 0, 0, errors.New("no pod web-node1")
	}
	start := time.Now()
	if err := createBig(ctx, l, pod); err != nil {
		return 0, 0, err
	}
	fmt.Fprintf(os.Stderr, "bgp 10k: %d Services, EndpointSlices and statuses written in %.1f s\n", bgpBig, time.Since(start).Seconds())
	if got, err := l.BGPReceived(ctx, "ipv4"); err != nil || sumCounts(got) != 0 {
		return 0, 0, fmt.Errorf("FRR still holds routes before the start: %v (err %v)", got, err)
	}

	start = time.Now()
	var pids []int
	for _, n := range l.Nodes {
		p, err := l.StartSpeaker(ctx, n.Name, "--metrics-addr=")
		if err != nil {
			return 0, 0, err
		}
		pids = append(pids, p.PID)
	}
	up := map[netip.Addr]time.Duration{}
	full := map[netip.Addr]time.Duration{}
	for len(full) < len(l.Nodes) {
		if time.Since(start) > 5*time.Minute || ctx.Err() != nil {
			return 0, 0, fmt.Errorf("after 5 min FRR holds %d of %d nodes' %d routes (see %s)", len(full), len(l.Nodes), bgpBig, l.LogPath(lab.SpeakerName("node1")))
		}
		got, err := l.BGPReceived(ctx, "ipv4")
		if err != nil {
			return 0, 0, err
		}
		now := time.Since(start)
		for a, n := range got {
			if _, ok := up[a]; !ok {
				up[a] = now
			}
			if _, ok := full[a]; !ok && n >= bgpBig {
				full[a] = now
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	converge := time.Since(start)
	for _, n := range l.Nodes {
		fmt.Fprintf(os.Stderr, "bgp 10k: %s session seen established at %.2f s, all its routes in FRR at %.2f s\n",
			n.Name, up[n.IPv4].Seconds(), full[n.IPv4].Seconds())
	}
	rss := 0.0
	for round := range 2 {
		if round == 1 {
			time.Sleep(5 * time.Second)
		}
		for i, pid := range pids {
			v, err := procStatusMiB(pid, "VmRSS:")
			if err != nil {
				return 0, 0, fmt.Errorf("speaker on %s: %w", l.Nodes[i].Name, err)
			}
			// VmRSS counts the program's mapped code (GoBGP brings ~37 MB
			// of it; this kernel maps it resident in large folios) besides
			// the heap: show both parts.
			anon, _ := procStatusMiB(pid, "RssAnon:")
			file, _ := procStatusMiB(pid, "RssFile:")
			fmt.Fprintf(os.Stderr, "bgp 10k: speaker on %s VmRSS %.0f MiB = anon %.0f + file %.0f (%s)\n",
				l.Nodes[i].Name, v, anon, file, []string{"at convergence", "5 s later"}[round])
			rss = max(rss, v)
		}
	}
	return converge, rss, nil
}

func sumCounts(m map[netip.Addr]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func podOf(l *lab.Lab, ns, name string) (lab.Pod, bool) {
	for _, p := range l.ListPods() {
		if p.Namespace == ns && p.Name == name {
			return p, true
		}
	}
	return lab.Pod{}, false
}

// createBig writes bgpBig Services as if the controller had served them:
// each selectorless (so kube-controller-manager leaves it alone) with an
// EndpointSlice of its own naming pod as a ready endpoint, and its address
// written straight into its status. The label service-proxy-name keeps
// kube-proxy from programming 10,000 Services on every node meanwhile.
func createBig(ctx context.Context, l *lab.Lab, pod lab.Pod) error {
	cfg, err := l.RESTConfig()
	if err != nil {
		return err
	}
	cfg.QPS = -1 // the API server sets the pace
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: bgpBigNS}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	var next atomic.Int64
	var mu sync.Mutex
	var failed error
	var wg sync.WaitGroup
	for range bgpCreators {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < bgpBig && ctx.Err() == nil; i = next.Add(1) - 1 {
				if err := createBigOne(ctx, kube, int(i), pod); err != nil {
					mu.Lock()
					failed = cmp.Or(failed, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return cmp.Or(failed, ctx.Err())
}

func bigAddr(i int) netip.Addr {
	b := bgpBigFirst.As4()
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n += uint32(i)
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

func createBigOne(ctx context.Context, kube kubernetes.Interface, i int, pod lab.Pod) error {
	name := fmt.Sprintf("svc-%05d", i)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: bgpBigNS, Labels: map[string]string{"service.kubernetes.io/service-proxy-name": "bench"}},
		Spec: corev1.ServiceSpec{
			Type:                          corev1.ServiceTypeLoadBalancer,
			AllocateLoadBalancerNodePorts: new(false),
			IPFamilyPolicy:                new(corev1.IPFamilyPolicySingleStack),
			IPFamilies:                    []corev1.IPFamily{corev1.IPv4Protocol},
			Ports:                         []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	created, err := retry(ctx, func() (*corev1.Service, error) {
		return kube.CoreV1().Services(bgpBigNS).Create(ctx, svc, metav1.CreateOptions{})
	})
	if apierrors.IsAlreadyExists(err) {
		created, err = kube.CoreV1().Services(bgpBigNS).Get(ctx, name, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("create Service %s: %w", name, err)
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: bgpBigNS, Labels: map[string]string{
			discoveryv1.LabelServiceName: name,
			discoveryv1.LabelManagedBy:   "herald-bench",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{pod.IPv4.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: new(true), Serving: new(true), Terminating: new(false)},
			NodeName:   new(pod.Node),
		}},
		Ports: []discoveryv1.EndpointPort{{Name: new("http"), Port: new(int32(8080)), Protocol: new(corev1.ProtocolTCP)}},
	}
	if _, err := retry(ctx, func() (*discoveryv1.EndpointSlice, error) {
		return kube.DiscoveryV1().EndpointSlices(bgpBigNS).Create(ctx, slice, metav1.CreateOptions{})
	}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create EndpointSlice %s: %w", name, err)
	}
	created.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: bigAddr(i).String(), IPMode: new(corev1.LoadBalancerIPModeVIP)}}
	if _, err := retry(ctx, func() (*corev1.Service, error) {
		return kube.CoreV1().Services(bgpBigNS).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	}); err != nil {
		return fmt.Errorf("status of %s: %w", name, err)
	}
	return nil
}

// retry calls f again (at most 5 times) while the API server is overloaded.
func retry[T any](ctx context.Context, f func() (T, error)) (T, error) {
	for attempt := 0; ; attempt++ {
		v, err := f()
		if err == nil || attempt >= 5 || ctx.Err() != nil ||
			!(apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err)) {
			return v, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// procStatusMiB reads one kB field of /proc/pid/status (VmRSS:, VmHWM:) in MiB.
func procStatusMiB(pid int, field string) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kib, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kib / 1024, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}
