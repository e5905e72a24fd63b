package controller_test

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/heraldlb/herald/controller"
	"github.com/heraldlb/herald/e2e/lab"
)

// The torture tests run the real herald-controller binary as lab processes,
// kill and restart it while Services churn, and check on every Service update
// a watch sees that (a) no address is shown by two Services that may not share
// it and (b) no Service whose request did not change loses an address it showed.

// torturePools: "main" is big enough for every Service; "tight" (asked for by
// name) is always exhausted; "fixed" serves requested addresses only.
const torturePools = `
pools:
- name: main
  addresses: ["198.18.0.1-198.18.1.254", "2001:db8:70::1-2001:db8:70::1ff"]
- name: tight
  autoAssign: false
  addresses: ["198.18.4.1-198.18.4.6", "2001:db8:71::1-2001:db8:71::3"]
- name: fixed
  autoAssign: false
  addresses: ["198.18.8.1-198.18.8.40", "2001:db8:72::1-2001:db8:72::28"]
`

// tightSize is the number of addresses of each family in pool "tight".
var tightSize = map[bool]int{true: 6, false: 3} // by Is4

func inTight(a netip.Addr) bool {
	return netip.MustParsePrefix("198.18.4.0/29").Contains(a) || netip.MustParsePrefix("2001:db8:71::/125").Contains(a)
}

func TestRestartTorture(t *testing.T) {
	p := newProcEnv(t)
	start := time.Now()
	seed := tortureSeed(t)
	w := watchServices(t, p.env)
	r := &restarter{p: p, rnd: rand.New(rand.NewPCG(seed, 2)), flags: []string{"--leader-elect=false"}}
	if err := r.startOne(); err != nil {
		t.Fatal(err)
	}

	// The restarts fall at random points of the churn's progress (the API
	// server's pace varies a lot on a busy machine); churn is bounded in
	// operations and in time.
	limits := churnLimits{initial: 300, creates: 100, deletes: 80, edits: 200, retypes: 8}
	c := newChurn(p.env, rand.New(rand.NewPCG(seed, 1)))
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	churned := make(chan struct{})
	go func() {
		defer close(churned)
		c.run(ctx, limits)
	}()
	r.run(t, 10, c, limits.total(), churned)
	<-churned
	p.logf("churn and restarts done after %v", time.Since(start).Round(time.Millisecond))

	settle(t, p, w, 90*time.Second)
	w.check(t)
	if !r.cur.Alive() {
		t.Errorf("the last controller exited by itself; see %s", shared.LogPath(r.cur.Name))
	}
	t.Logf("seed %d: %d Services created (%d at first, in %v), %d LoadBalancers at the end, %d with addresses; "+
		"%d status updates watched (%d events); %d restarts (%d SIGKILL, %d SIGTERM; %d during churn); "+
		"%d edits (%d request changes, %d no-op touches), %d deletes, %d type changes; "+
		"%d times a Service holding an address gained one more though its request did not change; took %v",
		seed, c.created, limits.initial, c.initialTook.Round(time.Millisecond), w.liveLB(), w.withAddresses(), w.updates, w.events,
		r.kills+r.terms, r.kills, r.terms, r.duringChurn, c.edits+c.touches, c.edits, c.touches,
		c.deleted, c.retyped, len(w.gained()), time.Since(start).Round(time.Second))
	// A Service that gets a second address without losing one (a
	// PreferDualStack Service getting its other family once it is free)
	// loses nothing it showed; the first few are shown for the record.
	for _, g := range w.gained()[:min(len(w.gained()), 5)] {
		t.Log("gained:", g)
	}
}

func TestTwoReplicas(t *testing.T) {
	const lease = 4 * time.Second
	p := newProcEnv(t)
	start := time.Now()
	seed := tortureSeed(t)
	w := watchServices(t, p.env)
	rs := &replicas{p: p, procs: map[string]lab.Proc{}, flags: []string{"--leader-elect=true",
		"--leader-elect-lease-duration=" + lease.String(), "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=500ms"}}
	for range 2 {
		if err := rs.add(); err != nil {
			t.Fatal(err)
		}
	}

	c := newChurn(p.env, rand.New(rand.NewPCG(seed, 1)))
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	stopKeeping := rs.keep(t)
	c.run(ctx, churnLimits{initial: 100, creates: 40, deletes: 30, edits: 70, retypes: 3})
	cancel()
	settle(t, p, w, 60*time.Second)
	stopKeeping()

	// Kill the leader; the other replica must take the Lease and serve a new Service.
	rs.replaceExited(t)
	holder, leader := p.leader(t, rs.snapshot())
	p.logf("leader is replica %s (%s); SIGKILL", leader, holder)
	killed := time.Now()
	if err := p.stop(rs.snapshot()[leader], syscall.SIGKILL, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	rs.remove(leader)
	s := newService(p.env, "after-handover")
	if _, err := p.kube.CoreV1().Services(p.ns).Create(t.Context(), s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var tookLease, served time.Duration
	deadline := killed.Add(lease + 30*time.Second)
	for (tookLease == 0 || served == 0) && time.Now().Before(deadline) {
		if tookLease == 0 {
			if l, err := p.kube.CoordinationV1().Leases(p.ns).Get(t.Context(), "herald-controller", metav1.GetOptions{}); err == nil &&
				l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != holder && *l.Spec.HolderIdentity != "" {
				tookLease = time.Since(killed)
			}
		}
		if served == 0 {
			if s, err := p.kube.CoreV1().Services(p.ns).Get(t.Context(), "after-handover", metav1.GetOptions{}); err == nil && len(s.Status.LoadBalancer.Ingress) > 0 {
				served = time.Since(killed)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if tookLease == 0 || served == 0 {
		t.Fatalf("no handover within %v of killing the leader: Lease taken after %v, new Service served after %v (0: never); logs: %s",
			lease+30*time.Second, tookLease, served, p.logPaths())
	}
	// The standby takes an expired Lease at its next try (every retry
	// period), at most leaseDuration after the leader's last renewal; the new
	// leader then lists, restores and works. The margins allow for a busy machine.
	if limit := lease + 5*time.Second; tookLease > limit {
		t.Errorf("the standby took the Lease %v after the leader died, want at most %v", tookLease, limit)
	}
	if limit := lease + 15*time.Second; served > limit {
		t.Errorf("the new leader served a new Service %v after the old one died, want at most %v", served, limit)
	}
	_, newLeader := p.leader(t, rs.snapshot())
	p.logf("replica %s took over: Lease after %v, new Service served after %v", newLeader, tookLease.Round(time.Millisecond), served.Round(time.Millisecond))

	// A fresh standby joins; churn goes on.
	if err := rs.add(); err != nil {
		t.Fatal(err)
	}
	stopKeeping = rs.keep(t)
	ctx, cancel = context.WithTimeout(t.Context(), 20*time.Second)
	c.run(ctx, churnLimits{creates: 15, deletes: 10, edits: 25})
	cancel()
	settle(t, p, w, 60*time.Second)
	stopKeeping()
	w.check(t)
	t.Logf("seed %d: Lease taken %v and a new Service served %v after SIGKILL of the leader (lease %v); "+
		"%d Services created, %d status updates watched, %d edits (%d no-op touches), %d deletes, %d type changes; "+
		"%d replicas lost the Lease by themselves and were replaced; took %v",
		seed, tookLease.Round(time.Millisecond), served.Round(time.Millisecond), lease,
		c.created+1, w.updates, c.edits+c.touches, c.touches, c.deleted, c.retyped, len(rs.exits), time.Since(start).Round(time.Second))
	for _, e := range rs.exits {
		t.Log(e)
	}
}

// TestRestartAfterSharerEdited is the restart torture's finding made
// deterministic: two Services share an address; while no controller runs, the
// older one's request changes so that they may no longer share. The edited
// Service must move and the other keep the address.
func TestRestartAfterSharerEdited(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*corev1.Service)
	}{
		{"ports", withPorts(443)},
		{"sharing key", withAnnotation(controller.AnnotationSharingKey, "other")},
		{"selector of a Local Service", func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "elsewhere"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, twoPools)
			e.svc("edited", withAnnotation(controller.AnnotationSharingKey, "k"), withPorts(80), withLocal(), withSelector("shared"))
			e.waitIPs(e.ns, "edited", "198.51.100.10")
			time.Sleep(time.Second) // creation timestamps have second resolution: "edited" is older
			e.svc("kept", withAnnotation(controller.AnnotationSharingKey, "k"), withPorts(443), withLocal(), withSelector("shared"))
			e.waitIPs(e.ns, "kept", "198.51.100.10")
			e.stopController()
			err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
				s, err := e.kube.CoreV1().Services(e.ns).Get(t.Context(), "edited", metav1.GetOptions{})
				if err != nil {
					return err
				}
				tc.edit(s)
				_, err = e.kube.CoreV1().Services(e.ns).Update(t.Context(), s, metav1.UpdateOptions{})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			e.start()
			var edited, kept *corev1.Service
			for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				edited, _ = e.kube.CoreV1().Services(e.ns).Get(t.Context(), "edited", metav1.GetOptions{})
				kept, _ = e.kube.CoreV1().Services(e.ns).Get(t.Context(), "kept", metav1.GetOptions{})
				if edited != nil && kept != nil && (len(ips(edited)) != 1 || len(ips(kept)) != 1 || ips(edited)[0] != ips(kept)[0]) {
					break
				}
			}
			if got := ips(kept); !slices.Equal(got, []string{"198.51.100.10"}) {
				var evs []string
				for _, ev := range e.events(e.ns, "kept") {
					evs = append(evs, ev.Reason+": "+ev.Message)
				}
				t.Fatalf("the unedited Service moved from 198.51.100.10 to %v (the edited one shows %v); its Events: %q", got, ips(edited), evs)
			}
			e.waitIPs(e.ns, "edited", "198.51.100.11")
			e.stays(e.ns, "kept", 300*time.Millisecond, "198.51.100.10")
		})
	}
}

// tortureSeed returns the seed of this run (HERALD_TORTURE_SEED replays one).
func tortureSeed(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("HERALD_TORTURE_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("HERALD_TORTURE_SEED: %v", err)
		}
	}
	t.Logf("seed %d (replay with HERALD_TORTURE_SEED=%d)", seed, seed)
	return seed
}

// procEnv is a test namespace, holding the Services, the ConfigMap and the
// Lease, whose lb class herald-controller processes serve.
type procEnv struct {
	*env
	mu    sync.Mutex
	procs []lab.Proc // every process started, running or not
}

func newProcEnv(t *testing.T) *procEnv {
	t.Helper()
	if shared == nil {
		t.Skip("no lab: " + skipReason)
	}
	name := strings.ToLower(t.Name())
	p := &procEnv{env: &env{t: t, kube: shared.Kube(), ns: name, class: "herald.dev/" + name}}
	if _, err := controllerBinary(); err != nil {
		t.Fatal(err)
	}
	p.createNamespace(p.ns, nil)
	grantController(t, p.ns)
	p.setConfig(torturePools)
	t.Cleanup(func() {
		for _, pr := range p.all() {
			if pr.Alive() {
				pr.Stop(5 * time.Second)
			}
			shared.ForgetProcess(pr)
		}
		if t.Failed() {
			p.keepLogs()
		}
		_ = p.kube.CoreV1().Namespaces().Delete(context.Background(), p.ns, metav1.DeleteOptions{})
	})
	return p
}

func (p *procEnv) logf(format string, args ...any) {
	p.t.Logf("%s "+format, append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

func (p *procEnv) all() []lab.Proc {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.procs)
}

// controllerBinary builds herald-controller once per test binary: each
// go build relinks it, which takes seconds on a busy machine, and the
// torture test starts it eleven times.
var controllerBinary = sync.OnceValues(func() (string, error) {
	return shared.Build(context.Background(), "github.com/heraldlb/herald/cmd/herald-controller")
})

// controllerKubeconfig authenticates as the ServiceAccount herald-controller.
var controllerKubeconfig = sync.OnceValues(func() (string, error) {
	path, _, err := shared.ServiceAccountKubeconfig(context.Background(), "herald-system", "herald-controller")
	return path, err
})

// start runs herald-controller, as lab.StartController does, for this env's
// namespace (ConfigMap and Lease) and class, with the ServiceAccount
// herald-controller's permissions. Safe from any goroutine.
func (p *procEnv) start(suffix string, flags ...string) (lab.Proc, error) {
	bin, err := controllerBinary()
	if err != nil {
		return lab.Proc{}, err
	}
	kubeconfig, err := controllerKubeconfig()
	if err != nil {
		return lab.Proc{}, err
	}
	argv := append([]string{bin, "--kubeconfig=" + kubeconfig, "--namespace=" + p.ns, "--lb-class=" + p.class,
		"--metrics-addr=", "--workers=4"}, flags...)
	pr, err := shared.StartProcess(p.ns+"-"+suffix, shared.ControlPlaneNS(), argv...)
	if err != nil {
		return pr, err
	}
	p.mu.Lock()
	p.procs = append(p.procs, pr)
	p.mu.Unlock()
	return pr, nil
}

// stop sends sig and waits until the process is gone.
func (p *procEnv) stop(pr lab.Proc, sig syscall.Signal, grace time.Duration) error {
	if err := pr.Signal(sig); err != nil {
		return fmt.Errorf("%s: %w (it exited by itself; see %s)", pr.Name, err, shared.LogPath(pr.Name))
	}
	deadline := time.Now().Add(grace)
	for pr.Alive() {
		if time.Now().After(deadline) {
			pr.Stop(0)
			return fmt.Errorf("%s did not exit within %v of %v; see %s", pr.Name, grace, sig, shared.LogPath(pr.Name))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// leader waits for the Lease to name one of the replicas and returns the
// holder identity and the replica's name.
func (p *procEnv) leader(t *testing.T, replicas map[string]lab.Proc) (holder, name string) {
	t.Helper()
	var last string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		l, err := p.kube.CoordinationV1().Leases(p.ns).Get(t.Context(), "herald-controller", metav1.GetOptions{})
		if err == nil && l.Spec.HolderIdentity != nil {
			last = *l.Spec.HolderIdentity
			// The identity is <hostname>_<pid>; the replicas run in the
			// control-plane network namespace but share the PID namespace.
			if i := strings.LastIndexByte(last, '_'); i >= 0 {
				pid, _ := strconv.Atoi(last[i+1:])
				for name, pr := range replicas {
					if pr.PID == pid && pr.Alive() {
						return last, name
					}
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the Lease names no running replica (holder %q); logs: %s", last, p.logPaths())
	return "", ""
}

func (p *procEnv) logPaths() string {
	var out []string
	for _, pr := range p.all() {
		out = append(out, shared.LogPath(pr.Name))
	}
	return strings.Join(out, " ")
}

// keepLogs copies the controllers' logs out of the lab (whose directory goes
// when the lab does) for a failed run.
func (p *procEnv) keepLogs() {
	dir, err := os.MkdirTemp("", p.ns+"-logs-")
	if err != nil {
		return
	}
	for _, pr := range p.all() {
		src, err := os.Open(shared.LogPath(pr.Name))
		if err != nil {
			continue
		}
		dst, err := os.Create(filepath.Join(dir, pr.Name+".log"))
		if err == nil {
			_, _ = io.Copy(dst, src)
			dst.Close()
		}
		src.Close()
	}
	p.t.Logf("controller logs kept in %s", dir)
}

// restarter kills the controller at random points of the churn (mostly
// SIGKILL, every third time SIGTERM) and starts a new one after a short
// random downtime, during which churn goes on.
type restarter struct {
	p       *procEnv
	rnd     *rand.Rand
	flags   []string
	cur     lab.Proc
	started time.Time
	n       int
	// counts
	kills, terms, duringChurn int
}

func (r *restarter) startOne() error {
	r.n++
	pr, err := r.p.start(strconv.Itoa(r.n), r.flags...)
	r.cur, r.started = pr, time.Now()
	return err
}

// run restarts the controller times times, at random points of c's total
// operations; once churned is closed, only the controllers' lifetimes count.
func (r *restarter) run(t *testing.T, times int, c *churn, total int, churned <-chan struct{}) {
	points := make([]int, times)
	for i := range points {
		points[i] = total/20 + r.rnd.IntN(total*17/20)
	}
	slices.Sort(points)
	for i, point := range points {
		// Most controllers work a while before they die; some die while
		// still starting (syncing caches, restoring).
		life := time.Duration(1200+r.rnd.IntN(2000)) * time.Millisecond
		if r.rnd.IntN(10) < 3 {
			life = time.Duration(100+r.rnd.IntN(800)) * time.Millisecond
		}
		for int(c.progress.Load()) < point && !closed(churned) || time.Since(r.started) < life {
			time.Sleep(10 * time.Millisecond)
		}
		if !closed(churned) {
			r.duringChurn++
		}
		sig := syscall.SIGKILL
		if i%3 == 1 {
			sig = syscall.SIGTERM
		}
		lived := time.Since(r.started)
		if err := r.p.stop(r.cur, sig, 15*time.Second); err != nil {
			t.Error(err)
		}
		if sig == syscall.SIGKILL {
			r.kills++
		} else {
			r.terms++
		}
		down := time.Duration(r.rnd.IntN(1500)) * time.Millisecond
		r.p.logf("restart %d: %v at churn operation %d after %v, down for %v", i+1, sig, c.progress.Load(), lived.Round(time.Millisecond), down)
		time.Sleep(down)
		if err := r.startOne(); err != nil {
			t.Fatal(err)
		}
	}
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// replicas runs herald-controller replicas with leader election.
type replicas struct {
	p     *procEnv
	flags []string
	mu    sync.Mutex
	procs map[string]lab.Proc
	n     int
	exits []string // replicas that exited by themselves
}

func (r *replicas) add() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	name := fmt.Sprint("r", r.n)
	pr, err := r.p.start(name, r.flags...)
	if err != nil {
		return err
	}
	r.procs[name] = pr
	return nil
}

func (r *replicas) remove(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.procs, name)
}

func (r *replicas) snapshot() map[string]lab.Proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.procs)
}

// replaceExited starts a new replica for each that exited. A leader that
// cannot renew its Lease within the renew deadline (3 s here: a starved
// machine manages that) exits, as it must; the test keeps two replicas.
func (r *replicas) replaceExited(t *testing.T) {
	for name, pr := range r.snapshot() {
		if pr.Alive() {
			continue
		}
		r.remove(name)
		r.mu.Lock()
		r.exits = append(r.exits, fmt.Sprintf("replica %s exited at %s: %s", name, time.Now().Format("15:04:05.000"), lastLine(shared.LogPath(pr.Name))))
		r.mu.Unlock()
		if err := r.add(); err != nil {
			t.Error(err)
		}
	}
}

// keep replaces exited replicas until the returned func is called.
func (r *replicas) keep(t *testing.T) (stop func()) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			r.replaceExited(t)
			sleep(ctx, 250*time.Millisecond)
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

func lastLine(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines[len(lines)-1]) > 300 {
		return lines[len(lines)-1][:300]
	}
	return lines[len(lines)-1]
}
