package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/heraldlb/herald/e2e/lab"
)

// The layer-2 stress benchmark: the l2 bench's lab (3 nodes, the
// controller, a speaker per node with default timings but the short
// hold-down, the ETP Local Service "web" with a pod on every node), plus
// ten long-lived Services with ready endpoints whose owners are watched on
// the wire, then:
//
//   - stress: busy loops outside the lab (two per core), a Service created
//     or deleted every 100 ms, and each speaker in a cgroup with the CPU
//     limit of its manifest (100m when it sets none) as a CFS quota and its
//     request as its weight, under a parent weighing the node's CPUs (the
//     kubelet's kubepods and pod cgroups) — while nothing fails,
//     every change of the node answering for a long-lived address is a
//     false move; then hard failovers (the owner's link cut) under that load;
//   - with the load gone: the owner's kube-proxy killed (its rules left, and
//     its rules flushed), a foreign device claiming an owned address, and
//     partitions of the owner from the other nodes.
const (
	stressPrefix  = "hbenchl2s"
	stressChurnNS = "benchchurn"
	// stressSteady long-lived Services get 198.51.100.101 and on.
	stressSteady       = 10
	stressChurnEvery   = 100 * time.Millisecond
	stressChurnMax     = 50
	stressChurnMin     = 25
	stressChurnFlight  = 8 // API calls in flight at most; a tick finding that many is skipped (and counted)
	stressSampleEvery  = 200 * time.Millisecond
	stressDefaultDur   = 10 * time.Minute
	stressFailoverRuns = 5
	// stressFailoverBudget bounds the failover runs under load (the busy
	// loops end by themselves at the end of it); a short development
	// window (HERALD_BENCH_STRESS) gets half its length, 30 s at least.
	stressFailoverBudget = 5 * time.Minute
	stressKPPlainRuns    = 2
	stressKPRuns         = 5
	stressKPWait         = 15 * time.Second
	stressKPAfter        = 3 * time.Second // GETs watched after the address moved
	stressConflictRuns   = 5
	stressConflictWait   = 15 * time.Second
	stressConflictClear  = 60 * time.Second
	stressPartitionHold  = 20 * time.Second
	stressWatchEvery     = 20 * time.Millisecond
	// stressBusyEnv makes the bench binary a busy loop until the given
	// Unix time (nanoseconds); see init.
	stressBusyEnv = "HERALD_BENCH_BUSY_UNTIL"
	// stressBusyMax bounds any busy loop, whatever it was told.
	stressBusyMax = 30 * time.Minute
	// cfsPeriod is the kubelet's CFS period (cpu.cfs_period_us, 100 ms).
	cfsPeriod = 100000
	// defaultSpeakerCPU is the limit assumed when the manifest sets none.
	defaultSpeakerCPU = 100 // millicores
)

const conditionAddressConflict = "herald.dev/AddressConflict"

var stressSteadyBase = netip.MustParseAddr("198.51.100.101")

// init turns this process into one busy loop when stressBusyEnv is set:
// the bench starts its CPU hogs by running itself again. The loop ends at
// the time it was given (at most stressBusyMax from now), and the parent's
// death kills it (Pdeathsig).
func init() {
	v := os.Getenv(stressBusyEnv)
	if v == "" {
		return
	}
	ns, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		os.Exit(2)
	}
	end := time.Unix(0, ns)
	if limit := time.Now().Add(stressBusyMax); end.After(limit) {
		end = limit
	}
	for time.Now().Before(end) {
	}
	os.Exit(0)
}

func stressDuration() (time.Duration, error) {
	v := os.Getenv("HERALD_BENCH_STRESS")
	if v == "" {
		return stressDefaultDur, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("HERALD_BENCH_STRESS=%q: want a duration such as 60s", v)
	}
	return d, nil
}

// benchL2Stress: see the comment at the top of the file. A line that
// cannot be measured is printed as "none" with a "# " reason, the other
// lines are still measured, and the measurement fails at the end.
func benchL2Stress(ctx context.Context) error {
	dur, err := stressDuration()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, dur+stressFailoverBudget+12*time.Minute)
	defer cancel()

	tUp := time.Now()
	l, err := lab.Up(ctx, lab.Config{Prefix: stressPrefix})
	if err != nil {
		return err
	}
	defer func() {
		if err := l.Down(); err != nil {
			fmt.Fprintln(os.Stderr, "l2stress: lab down:", err)
		}
	}()
	if err := applySpeakerStateCRD(ctx, l); err != nil {
		return err
	}
	b := &l2Bench{l: l, macToNode: map[string]string{}, url: "http://" + netip.AddrPortFrom(l2VIP, 80).String() + "/"}
	err = b.setup(ctx)
	if b.arp != nil {
		defer b.arp.close()
	}
	if err != nil {
		return err
	}
	s := &stressBench{b: b, l: l, dur: dur}
	if s.tap, err = openTap(l.ClientNS(), b.macToNode); err != nil {
		return err
	}
	defer s.tap.close()
	if err := s.setup(ctx); err != nil {
		return err
	}
	fmt.Printf("# l2stress speaker flags: %s (every other speaker setting at its default)\n", strings.Join(l2SpeakerFlags, " "))

	var unmeasured []string
	note := func(line, why string) {
		fmt.Printf("%s=none\n# %s: %s\n", line, line, why)
		unmeasured = append(unmeasured, line+": "+why)
	}

	// Under load: false moves, then failovers.
	t0 := time.Now()
	st, err := s.stress(ctx)
	fmt.Fprintf(os.Stderr, "l2stress: setup took %.0f s, the load %.0f s\n", t0.Sub(tUp).Seconds(), time.Since(t0).Seconds())
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		note("l2_stress_false_moves", err.Error())
		note("l2_stress_failover_p99_ms", "the load could not be set up")
	} else {
		fmt.Printf("l2_stress_false_moves=%d\n", st.moves)
		if len(st.failover) == 0 {
			note("l2_stress_failover_p99_ms", fmt.Sprintf("no failover run under load completed (%s)", strings.Join(st.failed, " | ")))
		} else {
			fmt.Printf("l2_stress_failover_p99_ms=%d\n", ms(pct(st.failover, 0.99)))
			if len(st.failed) > 0 {
				unmeasured = append(unmeasured, "l2_stress_failover_p99_ms: "+strings.Join(st.failed, " | "))
			}
		}
	}

	phase := func(name string, t time.Time) {
		fmt.Fprintf(os.Stderr, "l2stress: %s took %.0f s\n", name, time.Since(t).Seconds())
	}
	// kube-proxy down, without load.
	t := time.Now()
	gap, why := s.kubeProxy(ctx)
	phase("kube-proxy runs", t)
	if why != "" {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		note("l2_kubeproxy_down_gap_ms", why)
	} else {
		fmt.Printf("l2_kubeproxy_down_gap_ms=%d\n", ms(gap))
	}

	// A foreign device claims an owned address.
	t = time.Now()
	d, why := s.conflict(ctx)
	phase("conflict runs", t)
	if why != "" {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		note("l2_conflict_detect_ms", why)
	} else {
		fmt.Printf("l2_conflict_detect_ms=%d\n", ms(d))
	}

	// Partitions.
	t = time.Now()
	d, why = s.partitions(ctx)
	phase("partitions", t)
	if why != "" {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		note("l2_partition_dual_answer_ms", why)
	} else {
		fmt.Printf("l2_partition_dual_answer_ms=%d\n", ms(d))
	}

	if len(unmeasured) > 0 {
		return fmt.Errorf("not measured (or not every run completed): %s", strings.Join(unmeasured, "; "))
	}
	return nil
}

type stressBench struct {
	b      *l2Bench
	l      *lab.Lab
	tap    *arpTap
	dur    time.Duration
	steady []netip.Addr // the long-lived Services' addresses
}

// setup adds the long-lived Services and the churn pods, and waits until
// each long-lived address is answered by exactly one node and the web
// Service is steady.
func (s *stressBench) setup(ctx context.Context) error {
	kube := s.l.Kube()
	a := stressSteadyBase
	for i := range stressSteady {
		svc := l2Service(fmt.Sprintf("steady-%02d", i), a)
		if _, err := kube.CoreV1().Services(l2NS).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return err
		}
		s.steady = append(s.steady, a)
		a = a.Next()
	}
	for _, n := range s.b.nodes {
		if _, err := s.l.AddPod(ctx, lab.PodSpec{Namespace: stressChurnNS, Name: "churn-" + n, Node: n, Labels: map[string]string{"app": "churn"}}); err != nil {
			return err
		}
	}
	if _, err := manySweepUntil(ctx, s.tap, s.steady, time.Minute); err != nil {
		return fmt.Errorf("long-lived Services: %w", err)
	}
	return s.b.waitSteady(ctx)
}

type stressResult struct {
	moves    int
	failover []time.Duration
	failed   []string
	skipped  int // runs not started: the load's time was up
}

// stress runs the load for s.dur while it watches the long-lived
// addresses, then the failover runs under the same load, then removes it.
func (s *stressBench) stress(ctx context.Context) (stressResult, error) {
	var r stressResult
	request, limit, cpuSrc, err := speakerCPU()
	if err != nil {
		return r, err
	}
	quota := max(limit*cfsPeriod/1000, 1000) // as the kubelet computes it (at least 1 ms)
	cg, err := newCPUCgroups(s.b.nodes, quota, cfsPeriod, request, int64(runtime.NumCPU())*1000)
	if err != nil {
		return r, err
	}
	defer func() {
		if err := cg.undo(); err != nil {
			fmt.Fprintln(os.Stderr, "l2stress: cgroups:", err)
		}
	}()
	pids := map[string][]int{}
	for _, n := range s.b.nodes {
		if pids[n], err = speakerPIDs(s.l, n); err != nil {
			return r, err
		}
		if err := cg.move(n, pids[n]); err != nil {
			return r, err
		}
	}
	hogs := 2 * runtime.NumCPU()
	failoverBudget := min(max(s.dur/2, 30*time.Second), stressFailoverBudget)
	busyEnd := time.Now().Add(s.dur + failoverBudget)
	busy, err := startBusy(hogs, busyEnd)
	defer busy.stop()
	if err != nil {
		return r, err
	}
	churn := startChurn(ctx, s.l, s.dur+failoverBudget)
	defer churn.stop()
	fmt.Printf("# l2stress load: %d busy loops outside the lab (2 per core, %d cores); a Service created or deleted every %s in %s (%d to %d alive, each selecting a ready pod on every node, address from the pool); each speaker in a cgroup (%s) with CPU quota %d us per %d us (%s)\n",
		hogs, runtime.NumCPU(), stressChurnEvery, stressChurnNS, stressChurnMin, stressChurnMax, cg.desc, quota, cfsPeriod, cpuSrc)
	fmt.Printf("# l2stress false-move window: %s (HERALD_BENCH_STRESS overrides the default %s); owners of %d long-lived Services (%s-%s, ready endpoints on every node) sampled by ARP from the client every %s\n",
		s.dur, stressDefaultDur, len(s.steady), s.steady[0], s.steady[len(s.steady)-1], stressSampleEvery)

	// False moves.
	thr0 := cg.throttled()
	cpu0, cpuErr := speakerTicks(s.l, s.b.nodes)
	tStart := time.Now()
	tr, err := s.watchOwners(ctx, s.dur)
	if err != nil {
		return r, err
	}
	tEnd := time.Now()
	thr1 := cg.throttled()
	cpu1, err := speakerTicks(s.l, s.b.nodes)
	cpuUsed := "not read: " + fmt.Sprint(errors.Join(cpuErr, err))
	if cpuErr == nil && err == nil {
		cpuUsed = ticksByNode(cpu0, cpu1, s.b.nodes)
	}
	r.moves = tr.moves
	lc := s.logCounts(tStart, tEnd)
	fmt.Printf("# l2stress false moves over %s: %d changes of the answering node seen on the wire (%d rounds of %d addresses: %d unanswered, %d answered by two or more nodes)%s; speakers' logs in the window: %d 'answering' for those addresses, %d 'member gone', %d 'stepping back', %d 'data path down', %d memberlist suspicions (each a probe that failed; the suspect refuted it in time unless a 'member gone' follows)\n",
		tEnd.Sub(tStart).Round(time.Second), tr.moves, tr.rounds, len(s.steady), tr.unanswered, tr.multi, tr.detail(), lc.answering, lc.gone, lc.stepBack, lc.dataPathDown, lc.suspicions)
	fmt.Printf("# l2stress churn in the window: %s; speakers' CFS throttling: %s; speakers' CPU in the window: %s\n", churn.summary(), throttleSummary(thr0, thr1, s.b.nodes), cpuUsed)
	for _, n := range s.b.nodes { // a speaker that restarted ran without its limit
		if now, err := speakerPIDs(s.l, n); err != nil || !slices.Equal(now, pids[n]) {
			fmt.Printf("# l2stress: %s's speaker is not the process put in the cgroup (now %v, was %v)\n", n, now, pids[n])
		}
	}

	// Failovers under the same load (a run starts only while the load
	// has time left for its failover part).
	for i := range stressFailoverRuns {
		if time.Until(busyEnd) < 15*time.Second {
			r.skipped = stressFailoverRuns - i
			break
		}
		if err := s.b.waitSteady(ctx); err != nil {
			if ctx.Err() != nil {
				return r, ctx.Err()
			}
			r.failed = append(r.failed, fmt.Sprintf("before run %d: %v", i+1, err))
			fmt.Fprintf(os.Stderr, "l2stress failover %d: %v\n", i+1, err)
			continue
		}
		if time.Until(busyEnd) < 10*time.Second {
			r.skipped = stressFailoverRuns - i
			break
		}
		hr, err := s.b.hardRun(ctx, i+1)
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
		if err != nil {
			r.failed = append(r.failed, fmt.Sprintf("run %d: %v", i+1, err))
			fmt.Fprintf(os.Stderr, "l2stress failover %d FAILED: %v\n", i+1, err)
			continue
		}
		r.failover = append(r.failover, hr.failover)
	}
	fmt.Printf("# l2stress hard failover under load (the owner's link cut): %d runs completed, %d failed, %d not started (the load's %s for them was up); ms: %v (last GET via the old owner -> first via another node, GETs every %s)\n",
		len(r.failover), len(r.failed), r.skipped, failoverBudget, msList(r.failover), l2Every)
	if len(r.failed) > 0 {
		fmt.Printf("# l2stress failover runs that failed: %s\n", strings.Join(r.failed, " | "))
	}
	fmt.Printf("# l2stress churn in all: %s\n", churn.summary())
	return r, nil
}

// ownerTrack follows who answers for each watched address.
type ownerTrack struct {
	rounds, unanswered, multi, moves int
	owner                            map[netip.Addr]string
	log                              []string
}

func (t *ownerTrack) detail() string {
	if len(t.log) == 0 {
		return ""
	}
	return "; moves: " + strings.Join(t.log[:min(len(t.log), 20)], ", ")
}

// watchOwners asks for every long-lived address every stressSampleEvery
// for d and counts the changes of the answering node: a round answered by
// exactly one node that is not the last node seen alone is a move (a
// round answered by none, or by several, changes nothing).
func (s *stressBench) watchOwners(ctx context.Context, d time.Duration) (*ownerTrack, error) {
	t := &ownerTrack{owner: map[netip.Addr]string{}}
	t0 := time.Now()
	tick := time.NewTicker(stressSampleEvery)
	defer tick.Stop()
	prev := time.Time{}
	for range int(d/stressSampleEvery) + 1 {
		now := time.Now()
		if !prev.IsZero() {
			for _, a := range s.steady {
				var who []string
				for _, e := range s.tap.between(a, prev, now) {
					who = append(who, e.node)
				}
				slices.Sort(who)
				who = slices.Compact(who)
				t.rounds++
				switch {
				case len(who) == 0:
					t.unanswered++
				case len(who) > 1:
					t.multi++
				default:
					if o := t.owner[a]; o != "" && o != who[0] {
						t.moves++
						t.log = append(t.log, fmt.Sprintf("%s %s->%s at +%.1fs", a, o, who[0], now.Sub(t0).Seconds()))
					}
					t.owner[a] = who[0]
				}
			}
		}
		if now.Sub(t0) >= d {
			break
		}
		prev = now
		for _, a := range s.steady {
			if err := s.tap.request(a); err != nil {
				return nil, err
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
	return t, nil
}

// logCounts counts, over every speaker's log between from and to, the
// 'answering' lines for the long-lived addresses (a node taking one over),
// and the lines that explain a false move: 'member gone', 'stepping
// back...', 'data path down...' and memberlist's suspicions.
func (s *stressBench) logCounts(from, to time.Time) (c logCounts) {
	watched := map[string]bool{}
	for _, a := range s.steady {
		watched[a.String()] = true
	}
	scanSpeakerLogs(s.l, s.b.nodes, from, to, func(msg string, e map[string]any) {
		switch {
		case msg == "answering" && watched[fmt.Sprint(e["ip"])]:
			c.answering++
		case msg == "member gone":
			c.gone++
		case strings.HasPrefix(msg, "stepping back"):
			c.stepBack++
		case strings.HasPrefix(msg, "data path down"):
			c.dataPathDown++
		case strings.Contains(msg, "memberlist: Suspect "):
			c.suspicions++
		}
	})
	return c
}

// logCounts are what the speakers logged in a window.
type logCounts struct {
	answering    int // 'answering' for a watched address
	gone         int // a member declared dead
	stepBack     int
	dataPathDown int
	suspicions   int // memberlist probes that failed
}

// scanSpeakerLogs calls each with every line (its message and fields) the
// speakers of nodes logged between from and to.
func scanSpeakerLogs(l *lab.Lab, nodes []string, from, to time.Time, each func(msg string, e map[string]any)) {
	for _, n := range nodes {
		f, err := os.Open(l.LogPath(lab.SpeakerName(n)))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var e map[string]any
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				continue
			}
			ts, _ := e["ts"].(string)
			at, err := time.Parse("2006-01-02T15:04:05.000Z0700", ts)
			if err != nil || at.Before(from.Truncate(time.Millisecond)) || at.After(to) {
				continue
			}
			msg, _ := e["msg"].(string)
			each(msg, e)
		}
		f.Close()
	}
}

// kubeProxy kills the owner's kube-proxy: first as is (its rules stay; in
// a comment), then with its rules flushed too (the line: worst of
// stressKPRuns of kill -> first GET answered by another node).
func (s *stressBench) kubeProxy(ctx context.Context) (time.Duration, string) {
	flush := [][]string{{"iptables", "-t", "nat", "-F"}, {"ip6tables", "-t", "nat", "-F"}}
	if s.l.ProxyMode == "nftables" {
		flush = [][]string{{"nft", "flush", "ruleset"}}
	}
	var flushDesc []string
	for _, f := range flush {
		flushDesc = append(flushDesc, strings.Join(f, " "))
	}
	var plain []string
	for i := range stressKPPlainRuns {
		r, err := s.kubeProxyRun(ctx, i+1, nil)
		if err != nil {
			plain = append(plain, fmt.Sprintf("run %d failed: %v", i+1, err))
			if ctx.Err() != nil {
				return 0, ctx.Err().Error()
			}
			continue
		}
		plain = append(plain, r.String())
	}
	fmt.Printf("# l2 kube-proxy killed (SIGKILL), its rules left in place (%s mode), GETs every %s for %s: %s\n", s.l.ProxyMode, l2Every, stressKPWait, strings.Join(plain, " | "))
	var gaps []time.Duration
	var runs []string
	why := ""
	for i := range stressKPRuns {
		r, err := s.kubeProxyRun(ctx, i+1, flush)
		if err != nil {
			why = fmt.Sprintf("run %d failed: %v", i+1, err)
			break
		}
		runs = append(runs, r.String())
		if !r.moved {
			why = fmt.Sprintf("run %d: no GET was answered by another node within %s of the kill (remaining runs skipped)", i+1, stressKPWait)
			break
		}
		gaps = append(gaps, r.firstOther)
	}
	fmt.Printf("# l2 kube-proxy killed and its rules flushed (%s): %s\n", strings.Join(flushDesc, "; "), strings.Join(runs, " | "))
	if why != "" {
		return 0, why
	}
	return pct(gaps, 1), ""
}

type kpResult struct {
	run             int
	owner, to       string
	moved           bool
	firstOther      time.Duration // kill -> first OK GET via another node
	lastOwner       time.Duration // kill -> last OK GET via the owner
	failed, sent    int
	longestNoAnswer time.Duration
	restartedSteady time.Duration // kube-proxy restarted -> steady again
	window          time.Duration // counted: from the kill to stressKPAfter after the move (or stressKPWait)
}

func (r kpResult) String() string {
	moved := fmt.Sprintf("not answered by another node within %s", stressKPWait)
	if r.moved {
		moved = fmt.Sprintf("kill -> first GET answered by %s %d ms", r.to, ms(r.firstOther))
	}
	return fmt.Sprintf("run %d (%s): %s; the last GET answered via %s started %+d ms from the kill; in the %d ms from the kill %d of %d GETs failed, longest stretch between answered GETs %d ms; kube-proxy restarted -> steady via %s again %d ms",
		r.run, r.owner, moved, r.owner, ms(r.lastOwner), ms(r.window), r.failed, r.sent, ms(r.longestNoAnswer), r.owner, ms(r.restartedSteady))
}

// kubeProxyRun kills the owner's kube-proxy (and runs flush in its
// namespace), watches GETs for stressKPWait, starts kube-proxy again and
// waits for the steady state.
func (s *stressBench) kubeProxyRun(ctx context.Context, run int, flush [][]string) (kpResult, error) {
	r := kpResult{run: run, owner: s.b.owner}
	if err := s.b.steadyOrRepair(ctx); err != nil {
		return r, err
	}
	owner := s.b.owner
	n, _ := s.l.Node(owner)
	p := s.b.probe(stressKPWait + 5*time.Second)
	defer p.finish()
	if err := sleep(ctx, lead()); err != nil {
		return r, err
	}
	tKill := time.Now()
	if err := s.l.StopKubeProxy(ctx, owner); err != nil {
		return r, err
	}
	restarted := false
	defer func() {
		if !restarted {
			_ = s.l.StartKubeProxy(context.Background(), owner)
		}
	}()
	for _, f := range flush {
		if _, err := s.l.Exec(ctx, n.NS, f...); err != nil {
			return r, err
		}
	}
	first, ok := p.waitFor(ctx, stressKPWait, firstOK(tKill, func(x string) bool { return x != owner }))
	end := tKill.Add(stressKPWait)
	if ok {
		r.moved, r.to, r.firstOther = true, first.node, first.start.Sub(tKill)
		end = first.start.Add(stressKPAfter)
	}
	if err := sleepUntil(ctx, end.Add(l2GetTimeout)); err != nil { // the GETs of the window finish
		return r, err
	}
	samples := p.finish()
	r.window = end.Sub(tKill)
	tStart := time.Now()
	restarted = true
	if err := s.l.StartKubeProxy(ctx, owner); err != nil {
		return r, err
	}
	in := window(samples, tKill, end)
	r.sent, r.failed = len(in), len(in)-countOK(in)
	if last, ok := lastOK(samples, end, owner); ok {
		r.lastOwner = last.start.Sub(tKill)
	}
	prev := tKill
	if last, ok := lastOK(samples, tKill, owner); ok {
		prev = last.start
	}
	for _, x := range in {
		if x.ok {
			r.longestNoAnswer = max(r.longestNoAnswer, x.start.Sub(prev))
			prev = x.start
		}
	}
	r.longestNoAnswer = max(r.longestNoAnswer, end.Sub(prev))
	if err := s.b.waitSteady(ctx); err != nil {
		return r, fmt.Errorf("after kube-proxy restarted: %w", err)
	}
	r.restartedSteady = time.Since(tStart) - l2Settle // waitSteady wants l2Settle of good GETs
	return r, nil
}

// conflict has a foreign device claim a long-lived Service's address and
// times, from the first announcement of the foreign MAC the client sees,
// until the Service shows the AddressConflict condition True; worst of
// stressConflictRuns.
func (s *stressBench) conflict(ctx context.Context) (time.Duration, string) {
	f, err := s.l.AddForeignHost(ctx, "foreign")
	if err != nil {
		return 0, "foreign host: " + err.Error()
	}
	defer s.l.RemoveForeignHost(context.Background(), f)
	var took []time.Duration
	var runs []string
	why := ""
	for i := range stressConflictRuns {
		// Each run claims another long-lived address, so a condition
		// that is slow to clear cannot carry over into the next run.
		addr, name := s.steady[i%len(s.steady)], fmt.Sprintf("steady-%02d", i%len(s.steady))
		if err := s.waitCondition(ctx, name, false, stressConflictClear); err != nil {
			why = fmt.Sprintf("before run %d: %v", i+1, err)
			break
		}
		tCall := time.Now()
		if err := s.l.ForeignClaim(ctx, f, addr); err != nil {
			why = fmt.Sprintf("run %d: %v", i+1, err)
			break
		}
		err := s.waitCondition(ctx, name, true, stressConflictWait)
		tSeen := time.Now()
		t0, onWire := tCall, false
		for _, e := range s.tap.between(addr, tCall, tSeen) {
			if e.node == f.MAC {
				t0, onWire = e.at, true
				break
			}
		}
		if rerr := s.l.ForeignRelease(ctx, f, addr); rerr != nil {
			why = fmt.Sprintf("run %d: %v", i+1, rerr)
			break
		}
		if err != nil {
			// Where it stopped: on the wire, in a speaker, or after.
			seen := "the client saw no announcement from the foreign MAC"
			if onWire {
				seen = fmt.Sprintf("the client saw the foreign MAC's announcement %d ms after the claim began", ms(t0.Sub(tCall)))
			}
			var logged []string
			for _, n := range s.b.nodes {
				if d := logSince(s.l, n, tCall, "a device that is no speaker answers for an address", "ip", addr.String()); d > 0 {
					logged = append(logged, fmt.Sprintf("%s after %d ms", n, ms(d)))
				}
			}
			if len(logged) == 0 {
				logged = []string{"none"}
			}
			why = fmt.Sprintf("run %d (%s, %s): %v; %s; speakers that logged the foreign claim: %s (remaining runs skipped)", i+1, addr, name, err, seen, strings.Join(logged, ", "))
			break
		}
		d := tSeen.Sub(t0)
		took = append(took, d)
		from := "the foreign MAC's first announcement seen by the client"
		if !onWire {
			from = "the claim (the client saw no announcement from the foreign MAC)"
		}
		tRel := time.Now()
		cleared := fmt.Sprintf("did not clear within %s of the release", stressConflictClear)
		if s.waitCondition(ctx, name, false, stressConflictClear) == nil {
			cleared = fmt.Sprintf("cleared %d ms after the release", ms(time.Since(tRel)))
		}
		runs = append(runs, fmt.Sprintf("run %d (%s, %s): %d ms from %s; %s", i+1, addr, name, ms(d), from, cleared))
	}
	fmt.Printf("# l2 address conflict (foreign host %s claims a long-lived Service's address in %s): %s\n", f.MAC, l2NS, strings.Join(runs, " | "))
	if why != "" {
		return 0, why
	}
	return pct(took, 1), ""
}

// waitCondition polls the Service every 20 ms until its AddressConflict
// condition is True (want) or not True (!want).
func (s *stressBench) waitCondition(ctx context.Context, name string, want bool, timeout time.Duration) error {
	end := time.Now().Add(timeout)
	state := "not read"
	for {
		svc, err := s.l.Kube().CoreV1().Services(l2NS).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			c := findCondition(svc.Status.Conditions, conditionAddressConflict)
			if (c != nil && c.Status == metav1.ConditionTrue) == want {
				return nil
			}
			state = "absent"
			if c != nil {
				state = fmt.Sprintf("%s (%s: %s)", c.Status, c.Reason, c.Message)
			}
		} else if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(end) {
			verb := "is not True"
			if !want {
				verb = "is still True"
			}
			return fmt.Errorf("condition %s %s after %s (it is %s)", conditionAddressConflict, verb, timeout, state)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

func findCondition(cs []metav1.Condition, t string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == t {
			return &cs[i]
		}
	}
	return nil
}

// partitions partitions the owner of l2VIP from the other nodes (both
// directions, then its outgoing packets, then its incoming), each for
// stressPartitionHold, and reports the longest time two or more nodes
// answered ARP for l2VIP (asked every stressWatchEvery from the client),
// from one second before each partition until the steady state after it
// healed.
func (s *stressBench) partitions(ctx context.Context) (time.Duration, string) {
	var worst time.Duration
	var runs []string
	why := ""
	for _, dir := range []lab.Direction{lab.Both, lab.Out, lab.In} {
		d, desc, err := s.partitionRun(ctx, dir)
		if err != nil {
			why = fmt.Sprintf("partition %s: %v", dir, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		worst = max(worst, d)
		runs = append(runs, desc)
	}
	fmt.Printf("# l2 partitions of %s's owner from the other nodes, %s each, ARP asked every %s: %s\n", l2VIP, stressPartitionHold, stressWatchEvery, strings.Join(runs, " | "))
	if why != "" {
		return 0, why
	}
	return worst, ""
}

func (s *stressBench) partitionRun(ctx context.Context, dir lab.Direction) (time.Duration, string, error) {
	if err := s.b.steadyOrRepair(ctx); err != nil {
		return 0, "", err
	}
	owner := s.b.owner
	var others []string
	for _, n := range s.b.nodes {
		if n != owner {
			others = append(others, n)
		}
	}
	w, err := s.l.WatchAnswers(ctx, l2VIP, stressWatchEvery)
	if err != nil {
		return 0, "", err
	}
	defer w.Stop()
	if err := sleep(ctx, time.Second); err != nil {
		return 0, "", err
	}
	tPart := time.Now()
	if err := s.l.Partition(ctx, owner, others, dir); err != nil {
		return 0, "", err
	}
	healed := false
	defer func() {
		if !healed {
			_ = s.l.Heal(context.Background(), owner)
		}
	}()
	if err := sleep(ctx, stressPartitionHold); err != nil {
		return 0, "", err
	}
	tHeal := time.Now()
	if err := s.l.Heal(ctx, owner); err != nil {
		return 0, "", err
	}
	healed = true
	steadyErr := s.b.waitSteady(ctx)
	tSteady := time.Now()
	w.Stop()
	if err := w.Err(); err != nil {
		return 0, "", err
	}
	spans := w.MultiSpans()
	var longest time.Duration
	if len(spans) > 0 {
		longest = spans[0]
	}
	during := s.answerers(w.Answerers(tPart, tHeal))
	after := s.answerers(w.Answerers(tHeal, tSteady))
	desc := fmt.Sprintf("%s (%s from %v): longest dual answer %d ms (%d spans); answers while partitioned %s, after the heal %s; heal -> steady %d ms",
		dir, owner, others, ms(longest), len(spans), during, after, ms(tSteady.Sub(tHeal)))
	if steadyErr != nil {
		return longest, desc, fmt.Errorf("%s; after the heal: %w", desc, steadyErr)
	}
	return longest, desc, nil
}

// answerers names the MACs of a count by node.
func (s *stressBench) answerers(by map[string]int) string {
	var parts []string
	for _, mac := range slices.Sorted(maps.Keys(by)) {
		name := mac
		if n, ok := s.b.macToNode[mac]; ok {
			name = n
		}
		parts = append(parts, fmt.Sprintf("%s %d", name, by[mac]))
	}
	if len(parts) == 0 {
		return "(none)"
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// applySpeakerStateCRD installs the SpeakerState custom resource
// (manifests/crd-speakerstates.yaml), as an install from the manifests
// has it: Herald run as processes has none, and without it the speakers
// publish no state, so the controller sets no Service condition from it
// (herald.dev/AddressConflict among them).
func applySpeakerStateCRD(ctx context.Context, l *lab.Lab) error {
	root, err := lab.ModuleRoot()
	if err != nil {
		return err
	}
	if out, err := l.Kubectl(ctx, "apply", "--server-side", "--field-manager=herald-bench", "-f", filepath.Join(root, "manifests", "crd-speakerstates.yaml")); err != nil {
		return fmt.Errorf("apply the SpeakerState CRD: %w: %s", err, out)
	}
	if out, err := l.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd/speakerstates.herald.dev"); err != nil {
		return fmt.Errorf("the SpeakerState CRD: %w: %s", err, out)
	}
	return nil
}

// speakerCPU reads the speaker container's CPU request and limit from
// manifests/speaker.yaml, in millicores. As in Kubernetes, a request that
// is not set is the limit; a limit that is not set is defaultSpeakerCPU.
func speakerCPU() (request, limit int64, src string, err error) {
	root, err := lab.ModuleRoot()
	if err != nil {
		return 0, 0, "", err
	}
	path := filepath.Join(root, "manifests", "speaker.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, "", err
	}
	for doc := range strings.SplitSeq(string(b), "\n---") {
		var ds appsv1.DaemonSet
		if err := yaml.Unmarshal([]byte(doc), &ds); err != nil {
			return 0, 0, "", fmt.Errorf("%s: %w", path, err)
		}
		if ds.Kind != "DaemonSet" {
			continue
		}
		for _, c := range ds.Spec.Template.Spec.Containers {
			if c.Name != "speaker" {
				continue
			}
			limit, src = defaultSpeakerCPU, fmt.Sprintf("no CPU limit in manifests/speaker.yaml: %dm assumed", defaultSpeakerCPU)
			if q, ok := c.Resources.Limits[corev1.ResourceCPU]; ok && !q.IsZero() {
				limit, src = q.MilliValue(), "limit cpu: "+q.String()
			}
			request = limit
			if q, ok := c.Resources.Requests[corev1.ResourceCPU]; ok && !q.IsZero() {
				request, src = q.MilliValue(), src+", request cpu: "+q.String()
			}
			return request, limit, src + " of manifests/speaker.yaml", nil
		}
	}
	return 0, 0, "", fmt.Errorf("%s: no DaemonSet with a container named speaker", path)
}

// cpuShares is the kubelet's cgroup v1 weight for millicores of CPU
// (MilliCPUToShares: 1024 per core, at least 2); cpuWeight is its cgroup v2
// equivalent (the kubelet's conversion of shares to cpu.weight).
func cpuShares(milli int64) int64 { return max(milli*1024/1000, 2) }
func cpuWeight(milli int64) int64 { return 1 + (cpuShares(milli)-2)*9999/262142 }

// cpuCgroups is a bench-owned parent cgroup with one child per node, set up
// as the kubelet sets up kubepods and a pod's cgroup: the parent weighs the
// node's CPUs (kubepods' cpu.shares is the node's allocatable CPU), each
// child weighs the speaker's CPU request and has its limit as a CFS quota.
// cgroup v2 (cpu.weight, cpu.max) where the cpu controller is on the
// unified hierarchy, else the v1 cpu controller (cpu.shares,
// cpu.cfs_quota_us, cpu.cfs_period_us).
type cpuCgroups struct {
	v2     bool
	mount  string            // the hierarchy's mount point
	parent string            // the bench's cgroup
	dirs   map[string]string // per node
	moved  map[int]string    // pid -> its cgroup before (absolute)
	desc   string
}

// newCPUCgroups makes the parent (weighing nodeMilli millicores) and a child
// per node (weighing podMilli, with quotaUs per periodUs).
func newCPUCgroups(nodes []string, quotaUs, periodUs, podMilli, nodeMilli int64) (*cpuCgroups, error) {
	c := &cpuCgroups{dirs: map[string]string{}, moved: map[int]string{}}
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil && slices.Contains(strings.Fields(string(b)), "cpu") {
		c.v2, c.mount = true, "/sys/fs/cgroup"
	} else if m := cgroupV1Mount("cpu"); m != "" {
		c.mount = m
	} else {
		return nil, errors.New("no cgroup v2 hierarchy with the cpu controller at /sys/fs/cgroup and no cgroup v1 cpu hierarchy mounted")
	}
	c.parent = filepath.Join(c.mount, fmt.Sprintf("herald-bench-%d", os.Getpid()))
	if err := os.Mkdir(c.parent, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	weigh := func(dir string, milli int64) error {
		if c.v2 {
			return writeFile(filepath.Join(dir, "cpu.weight"), strconv.FormatInt(cpuWeight(milli), 10))
		}
		return writeFile(filepath.Join(dir, "cpu.shares"), strconv.FormatInt(cpuShares(milli), 10))
	}
	if c.v2 {
		c.desc = fmt.Sprintf("cgroup v2 under %s (cpu.weight %d, as kubepods with %dm allocatable) with cpu.weight %d each",
			c.parent, cpuWeight(nodeMilli), nodeMilli, cpuWeight(podMilli))
		for _, d := range []string{c.mount, c.parent} {
			if err := writeFile(filepath.Join(d, "cgroup.subtree_control"), "+cpu"); err != nil {
				c.undo()
				return nil, err
			}
		}
	} else {
		c.desc = fmt.Sprintf("cgroup v1 under %s (cpu.shares %d, as kubepods with %dm allocatable; /sys/fs/cgroup is not cgroup2 with the cpu controller here) with cpu.shares %d each",
			c.parent, cpuShares(nodeMilli), nodeMilli, cpuShares(podMilli))
	}
	if err := weigh(c.parent, nodeMilli); err != nil {
		c.undo()
		return nil, err
	}
	for _, n := range nodes {
		d := filepath.Join(c.parent, n)
		if err := os.Mkdir(d, 0o755); err != nil {
			c.undo()
			return nil, fmt.Errorf("cgroup: %w", err)
		}
		c.dirs[n] = d
		var err error
		if c.v2 {
			err = writeFile(filepath.Join(d, "cpu.max"), fmt.Sprintf("%d %d", quotaUs, periodUs))
		} else {
			err = errors.Join(writeFile(filepath.Join(d, "cpu.cfs_period_us"), strconv.FormatInt(periodUs, 10)),
				writeFile(filepath.Join(d, "cpu.cfs_quota_us"), strconv.FormatInt(quotaUs, 10)))
		}
		if err == nil {
			err = weigh(d, podMilli)
		}
		if err != nil {
			c.undo()
			return nil, err
		}
	}
	return c, nil
}

// cgroupV1Mount is the mount point of the v1 hierarchy with controller.
func cgroupV1Mount(controller string) string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 3 || g[0] != "cgroup" {
			continue
		}
		if slices.Contains(strings.Split(g[2], ","), controller) {
			return f[4]
		}
	}
	return ""
}

// cgroupOf is pid's cgroup path (relative to the hierarchy's root).
func (c *cpuCgroups) cgroupOf(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if c.v2 && parts[0] == "0" && parts[1] == "" {
			return parts[2], nil
		}
		if !c.v2 && slices.Contains(strings.Split(parts[1], ","), "cpu") {
			return parts[2], nil
		}
	}
	return "", fmt.Errorf("pid %d: no cpu cgroup in /proc/%d/cgroup", pid, pid)
}

// move puts pids (every thread of each) into node's cgroup.
func (c *cpuCgroups) move(node string, pids []int) error {
	for _, pid := range pids {
		orig, err := c.cgroupOf(pid)
		if err != nil {
			return err
		}
		if err := writeFile(filepath.Join(c.dirs[node], "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return err
		}
		c.moved[pid] = filepath.Join(c.mount, orig)
		now, err := c.cgroupOf(pid)
		if err != nil || filepath.Join(c.mount, now) != c.dirs[node] {
			return fmt.Errorf("pid %d is in cgroup %q after the move, not %s (%v)", pid, now, c.dirs[node], err)
		}
	}
	return nil
}

// throttled reads, per node, how many periods its cgroup ran and how many
// of them it was throttled in.
func (c *cpuCgroups) throttled() map[string][2]int64 {
	out := map[string][2]int64{}
	for n, d := range c.dirs {
		b, err := os.ReadFile(filepath.Join(d, "cpu.stat"))
		if err != nil {
			continue
		}
		var v [2]int64
		for line := range strings.SplitSeq(string(b), "\n") {
			k, val, _ := strings.Cut(line, " ")
			x, _ := strconv.ParseInt(strings.TrimSpace(val), 10, 64)
			switch k {
			case "nr_periods":
				v[0] = x
			case "nr_throttled":
				v[1] = x
			}
		}
		out[n] = v
	}
	return out
}

func throttleSummary(a, b map[string][2]int64, nodes []string) string {
	var parts []string
	for _, n := range nodes {
		p, t := b[n][0]-a[n][0], b[n][1]-a[n][1]
		parts = append(parts, fmt.Sprintf("%s throttled in %d of %d periods", n, t, p))
	}
	return strings.Join(parts, ", ")
}

// undo moves every process back to where it was and removes the cgroups.
func (c *cpuCgroups) undo() error {
	var errs []error
	for pid, orig := range c.moved {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			continue
		}
		if err := writeFile(filepath.Join(orig, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			errs = append(errs, err)
		}
	}
	c.moved = map[int]string{}
	for _, d := range c.dirs {
		// Whatever else landed there (a child a speaker forked) goes to the root.
		if b, err := os.ReadFile(filepath.Join(d, "cgroup.procs")); err == nil {
			for _, f := range strings.Fields(string(b)) {
				_ = writeFile(filepath.Join(c.mount, "cgroup.procs"), f)
			}
		}
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	c.dirs = map[string]string{}
	if c.parent != "" {
		if err := os.Remove(c.parent); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func writeFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	return errors.Join(err, f.Close())
}

// busyLoops are CPU hogs in the root namespace and cgroup: this binary run
// again with stressBusyEnv, each a single busy loop that ends by itself
// at a given time, and is killed by stop (or when the bench dies).
type busyLoops struct {
	mu    sync.Mutex
	procs []*os.Process
	quit  chan struct{}
	done  chan struct{}
}

func startBusy(n int, until time.Time) (*busyLoops, error) {
	b := &busyLoops{quit: make(chan struct{}), done: make(chan struct{})}
	exe, err := os.Executable()
	if err != nil {
		close(b.done)
		return b, err
	}
	started := make(chan error, 1)
	// Pdeathsig fires when the thread that started a child ends: this
	// goroutine keeps its thread until stop.
	go func() {
		runtime.LockOSThread()
		defer close(b.done)
		for range n {
			cmd := exec.Command(exe)
			cmd.Env = append(os.Environ(), stressBusyEnv+"="+strconv.FormatInt(until.UnixNano(), 10), "GOMAXPROCS=1")
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
			if err := cmd.Start(); err != nil {
				started <- err
				<-b.quit
				return
			}
			b.mu.Lock()
			b.procs = append(b.procs, cmd.Process)
			b.mu.Unlock()
			go cmd.Wait()
		}
		started <- nil
		<-b.quit
	}()
	return b, <-started
}

// stop kills every busy loop by its PID. It may be called again.
func (b *busyLoops) stop() {
	b.mu.Lock()
	procs := b.procs
	b.procs = nil
	b.mu.Unlock()
	for _, p := range procs {
		_ = p.Kill()
	}
	select {
	case <-b.quit:
	default:
		close(b.quit)
	}
	<-b.done
}

// churner creates or deletes a Service in stressChurnNS every
// stressChurnEvery, keeping between stressChurnMin and stressChurnMax
// alive; each selects the app=churn pods (a ready pod on every node) and
// gets an address from the pool.
type churner struct {
	cancel context.CancelFunc
	done   chan struct{}
	wg     sync.WaitGroup

	creates, deletes, errs, skipped atomic.Int64
	mu                              sync.Mutex
	alive                           []string
	lastErr                         string
}

func startChurn(ctx context.Context, l *lab.Lab, limit time.Duration) *churner {
	ctx, cancel := context.WithTimeout(ctx, limit)
	c := &churner{cancel: cancel, done: make(chan struct{})}
	kube := l.Kube()
	var inFlight atomic.Int64
	seq := 0
	go func() {
		defer close(c.done)
		defer c.wg.Wait()
		tick := time.NewTicker(stressChurnEvery)
		defer tick.Stop()
		for range int(limit/stressChurnEvery) + 1 {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if inFlight.Load() >= stressChurnFlight {
				c.skipped.Add(1)
				continue
			}
			c.mu.Lock()
			n := len(c.alive)
			create := n < stressChurnMin || (n < stressChurnMax && rand.N(2) == 0)
			var name string
			if create {
				name = fmt.Sprintf("churn-%05d", seq)
				seq++
				c.alive = append(c.alive, name)
			} else {
				i := rand.N(n)
				name = c.alive[i]
				c.alive = slices.Delete(c.alive, i, i+1)
			}
			c.mu.Unlock()
			inFlight.Add(1)
			c.wg.Go(func() {
				defer inFlight.Add(-1)
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				var err error
				if create {
					_, err = kube.CoreV1().Services(stressChurnNS).Create(cctx, churnService(name), metav1.CreateOptions{})
					if err == nil {
						c.creates.Add(1)
					}
				} else {
					err = kube.CoreV1().Services(stressChurnNS).Delete(cctx, name, metav1.DeleteOptions{})
					if err == nil || apierrors.IsNotFound(err) {
						c.deletes.Add(1)
						err = nil
					}
				}
				if err != nil && ctx.Err() == nil {
					c.errs.Add(1)
					c.mu.Lock()
					c.lastErr = err.Error()
					c.mu.Unlock()
				}
			})
		}
	}()
	return c
}

func churnService(name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: stressChurnNS, Name: name},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": "churn"},
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
}

// stop ends the churn and waits for the calls in flight. It may be called again.
func (c *churner) stop() {
	c.cancel()
	<-c.done
}

func (c *churner) summary() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := fmt.Sprintf("%d creates, %d deletes, %d failed calls, %d ticks skipped (%d calls in flight), %d alive",
		c.creates.Load(), c.deletes.Load(), c.errs.Load(), c.skipped.Load(), stressChurnFlight, len(c.alive))
	if c.lastErr != "" {
		s += " (last error: " + c.lastErr + ")"
	}
	return s
}
