package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/heraldlb/herald/e2e/lab"
)

const (
	benchServices = 10000
	benchCreators = 48
	benchNS       = "bench"
	// benchPool holds 16,384 IPv4 addresses of the benchmarking range.
	benchPool = "pools:\n- name: bench\n  addresses: [\"198.18.0.0/18\"]\n"
)

// benchController measures herald-controller, run as a process of a
// control-plane-only lab, against 10,000 LoadBalancer Services created as
// fast as the API server takes them: the time from the first create until
// every Service shows an address, the time the creates take, and the
// controller's peak RSS. Details that explain the numbers go to stderr.
func benchController(ctx context.Context) error {
	l, err := lab.Up(ctx, lab.Config{Prefix: "hbenchctl", ControlPlaneOnly: true})
	if err != nil {
		return err
	}
	defer l.Down()
	kube := l.Kube()
	if err := l.ApplyHeraldConfig(ctx, benchPool); err != nil {
		return err
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNS}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	ctl, err := l.StartController(ctx, "herald-controller", "--metrics-addr=127.0.0.1:7472")
	if err != nil {
		return err
	}
	if _, err := l.HTTPGetEventually(ctx, l.ControlPlaneNS(), "http://127.0.0.1:7472/readyz", 2*time.Minute); err != nil {
		return fmt.Errorf("herald-controller not ready (see %s): %w", l.LogPath("herald-controller"), err)
	}

	w, err := watchAllocations(ctx, kube)
	if err != nil {
		return err
	}
	defer w.stop()
	cpuBefore := processCPU(l)

	// The creators' client is not rate limited: the API server sets the pace.
	cfg, err := l.RESTConfig()
	if err != nil {
		return err
	}
	cfg.QPS = -1
	creator, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	var next atomic.Int64
	var mu sync.Mutex
	var failed error
	first := time.Now()
	w.setStart(first)
	var wg sync.WaitGroup
	for range benchCreators {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < benchServices && ctx.Err() == nil; i = next.Add(1) - 1 {
				if err := createBenchService(ctx, creator, int(i)); err != nil {
					mu.Lock()
					failed = cmp.Or(failed, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	created := time.Since(first)
	if failed != nil {
		return failed
	}
	allocated, err := w.waitAll(ctx, 15*time.Minute)
	if err != nil {
		return fmt.Errorf("%w (see %s)", err, l.LogPath("herald-controller"))
	}
	cpuAfter := processCPU(l)
	hwm, err := peakRSS(ctl.PID)
	if err != nil {
		return err
	}
	fmt.Printf("controller_10k_alloc_s=%.1f\n", allocated.Sub(first).Seconds())
	fmt.Printf("controller_10k_create_s=%.1f\n", created.Seconds())
	fmt.Printf("controller_peak_rss_mib=%.0f\n", hwm)

	w.report(os.Stderr, first)
	fmt.Fprintf(os.Stderr, "controller: the last address came %v after the last create\n", (allocated.Sub(first) - created).Round(time.Millisecond))
	events := map[string]int{}
	if list, err := kube.CoreV1().Events(benchNS).List(ctx, metav1.ListOptions{ResourceVersion: "0"}); err == nil {
		for _, ev := range list.Items {
			events[ev.Source.Component+" "+ev.Reason]++
		}
	}
	fmt.Fprintf(os.Stderr, "controller: %d status writes seen for %d Services; Events written so far (they trail the status): %v\n",
		w.modified.Load(), benchServices, events)
	fmt.Fprint(os.Stderr, "CPU seconds used from the first create until all allocated:")
	for _, name := range []string{"herald-controller", "kube-apiserver", "etcd", "kube-controller-manager"} {
		fmt.Fprintf(os.Stderr, " %s %.1f", name, cpuAfter[name]-cpuBefore[name])
	}
	fmt.Fprintln(os.Stderr)
	return nil
}

// createBenchService creates the i-th Service: SingleStack IPv4, no node
// ports (10,000 Services would need more than the default range has) and no
// selector (kube-controller-manager would otherwise make an EndpointSlice for
// each and, on two cores, take a third of the CPU the API server needs).
func createBenchService(ctx context.Context, kube kubernetes.Interface, i int) error {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc-%05d", i), Namespace: benchNS},
		Spec: corev1.ServiceSpec{
			Type:                          corev1.ServiceTypeLoadBalancer,
			AllocateLoadBalancerNodePorts: new(false),
			IPFamilyPolicy:                new(corev1.IPFamilyPolicySingleStack),
			IPFamilies:                    []corev1.IPFamily{corev1.IPv4Protocol},
			Ports:                         []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	for attempt := 0; ; attempt++ {
		_, err := kube.CoreV1().Services(benchNS).Create(ctx, s, metav1.CreateOptions{})
		switch {
		case err == nil, apierrors.IsAlreadyExists(err) && attempt > 0:
			return nil
		case attempt < 5 && (apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err)):
			time.Sleep(100 * time.Millisecond)
		default:
			return fmt.Errorf("create %s: %w", s.Name, err)
		}
	}
}

// allocations follows the bench namespace's Services and notes when each
// first shows an address.
type allocations struct {
	rw       *watchtools.RetryWatcher
	done     chan struct{}
	modified atomic.Int64

	mu      sync.Mutex
	start   time.Time
	seen    map[string]time.Time // Service -> first shown an address
	added   int
	last    time.Time       // when the last Service got its address
	samples []progressPoint // one a second
}

type progressPoint struct {
	at               time.Duration
	created, withIPs int
}

func watchAllocations(ctx context.Context, kube kubernetes.Interface) (*allocations, error) {
	list, err := kube.CoreV1().Services(benchNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	rw, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return kube.CoreV1().Services(benchNS).Watch(ctx, o)
		},
	})
	if err != nil {
		return nil, err
	}
	a := &allocations{rw: rw, done: make(chan struct{}), seen: map[string]time.Time{}}
	go func() {
		defer close(a.done)
		for ev := range rw.ResultChan() {
			s, ok := ev.Object.(*corev1.Service)
			if !ok {
				continue
			}
			a.mu.Lock()
			switch ev.Type {
			case watch.Added:
				a.added++
			case watch.Modified:
				a.modified.Add(1)
			}
			if _, ok := a.seen[s.Name]; !ok && len(s.Status.LoadBalancer.Ingress) > 0 {
				a.seen[s.Name] = time.Now()
				a.last = time.Now()
			}
			a.mu.Unlock()
		}
	}()
	go func() {
		for {
			select {
			case <-a.done:
				return
			case <-time.After(time.Second):
			}
			a.mu.Lock()
			if !a.start.IsZero() {
				a.samples = append(a.samples, progressPoint{time.Since(a.start), a.added, len(a.seen)})
			}
			a.mu.Unlock()
		}
	}()
	return a, nil
}

func (a *allocations) setStart(t time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.start = t
}

func (a *allocations) stop() {
	a.rw.Stop()
	<-a.done
}

// waitAll waits until every Service has shown an address and returns when
// the last one did.
func (a *allocations) waitAll(ctx context.Context, bound time.Duration) (time.Time, error) {
	deadline := time.Now().Add(bound)
	for {
		a.mu.Lock()
		n, last := len(a.seen), a.last
		a.mu.Unlock()
		if n >= benchServices {
			return last, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return time.Time{}, fmt.Errorf("only %d of %d Services have an address after %v", n, benchServices, bound)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// report prints how creation and allocation progressed, about ten lines.
func (a *allocations) report(out *os.File, first time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	step := max(1, len(a.samples)/10)
	fmt.Fprintln(out, "controller: seconds since the first create, Services created, Services with an address:")
	for i, p := range a.samples {
		if i%step == 0 || i == len(a.samples)-1 {
			fmt.Fprintf(out, "  %5.1f %6d %6d\n", p.at.Seconds(), p.created, p.withIPs)
		}
	}
	if len(a.samples) > 0 {
		at := a.last.Sub(first).Seconds()
		fmt.Fprintf(out, "controller: %.0f addresses a second on average\n", float64(len(a.seen))/at)
	}
}

// peakRSS is the process's high-water mark of resident memory, in MiB.
func peakRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("herald-controller exited before its peak RSS was read: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kib / 1024, err
		}
	}
	return 0, errors.New("no VmHWM in /proc/status")
}

// processCPU is the user+system CPU seconds of the lab's main processes.
func processCPU(l *lab.Lab) map[string]float64 {
	out := map[string]float64{}
	for _, name := range []string{"herald-controller", "kube-apiserver", "etcd", "kube-controller-manager"} {
		p, ok := l.Proc(name)
		if !ok {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 12 {
			utime, _ := strconv.ParseFloat(f[11], 64)
			stime, _ := strconv.ParseFloat(f[12], 64)
			out[name] = (utime + stime) / 100 // USER_HZ
		}
	}
	return out
}
