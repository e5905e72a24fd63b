package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/heraldlb/herald/e2e/lab"
)

// The many-addresses layer-2 benchmark (issue: a node that owns ~1,000
// addresses fails): a 3-node lab, the controller and a speaker per node
// (default timings but the short hold-down of the l2 bench), one ready pod
// per node, and 3,000 LoadBalancer Services (externalTrafficPolicy Cluster)
// that all select those pods, each given an address from 198.18.0.0/20. The
// client's raw ARP socket records every announcement and reply it sees. The
// node that owns the most addresses has its link cut: the time until the
// last of its addresses is announced by another node, and the CPU the
// surviving speakers burn meanwhile, are the lines.
const (
	manyPrefix   = "hbenchl2m"
	manyNS       = "benchmany"
	manyServices = 3000
	manyCreators = 32
	// manyBudget bounds the whole measurement, lab bring-up included.
	manyBudget = 10 * time.Minute
	// manyCutCPU, manyBackCPU: the CPU windows after the cut and after the
	// link comes back.
	manyCutCPU  = 10 * time.Second
	manyBackCPU = 20 * time.Second
	// manyTakeoverBound: how long after the cut the addresses may take to
	// be announced by another node before the run counts as failed.
	manyTakeoverBound = 60 * time.Second
	// The speakers have settled when together they use less than
	// manySettleCPU CPU-seconds in manySettleWindow; the wait is at most
	// manySettleMax.
	manySettleCPU    = 0.25
	manySettleWindow = 5 * time.Second
	manySettleMax    = 90 * time.Second
	// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat
	// (sysconf(_SC_CLK_TCK)); it is 100 on every Linux architecture Go
	// supports.
	clockTicks = 100
	// manyProxyMode: kube-proxy in nftables mode updates its rules
	// incrementally; in iptables mode every node rewrites its rules for
	// 3,000 Services at each sync, which makes the setup take minutes on
	// two cores. Nothing kube-proxy does changes when a node's link is cut.
	manyProxyMode = "nftables"
)

// manyConfig: 4,096 addresses of the benchmarking range, announced by ARP.
// They are on no node's subnet: the speakers answer on every eligible
// interface (eth0), and the client has an on-link route for 198.18.0.0/15.
const manyConfig = `pools:
- name: many
  addresses: ["198.18.0.0/20"]
l2Advertisements:
- name: many
  pools: [many]
`

var manyRoute = netip.MustParsePrefix("198.18.0.0/15")

// benchL2Many measures the takeover of ~1,000 addresses after a hard node
// failure. Per-step details go to stderr, the summary to stdout.
func benchL2Many(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, manyBudget)
	defer cancel()
	l, err := lab.Up(ctx, lab.Config{Prefix: manyPrefix, ProxyMode: manyProxyMode})
	if err != nil {
		return err
	}
	defer func() {
		if err := l.Down(); err != nil {
			fmt.Fprintln(os.Stderr, "l2many: lab down:", err)
		}
	}()
	kube := l.Kube()
	if err := applySpeakerStateCRD(ctx, l); err != nil {
		return err
	}
	if err := l.ApplyHeraldConfig(ctx, manyConfig); err != nil {
		return err
	}
	if _, err := l.StartController(ctx, "herald-controller", "--leader-elect=false", "--metrics-addr="); err != nil {
		return err
	}
	macToNode := map[string]string{}
	var nodes []string
	for _, n := range l.Nodes {
		nodes = append(nodes, n.Name)
		mac, err := l.MAC(ctx, n.NS, "eth0")
		if err != nil {
			return err
		}
		macToNode[strings.ToLower(mac)] = n.Name
	}
	if _, err := l.Exec(ctx, l.ClientNS(), "ip", "route", "add", manyRoute.String(), "dev", "eth0"); err != nil {
		return err
	}
	tap, err := openTap(l.ClientNS(), macToNode)
	if err != nil {
		return err
	}
	defer tap.close()
	for _, n := range nodes {
		if _, err := l.AddPod(ctx, lab.PodSpec{Namespace: manyNS, Name: "many-" + n, Node: n, Labels: map[string]string{"app": "many"}}); err != nil {
			return err
		}
	}
	fmt.Printf("# l2many speaker flags: %s (every other speaker setting at its default); %d Services (externalTrafficPolicy Cluster, no NodePorts, all selecting one ready pod per node), addresses from 198.18.0.0/20; kube-proxy in %s mode; the SpeakerState CRD installed\n",
		strings.Join(l2SpeakerFlags, " "), manyServices, manyProxyMode)

	// Create the Services with a bounded pool of workers.
	tCreate := time.Now()
	var next atomic.Int64
	progress := make(chan struct{})
	go func() {
		for {
			select {
			case <-progress:
				return
			case <-time.After(15 * time.Second):
				fmt.Fprintf(os.Stderr, "l2many: %.0f s: %d Services created\n", time.Since(tCreate).Seconds(), min(next.Load(), manyServices))
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, manyCreators)
	for range manyCreators {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= manyServices || ctx.Err() != nil {
					return
				}
				svc := manyService(i)
				if _, err := retry(ctx, func() (*corev1.Service, error) {
					return kube.CoreV1().Services(manyNS).Create(ctx, svc, metav1.CreateOptions{})
				}); err != nil {
					errs <- fmt.Errorf("create %s: %w", svc.Name, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(progress)
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	created := time.Since(tCreate)
	fmt.Fprintf(os.Stderr, "l2many: %d Services created in %.1f s by %d workers\n", manyServices, created.Seconds(), manyCreators)

	// Wait until every Service has its address.
	addrOf := map[string]netip.Addr{}
	for end := time.Now().Add(4 * time.Minute); ; {
		list, err := kube.CoreV1().Services(manyNS).List(ctx, metav1.ListOptions{})
		if err == nil {
			clear(addrOf)
			for _, s := range list.Items {
				if len(s.Status.LoadBalancer.Ingress) > 0 {
					if a, err := netip.ParseAddr(s.Status.LoadBalancer.Ingress[0].IP); err == nil {
						addrOf[s.Name] = a
					}
				}
			}
			if len(addrOf) >= manyServices {
				break
			}
		}
		if time.Now().After(end) {
			return fmt.Errorf("only %d of %d Services have an address 4 minutes after the creates ended", len(addrOf), manyServices)
		}
		if err := sleep(ctx, 2*time.Second); err != nil {
			return err
		}
	}
	allocated := time.Since(tCreate)
	addrs := slices.SortedFunc(maps.Values(addrOf), netip.Addr.Compare)
	if n := len(slices.Compact(slices.Clone(addrs))); n != len(addrs) {
		return fmt.Errorf("%d Services share %d addresses", len(addrs), n)
	}
	fmt.Fprintf(os.Stderr, "l2many: every Service had an address %.1f s after the first create\n", allocated.Seconds())

	// The speakers start once the Services are there: the setup is quicker
	// (a speaker's first decision covers them all) and the steady state the
	// same.
	for _, n := range nodes {
		if _, err := l.StartSpeaker(ctx, n, l2SpeakerFlags...); err != nil {
			return err
		}
	}
	tSpeakers := time.Now()

	// Wait until every address is answered by exactly one node, and take
	// the owners from one last full sweep.
	owner, err := manySweepUntil(ctx, tap, addrs, 4*time.Minute)
	if err != nil {
		return err
	}
	announced := time.Since(tSpeakers)
	byNode := map[string][]netip.Addr{}
	for _, a := range addrs {
		byNode[owner[a]] = append(byNode[owner[a]], a)
	}
	victim := nodes[0]
	for _, n := range nodes {
		if len(byNode[n]) > len(byNode[victim]) {
			victim = n
		}
	}
	var survivors []string
	for _, n := range nodes {
		if n != victim {
			survivors = append(survivors, n)
		}
	}
	fmt.Fprintf(os.Stderr, "l2many: every address answered ARP %.1f s after the speakers started; owners: %s\n", announced.Seconds(), countsByNode(byNode, nodes))

	// Let the speakers settle (their start-up work done), then take a
	// quiet baseline: the survivors' CPU over the same window with no failure.
	settled, rate, err := manySettle(ctx, l, nodes)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "l2many: lab processes' CPU so far: %s\n", labCPU(l))
	base0, err := speakerTicks(l, survivors)
	if err != nil {
		return err
	}
	if err := sleep(ctx, manyCutCPU); err != nil {
		return err
	}
	base1, err := speakerTicks(l, survivors)
	if err != nil {
		return err
	}

	// The cut.
	victimAddrs := byNode[victim]
	cpu0, err := speakerTicks(l, survivors)
	if err != nil {
		return err
	}
	tCut := time.Now()
	if err := l.CutLink(ctx, victim); err != nil {
		return err
	}
	restored := false
	defer func() {
		if !restored {
			_ = l.RestoreLink(context.Background(), victim)
		}
	}()
	cpuDone := make(chan struct{})
	var cpu1 map[string]int64
	var cpuErr error
	go func() {
		defer close(cpuDone)
		if cpuErr = sleepUntil(ctx, tCut.Add(manyCutCPU)); cpuErr == nil {
			cpu1, cpuErr = speakerTicks(l, survivors)
		}
	}()
	took := map[netip.Addr]arpEvent{} // the first announcement by another node
	pending := slices.Clone(victimAddrs)
	for end := tCut.Add(manyTakeoverBound); len(pending) > 0 && time.Now().Before(end); {
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
		pending = slices.DeleteFunc(pending, func(a netip.Addr) bool {
			for _, e := range tap.between(a, tCut, time.Now()) {
				if e.node != victim && slices.Contains(nodes, e.node) {
					took[a] = e
					return true
				}
			}
			return false
		})
	}
	<-cpuDone
	if cpuErr != nil {
		return cpuErr
	}

	// The link comes back: the CPU of all three speakers for manyBackCPU.
	back0, err := speakerTicks(l, nodes)
	if err != nil {
		return err
	}
	tRestore := time.Now()
	if err := l.RestoreLink(ctx, victim); err != nil {
		return err
	}
	restored = true
	if err := sleepUntil(ctx, tRestore.Add(manyBackCPU)); err != nil {
		return err
	}
	back1, err := speakerTicks(l, nodes)
	if err != nil {
		return err
	}
	var takenBack []time.Duration
	for _, a := range victimAddrs {
		for _, e := range tap.between(a, tRestore, time.Now()) {
			if e.node == victim {
				takenBack = append(takenBack, e.at.Sub(tRestore))
				break
			}
		}
	}

	// Summary.
	var lat []time.Duration
	takers := map[string]int{}
	for _, a := range victimAddrs {
		if e, ok := took[a]; ok {
			lat = append(lat, e.at.Sub(tCut))
			takers[e.node]++
		}
	}
	fmt.Fprintf(os.Stderr, "l2many: cut -> announced by another node, ms: p10 %d, p25 %d, p50 %d, p75 %d, p90 %d, max %d\n",
		ms(pct(lat, 0.1)), ms(pct(lat, 0.25)), ms(pct(lat, 0.5)), ms(pct(lat, 0.75)), ms(pct(lat, 0.9)), ms(pct(lat, 1)))
	for _, n := range survivors {
		var by []time.Duration
		for _, a := range victimAddrs {
			if e, ok := took[a]; ok && e.node == n {
				by = append(by, e.at.Sub(tCut))
			}
		}
		fmt.Fprintf(os.Stderr, "l2many: taken by %s: %d addresses, cut -> announced p50 %d ms, max %d ms\n", n, len(by), ms(pct(by, 0.5)), ms(pct(by, 1)))
	}
	drops := tap.drops()
	fmt.Printf("# l2many: %d Services created in %.1f s (%d workers); all had an address %.1f s after the first create; the speakers, started then, answered ARP for all %.1f s after their start; owners before the cut: %s\n",
		manyServices, created.Seconds(), manyCreators, allocated.Seconds(), announced.Seconds(), countsByNode(byNode, nodes))
	fmt.Printf("# l2many: cut %s (owned %d addresses): %d of them announced (gratuitous ARP or reply seen by the client) by another node within %s (%s); cut -> first %d ms, p50 %d ms, p99 %d ms, last %d ms\n",
		victim, len(victimAddrs), len(lat), manyTakeoverBound, countsByNode2(takers, survivors), ms(pct(lat, 0)), ms(pct(lat, 0.5)), ms(pct(lat, 0.99)), ms(pct(lat, 1)))
	fmt.Printf("# l2_failover_1000_p50_ms=%d\n", ms(pct(lat, 0.5)))
	fmt.Printf("# l2many takeover CPU in the %s after the cut: %s; the same survivors in %s with no failure just before: %.2f CPU-s (measured after waiting %.0f s for the three speakers to settle: %.2f CPU-s together in the last %s)\n",
		manyCutCPU, ticksByNode(cpu0, cpu1, survivors), manyCutCPU, sumTicks(base0, base1)/clockTicks, settled.Seconds(), rate, manySettleWindow)
	fmt.Printf("# l2many after the link came back: the three speakers used %.2f CPU-s together in the %s after (%s); %s re-announced %d of its %d addresses in that time",
		sumTicks(back0, back1)/clockTicks, manyBackCPU, ticksByNode(back0, back1, nodes), victim, len(takenBack), len(victimAddrs))
	if len(takenBack) > 0 {
		fmt.Printf(", the last %d ms after the link came back (hold-down %s)", ms(pct(takenBack, 1)), l2HoldDown)
	}
	stepBacks := 0
	scanSpeakerLogs(l, nodes, tRestore, tRestore.Add(manyBackCPU), func(msg string, _ map[string]any) {
		if strings.HasPrefix(msg, "stepping back") {
			stepBacks++
		}
	})
	fmt.Printf("; speakers that stepped back meanwhile (dropping every address): %d\n", stepBacks)
	if drops > 0 {
		fmt.Printf("# l2many: the client's ARP socket dropped %d packets (timings may be late)\n", drops)
	}
	var failed error
	if len(lat) < len(victimAddrs) || len(lat) == 0 {
		fmt.Printf("l2_failover_1000_last_ms=none\n# l2_failover_1000_last_ms: %d of %d addresses were not announced by another node within %s\n", len(victimAddrs)-len(lat), len(victimAddrs), manyTakeoverBound)
		failed = fmt.Errorf("%d of %s's %d addresses were not announced by another node within %s of the cut", len(victimAddrs)-len(lat), victim, len(victimAddrs), manyTakeoverBound)
	} else {
		fmt.Printf("l2_failover_1000_last_ms=%d\n", ms(pct(lat, 1)))
	}
	fmt.Printf("l2_takeover_cpu_s=%.2f\n", sumTicks(cpu0, cpu1)/clockTicks)
	return failed
}

// manySettle waits until the speakers' start-up work is done: until
// together they use less than manySettleCPU CPU-seconds in
// manySettleWindow, or about as much as in the window before (within 20%:
// what they do at rest), at most manySettleMax. It returns how long it
// waited and their CPU in the last window.
func manySettle(ctx context.Context, l *lab.Lab, nodes []string) (time.Duration, float64, error) {
	start := time.Now()
	prev := -1.0
	for {
		a, err := speakerTicks(l, nodes)
		if err != nil {
			return 0, 0, err
		}
		if err := sleep(ctx, manySettleWindow); err != nil {
			return 0, 0, err
		}
		b, err := speakerTicks(l, nodes)
		if err != nil {
			return 0, 0, err
		}
		used := sumTicks(a, b) / clockTicks
		if used < manySettleCPU || (prev >= 0 && used <= 1.2*prev+0.05 && used >= 0.8*prev-0.05) || time.Since(start) >= manySettleMax {
			return time.Since(start), used, nil
		}
		prev = used
	}
}

// labCPU is the CPU-seconds the lab's main processes used so far, most first.
func labCPU(l *lab.Lab) string {
	by := map[string]float64{}
	names := []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "herald-controller"}
	for _, n := range l.Nodes {
		names = append(names, "kube-proxy-"+n.Name, lab.SpeakerName(n.Name))
	}
	for _, name := range names {
		p, ok := l.Proc(name)
		if !ok || !p.Alive() {
			continue
		}
		if t, err := procTicks(p.PID); err == nil {
			for _, n := range l.Nodes {
				name = strings.TrimSuffix(name, "-"+n.Name)
			}
			by[name] += float64(t) / clockTicks
		}
	}
	sorted := slices.SortedFunc(maps.Keys(by), func(a, b string) int { return cmpFloat(by[b], by[a]) })
	var parts []string
	for _, n := range sorted {
		parts = append(parts, fmt.Sprintf("%s %.0f", n, by[n]))
	}
	return strings.Join(parts, ", ") + " CPU-s (kube-proxy and speakers: the three nodes together)"
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// manyService is the i-th Service: type LoadBalancer, externalTrafficPolicy
// Cluster, selecting the app=many pods; the controller picks its address.
func manyService(i int) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: manyNS, Name: fmt.Sprintf("many-%04d", i)},
		Spec: corev1.ServiceSpec{
			Type:                  corev1.ServiceTypeLoadBalancer,
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyCluster,
			// 3,000 NodePorts would not fit the default range (30000-32767).
			AllocateLoadBalancerNodePorts: new(false),
			Selector:                      map[string]string{"app": "many"},
			Ports:                         []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
}

// manySweepUntil asks for every address by ARP until each is answered by
// exactly one node, then sweeps once more over all of them and returns who
// answered each in that last sweep.
func manySweepUntil(ctx context.Context, tap *arpTap, addrs []netip.Addr, bound time.Duration) (map[netip.Addr]string, error) {
	end := time.Now().Add(bound)
	pending := addrs
	final := false
	for {
		owners, err := tap.sweep(ctx, pending)
		if err != nil {
			return nil, err
		}
		var missing []netip.Addr
		var why []string
		for _, a := range pending {
			if len(owners[a]) != 1 {
				missing = append(missing, a)
				if len(why) < 5 {
					why = append(why, fmt.Sprintf("%s answered by %v", a, owners[a]))
				}
			}
		}
		if final && len(missing) == 0 {
			out := map[netip.Addr]string{}
			for a, o := range owners {
				out[a] = o[0]
			}
			return out, nil
		}
		if len(missing) == 0 {
			final, pending = true, addrs
			continue
		}
		if time.Now().After(end) {
			return nil, fmt.Errorf("%d of %d addresses are not answered by exactly one node after %s (e.g. %s)", len(missing), len(addrs), bound, strings.Join(why, "; "))
		}
		if final {
			fmt.Fprintf(os.Stderr, "l2many: last sweep: %d addresses not answered by exactly one node (e.g. %s); sweeping again\n", len(missing), strings.Join(why, "; "))
		}
		final, pending = false, missing
		if err := sleep(ctx, time.Second); err != nil {
			return nil, err
		}
	}
}

// countsByNode is "node1 1003, node2 995, node3 1002".
func countsByNode(by map[string][]netip.Addr, nodes []string) string {
	m := map[string]int{}
	for n, a := range by {
		m[n] = len(a)
	}
	return countsByNode2(m, nodes)
}

func countsByNode2(m map[string]int, nodes []string) string {
	var parts []string
	for _, n := range nodes {
		parts = append(parts, fmt.Sprintf("%s %d", n, m[n]))
	}
	for _, n := range slices.Sorted(maps.Keys(m)) {
		if !slices.Contains(nodes, n) {
			parts = append(parts, fmt.Sprintf("%s %d", n, m[n]))
		}
	}
	return strings.Join(parts, ", ")
}

// speakerPIDs are the processes of node's speaker.
func speakerPIDs(l *lab.Lab, node string) ([]int, error) {
	return l.SpeakerPIDs(node)
}

// speakerTicks reads utime+stime (clock ticks) of each node's speaker
// processes, threads included.
func speakerTicks(l *lab.Lab, nodes []string) (map[string]int64, error) {
	out := map[string]int64{}
	for _, n := range nodes {
		pids, err := speakerPIDs(l, n)
		if err != nil {
			return nil, err
		}
		if len(pids) == 0 {
			return nil, fmt.Errorf("no speaker process on %s", n)
		}
		for _, pid := range pids {
			t, err := procTicks(pid)
			if err != nil {
				return nil, fmt.Errorf("%s's speaker: %w", n, err)
			}
			out[n] += t
		}
	}
	return out, nil
}

// procTicks is utime+stime of a process (fields 14 and 15 of /proc/PID/stat).
func procTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return u + st, nil
}

func sumTicks(a, b map[string]int64) float64 {
	var d int64
	for n, t := range b {
		d += t - a[n]
	}
	return float64(d)
}

// ticksByNode is "node1 0.52, node2 0.61" CPU-seconds between a and b.
func ticksByNode(a, b map[string]int64, nodes []string) string {
	var parts []string
	for _, n := range nodes {
		parts = append(parts, fmt.Sprintf("%s %.2f", n, float64(b[n]-a[n])/clockTicks))
	}
	return strings.Join(parts, ", ") + " CPU-s"
}

// arpTap is a raw ARP socket on the client's eth0 that records, per
// address, every reply and gratuitous announcement it sees (a sender with a
// MAC of no node is recorded by its MAC). Its receive buffer is large, so
// a burst of thousands of announcements is not dropped.
type arpTap struct {
	c         *arp.Client
	conn      *packet.Conn
	macToNode map[string]string
	done      chan struct{}
	closing   atomic.Bool

	mu       sync.Mutex
	byIP     map[netip.Addr][]arpEvent
	dropped  uint64
	perIPCap int
}

func openTap(ns string, macToNode map[string]string) (*arpTap, error) {
	t := &arpTap{macToNode: macToNode, done: make(chan struct{}), byIP: map[netip.Addr][]arpEvent{}, perIPCap: 20000}
	err := lab.WithNS(ns, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		t.conn, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, nil)
		if err != nil {
			return err
		}
		rc, err := t.conn.SyscallConn()
		if err != nil {
			t.conn.Close()
			return err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20)
		}); err != nil || serr != nil {
			t.conn.Close()
			return cmpErr(err, serr)
		}
		t.c, err = arp.New(ifi, t.conn)
		if err != nil {
			t.conn.Close()
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ARP tap in %s: %w", ns, err)
	}
	go t.read()
	return t, nil
}

func cmpErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func (t *arpTap) read() {
	defer close(t.done)
	for {
		pkt, _, err := t.c.Read()
		if err != nil {
			// Only close ends the loop: a read that starts after Close
			// fails with EBADF, not net.ErrClosed.
			if t.closing.Load() {
				return
			}
			continue // a malformed packet
		}
		grat := pkt.SenderIP == pkt.TargetIP
		if pkt.Operation != arp.OperationReply && !(pkt.Operation == arp.OperationRequest && grat) {
			continue
		}
		mac := strings.ToLower(pkt.SenderHardwareAddr.String())
		node, ok := t.macToNode[mac]
		if !ok {
			node = mac
		}
		e := arpEvent{at: time.Now(), ip: pkt.SenderIP, node: node, gratuitous: grat}
		t.mu.Lock()
		if s := t.byIP[e.ip]; len(s) >= t.perIPCap {
			t.byIP[e.ip] = append(s[len(s)/2:], e) // keep the newer half
		} else {
			t.byIP[e.ip] = append(s, e)
		}
		t.mu.Unlock()
	}
}

func (t *arpTap) close() {
	t.closing.Store(true)
	t.c.Close()
	<-t.done
}

// drops is how many packets the socket dropped since it opened.
func (t *arpTap) drops() uint64 {
	if st, err := t.conn.Stats(); err == nil { // reading resets the kernel's counters
		t.mu.Lock()
		t.dropped += uint64(st.Drops)
		t.mu.Unlock()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dropped
}

// between returns the events for ip seen in [from, to).
func (t *arpTap) between(ip netip.Addr, from, to time.Time) []arpEvent {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.byIP[ip]
	i, _ := slices.BinarySearchFunc(s, from, func(e arpEvent, t time.Time) int { return e.at.Compare(t) })
	var out []arpEvent
	for _, e := range s[i:] {
		if !e.at.Before(to) {
			break
		}
		out = append(out, e)
	}
	return out
}

// request broadcasts one ARP request for ip.
func (t *arpTap) request(ip netip.Addr) error { return t.c.Request(ip) }

// sweep asks once for each address (paced, about 2,000 a second), waits
// 300 ms for late replies and returns, per address, the nodes that
// answered or announced it since the sweep began.
func (t *arpTap) sweep(ctx context.Context, addrs []netip.Addr) (map[netip.Addr][]string, error) {
	start := time.Now()
	for i, a := range addrs {
		if err := t.request(a); err != nil {
			return nil, err
		}
		if i%20 == 19 {
			if err := sleep(ctx, 10*time.Millisecond); err != nil {
				return nil, err
			}
		}
	}
	if err := sleep(ctx, 300*time.Millisecond); err != nil {
		return nil, err
	}
	now := time.Now()
	out := map[netip.Addr][]string{}
	for _, a := range addrs {
		var who []string
		for _, e := range t.between(a, start, now) {
			who = append(who, e.node)
		}
		slices.Sort(who)
		out[a] = slices.Compact(who)
	}
	return out, nil
}
