package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/arp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/heraldlb/herald/e2e/lab"
	"github.com/heraldlb/herald/speaker"
)

// The layer-2 benchmark (issue 5, "Benchmark"): a client sends an HTTP GET
// every 20 ms (200 ms timeout, a new connection each) to a Service with
// externalTrafficPolicy Local and a ready pod on every node, so the pod's
// answer names the node that owns the address.
const (
	l2Prefix     = "hbenchl2"
	l2NS         = "benchl2"
	l2HoldDown   = 5 * time.Second
	l2Every      = 20 * time.Millisecond
	l2GetTimeout = 200 * time.Millisecond
	l2Runs       = 10
	l2Announces  = 50
	// l2Budget bounds the whole measurement, lab bring-up included; runs
	// that would not fit are skipped (and said so).
	l2Budget = 10 * time.Minute
	// Estimates per run, used to stop early rather than overrun the budget.
	l2HardRunCost     = 25 * time.Second
	l2GracefulRunCost = 20 * time.Second
	l2AnnounceCost    = 60 * time.Second
	l2After           = 5 * time.Second // after_failover_ok_ratio window
	l2Settle          = 2 * time.Second // counted after a hand-back completes
)

// l2Config: one pool on the lab network; .200 for the failover Service,
// .101-.150 for the announce Services.
const l2Config = `pools:
- name: lan
  addresses: ["198.51.100.100-198.51.100.250"]
l2Advertisements:
- name: lan
  pools: [lan]
`

var (
	l2VIP          = netip.MustParseAddr("198.51.100.200")
	l2AnnounceBase = netip.MustParseAddr("198.51.100.101")
	// l2SpeakerFlags: default timings except the hold-down, which is short
	// so that each failback is measured in bounded time.
	l2SpeakerFlags = []string{"--metrics-addr=", "--hold-down=" + l2HoldDown.String()}
)

// benchL2 measures layer-2 failover, graceful handover, failback and
// announce latency in a 3-node lab with the controller and a speaker on
// every node. Per-run details go to stderr, the summary to stdout.
func benchL2(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, l2Budget)
	defer cancel()
	deadline, _ := ctx.Deadline()
	deadline = deadline.Add(-15 * time.Second) // leave time to tear down

	l, err := lab.Up(ctx, lab.Config{Prefix: l2Prefix})
	if err != nil {
		return err
	}
	defer func() {
		if err := l.Down(); err != nil {
			fmt.Fprintln(os.Stderr, "l2: lab down:", err)
		}
	}()
	b := &l2Bench{l: l, macToNode: map[string]string{}, url: "http://" + netip.AddrPortFrom(l2VIP, 80).String() + "/"}
	err = b.setup(ctx)
	if b.arp != nil {
		defer b.arp.close()
	}
	if err != nil {
		return err
	}
	fmt.Printf("# l2 speaker flags: %s (every other speaker setting at its default)\n", strings.Join(l2SpeakerFlags, " "))

	// A run that fails (the speakers never reach the expected state) is
	// reported, the speakers are restarted (after a goroutine dump) and the
	// remaining runs go on; the measurement then fails at the end.
	var failed []string
	var hard []l2HardResult
	for i := range l2Runs {
		if time.Until(deadline) < l2HardRunCost+l2Runs/2*l2GracefulRunCost+l2AnnounceCost {
			break
		}
		if err := b.steadyOrRepair(ctx); err != nil {
			return fmt.Errorf("before hard run %d: %w", i+1, err)
		}
		r, err := b.hardRun(ctx, i+1)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			failed = append(failed, fmt.Sprintf("hard run %d: %v", i+1, err))
			fmt.Fprintf(os.Stderr, "l2 hard %2d FAILED: %v\n", i+1, err)
			if err := b.repair(ctx); err != nil {
				return err
			}
			continue
		}
		hard = append(hard, r)
	}
	var graceful []l2GracefulResult
	for i := range l2Runs {
		if time.Until(deadline) < l2GracefulRunCost+l2AnnounceCost {
			break
		}
		if err := b.steadyOrRepair(ctx); err != nil {
			return fmt.Errorf("before graceful run %d: %w", i+1, err)
		}
		r, err := b.gracefulRun(ctx, i+1)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			failed = append(failed, fmt.Sprintf("graceful run %d: %v", i+1, err))
			fmt.Fprintf(os.Stderr, "l2 graceful %2d FAILED: %v\n", i+1, err)
			if err := b.repair(ctx); err != nil {
				return err
			}
			continue
		}
		graceful = append(graceful, r)
	}
	if len(hard) == 0 || len(graceful) == 0 {
		return fmt.Errorf("no successful runs (%d hard, %d graceful): %s", len(hard), len(graceful), strings.Join(failed, "; "))
	}
	if err := b.steadyOrRepair(ctx); err != nil {
		return fmt.Errorf("before announce: %w", err)
	}
	announce, err := b.announce(ctx)
	if err != nil {
		return fmt.Errorf("announce: %w", err)
	}

	// Summary.
	var failover []time.Duration
	afterOK, failbackLost := 1.0, 0
	var detect, react []time.Duration
	for _, r := range hard {
		failover = append(failover, r.failover)
		afterOK = min(afterOK, r.afterOK)
		failbackLost = max(failbackLost, r.failbackLost)
		if r.gone > 0 && r.answering > 0 {
			detect = append(detect, r.gone)
			react = append(react, r.answering-r.gone)
		}
	}
	var gap []time.Duration
	gracefulLost, restartLost := 0, 0
	for _, r := range graceful {
		gap = append(gap, r.gap)
		gracefulLost = max(gracefulLost, r.lost)
		restartLost = max(restartLost, r.restartLost)
	}
	if len(hard)+len(graceful)+len(failed) < 2*l2Runs {
		fmt.Printf("# l2 time was short: %d hard runs, %d graceful runs started (of %d each)\n", len(hard)+countPrefix(failed, "hard"), len(graceful)+countPrefix(failed, "graceful"), l2Runs)
	}
	if len(failed) > 0 {
		fmt.Printf("# l2 FAILED %d runs (the lines below cover the %d hard and %d graceful runs that completed): %s\n", len(failed), len(hard), len(graceful), strings.Join(failed, " | "))
	}
	fmt.Printf("# l2 hard failover over %d runs: min %d ms, max %d ms; cut -> new owner's memberlist declares the node gone: p50 %d ms, max %d ms; gone -> new owner answering: p50 %d ms, max %d ms\n",
		len(hard), ms(pct(failover, 0)), ms(pct(failover, 1)), ms(pct(detect, 0.5)), ms(pct(detect, 1)), ms(pct(react, 0.5)), ms(pct(react, 1)))
	fmt.Printf("# l2 graceful over %d runs: gap p50 %d ms, max %d ms; GETs lost: worst run %d; GETs lost while the restarted speaker took its address back: worst run %d\n",
		len(graceful), ms(pct(gap, 0.5)), ms(pct(gap, 1)), gracefulLost, restartLost)
	fmt.Printf("# l2 announce over %d Services: p50 %d ms, max %d ms (create returned -> first ARP reply or announcement seen by the client)\n",
		len(announce), ms(pct(announce, 0.5)), ms(pct(announce, 1)))
	fmt.Printf("l2_failover_p50_ms=%d\n", ms(pct(failover, 0.5)))
	fmt.Printf("l2_failover_p99_ms=%d\n", ms(pct(failover, 0.99)))
	fmt.Printf("l2_graceful_gap_ms=%d\n", ms(pct(gap, 1)))
	fmt.Printf("l2_after_failover_ok_ratio=%.3f\n", afterOK)
	fmt.Printf("l2_failback_lost=%d\n", failbackLost)
	fmt.Printf("l2_announce_p99_ms=%d\n", ms(pct(announce, 0.99)))
	if len(failed) > 0 {
		return fmt.Errorf("%d runs failed (see the # l2 FAILED line)", len(failed))
	}
	return nil
}

func countPrefix(s []string, prefix string) int {
	n := 0
	for _, x := range s {
		if strings.HasPrefix(x, prefix) {
			n++
		}
	}
	return n
}

// steadyOrRepair waits for the steady state; if it does not come, it
// repairs the speakers once and waits again.
func (b *l2Bench) steadyOrRepair(ctx context.Context) error {
	err := b.waitSteady(ctx)
	if err == nil {
		return nil
	}
	fmt.Fprintf(os.Stderr, "l2: %v\n", err)
	if err := b.repair(ctx); err != nil {
		return err
	}
	return b.waitSteady(ctx)
}

// repair makes every speaker print its goroutines (SIGQUIT: the Go runtime
// writes them to the speaker's log and exits), reports the goroutines that
// wait on a lock in Herald's code (a stuck speaker shows there), and starts
// the speakers again.
func (b *l2Bench) repair(ctx context.Context) error {
	for _, n := range b.nodes {
		proc, ok := b.l.Proc(lab.SpeakerName(n))
		if !ok {
			continue
		}
		if proc.Signal(syscall.SIGQUIT) == nil {
			for end := time.Now().Add(5 * time.Second); proc.Alive() && time.Now().Before(end); {
				if err := sleep(ctx, 20*time.Millisecond); err != nil {
					return err
				}
			}
			proc.Stop(time.Second)
		}
		waits := lockWaits(b.l.LogPath(lab.SpeakerName(n)))
		fmt.Fprintf(os.Stderr, "l2 repair: %s's speaker: %d goroutines wait on a lock in Herald's code (dump in %s)\n", n, len(waits), b.l.LogPath(lab.SpeakerName(n)))
		for _, w := range waits {
			fmt.Fprintf(os.Stderr, "l2 repair:   %s\n", w)
		}
		b.l.ForgetProcess(proc)
	}
	for _, n := range b.nodes {
		if _, err := b.l.StartSpeaker(ctx, n, l2SpeakerFlags...); err != nil {
			return err
		}
	}
	return nil
}

// lockWaits reads the last goroutine dump in a log and returns, for each
// goroutine blocked on a mutex with a Herald frame, its state and its
// Herald and memberlist frames (innermost first).
func lockWaits(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	i := strings.LastIndex(string(b), "SIGQUIT: quit")
	if i < 0 {
		return nil
	}
	var out []string
	for _, g := range strings.Split(string(b[i:]), "\n\n") {
		lines := strings.Split(strings.TrimSpace(g), "\n")
		head := lines[0]
		if !strings.HasPrefix(head, "goroutine ") || !strings.Contains(head, "Mutex") {
			continue
		}
		state := head[strings.Index(head, "[")+1 : strings.LastIndex(head, "]")]
		var frames []string
		herald := false
		for _, ln := range lines[1:] {
			if strings.HasPrefix(ln, "\t") || strings.HasPrefix(ln, "created by") {
				continue
			}
			if j := strings.LastIndex(ln, "("); j > 0 {
				ln = ln[:j]
			}
			switch {
			case strings.HasPrefix(ln, "github.com/heraldlb/herald/"):
				herald = true
				frames = append(frames, strings.TrimPrefix(ln, "github.com/heraldlb/herald/"))
			case strings.HasPrefix(ln, "github.com/hashicorp/memberlist."):
				frames = append(frames, strings.TrimPrefix(ln, "github.com/hashicorp/"))
			}
		}
		if herald {
			out = append(out, state+": "+strings.Join(frames, " < "))
		}
	}
	return out
}

type l2Bench struct {
	l         *lab.Lab
	nodes     []string
	macToNode map[string]string
	url       string
	owner     string    // the node that owns l2VIP in steady state
	arp       *arpWatch // the client's view of ARP on the wire
}

// setup starts Herald, a pod on every node and the Local Service.
func (b *l2Bench) setup(ctx context.Context) error {
	l := b.l
	if err := l.ApplyHeraldConfig(ctx, l2Config); err != nil {
		return err
	}
	if _, err := l.StartController(ctx, "herald-controller", "--leader-elect=false", "--metrics-addr="); err != nil {
		return err
	}
	for _, n := range l.Nodes {
		b.nodes = append(b.nodes, n.Name)
		mac, err := l.MAC(ctx, n.NS, "eth0")
		if err != nil {
			return err
		}
		b.macToNode[strings.ToLower(mac)] = n.Name
		if _, err := l.StartSpeaker(ctx, n.Name, l2SpeakerFlags...); err != nil {
			return err
		}
	}
	var err error
	if b.arp, err = openARP(l.ClientNS(), b.macToNode); err != nil {
		return err
	}
	for _, n := range b.nodes {
		if _, err := l.AddPod(ctx, lab.PodSpec{Namespace: l2NS, Name: "web-" + n, Node: n, Labels: map[string]string{"app": "web"}}); err != nil {
			return err
		}
	}
	svc := l2Service("web", l2VIP)
	svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	if _, err := l.Kube().CoreV1().Services(l2NS).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return err
	}
	if err := l.WaitReadyEndpoints(ctx, l2NS, "web", len(b.nodes), time.Minute); err != nil {
		return err
	}
	b.owner = speaker.Winner(b.nodes, l2VIP)
	return nil
}

// l2Service is a LoadBalancer Service for the app=web pods asking for addr.
func l2Service(name string, addr netip.Addr) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: l2NS, Name: name, Annotations: map[string]string{"herald.dev/ips": addr.String()}},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
}

// waitSteady waits until the elected owner has served every GET for 2 s
// and is the only node that answers ARP for the address.
func (b *l2Bench) waitSteady(ctx context.Context) error {
	p := b.probe(40 * time.Second)
	var answering []string
	_, ok := p.waitFor(ctx, 35*time.Second, func(s []l2Sample) (l2Sample, bool) {
		x, ok := steady(s, b.owner)
		if !ok {
			return x, false
		}
		var err error
		if answering, err = b.arp.answerers(ctx, l2VIP); err != nil || !slices.Equal(answering, []string{b.owner}) {
			return x, false
		}
		return x, true
	})
	s := p.finish()
	if !ok {
		return fmt.Errorf("no steady state within 35 s: the last second's %s, ARP answered by %v (want every GET served by %s, and only %s answering); %s",
			tally(s[max(0, len(s)-50):]), answering, b.owner, b.owner, b.speakerState())
	}
	return nil
}

// steady reports whether the GETs of the last 2 s (those surely finished)
// all went well via owner.
func steady(s []l2Sample, owner string) (l2Sample, bool) {
	cut := time.Now().Add(-l2GetTimeout)
	for i := len(s) - 1; i >= 0; i-- {
		if s[i].start.After(cut) {
			continue
		}
		if !s[i].ok || s[i].node != owner {
			return l2Sample{}, false
		}
		if cut.Sub(s[i].start) >= l2Settle {
			return s[i], true
		}
	}
	return l2Sample{}, false
}

type l2HardResult struct {
	failover     time.Duration // last success via the old owner -> first via the new one
	afterOK      float64
	failbackLost int
	// From the cut, read from the new owner's log: memberlist declares the
	// old owner gone; the new owner starts answering (0: not found).
	gone, answering time.Duration
}

// hardRun cuts the owner's link, waits for another node to serve, restores
// the link and waits for the owner to take its address back.
func (b *l2Bench) hardRun(ctx context.Context, run int) (l2HardResult, error) {
	var r l2HardResult
	owner := b.owner
	p := b.probe(time.Minute)
	defer p.finish()
	if err := sleep(ctx, lead()); err != nil {
		return r, err
	}
	tCut := time.Now()
	if err := b.l.CutLink(ctx, owner); err != nil {
		return r, err
	}
	restored := false
	defer func() {
		if !restored {
			_ = b.l.RestoreLink(context.Background(), owner)
		}
	}()
	first, ok := p.waitFor(ctx, 15*time.Second, firstOK(tCut, func(n string) bool { return n != owner }))
	if !ok {
		return r, fmt.Errorf("no GET served by another node within 15 s of cutting %s's link; after the cut: %s", owner, tally(p.since(tCut)))
	}
	if err := sleepUntil(ctx, first.start.Add(l2After+l2GetTimeout)); err != nil {
		return r, err
	}
	tRestore := time.Now()
	if err := b.l.RestoreLink(ctx, owner); err != nil {
		return r, err
	}
	restored = true
	back, ok := p.waitFor(ctx, l2HoldDown+20*time.Second, firstOK(tRestore, func(n string) bool { return n == owner }))
	if !ok {
		return r, fmt.Errorf("%s did not take %s back within %s of its link's return; since: %s; %s; %s", owner, l2VIP, l2HoldDown+20*time.Second, tally(p.since(tRestore)), b.arpState(ctx), b.speakerState())
	}
	if err := sleepUntil(ctx, back.start.Add(l2Settle+l2GetTimeout)); err != nil {
		return r, err
	}
	s := p.finish()

	last, ok := lastOK(s, first.start, owner)
	if !ok {
		return r, fmt.Errorf("no GET served by %s before the cut", owner)
	}
	r.failover = first.start.Sub(last.start)
	in := window(s, first.start, first.start.Add(l2After))
	r.afterOK = float64(countOK(in)) / float64(len(in))
	fb := window(s, tRestore, back.start.Add(l2Settle))
	r.failbackLost = len(fb) - countOK(fb)
	afterBack := window(s, back.start, back.start.Add(l2Settle))
	r.gone = logSince(b.l, first.node, tCut, "member gone", "node", owner)
	r.answering = logSince(b.l, first.node, tCut, "answering", "ip", l2VIP.String())
	garp := b.garp(first.node, tCut)
	garpBack := b.garp(owner, tRestore)
	rejoin := logSince(b.l, owner, tRestore, "member joined", "", "")
	takeBack := logSince(b.l, owner, tRestore, "answering", "ip", l2VIP.String())
	fmt.Fprintf(os.Stderr, "l2 hard %2d: %s -> %s failover %4d ms (cut -> last ok via old %4d ms, cut -> memberlist gone %s, -> answering %s, -> client sees its ARP %s, -> first ok via new %4d ms); after ok %d/%d; "+
		"back: link up -> rejoined %s, -> %s answering %s, -> its ARP %s, -> first ok via %s %d ms; lost %d of %d, %d served by others in the %s after\n",
		run, owner, first.node, ms(r.failover), ms(last.start.Sub(tCut)), msOrNone(r.gone), msOrNone(r.answering), garp, ms(first.start.Sub(tCut)),
		countOK(in), len(in), msOrNone(rejoin), owner, msOrNone(takeBack), garpBack, owner, ms(back.start.Sub(tRestore)),
		r.failbackLost, len(fb), len(afterBack)-countVia(afterBack, owner), l2Settle)
	if r.failbackLost > 0 {
		fmt.Fprintf(os.Stderr, "l2 hard %2d: failback failures: %s\n", run, failures(fb, tRestore))
	}
	return r, nil
}

type l2GracefulResult struct {
	gap         time.Duration
	lost        int
	restartLost int
}

// gracefulRun SIGTERMs the owner's speaker, waits for another node to
// serve, then restarts the speaker and waits for it to take its address back.
func (b *l2Bench) gracefulRun(ctx context.Context, run int) (l2GracefulResult, error) {
	var r l2GracefulResult
	owner := b.owner
	proc, ok := b.l.Proc(lab.SpeakerName(owner))
	if !ok {
		return r, fmt.Errorf("no speaker process on %s", owner)
	}
	p := b.probe(time.Minute)
	defer p.finish()
	if err := sleep(ctx, lead()); err != nil {
		return r, err
	}
	tTerm := time.Now()
	if err := proc.Signal(syscall.SIGTERM); err != nil {
		return r, err
	}
	restarted := false
	defer func() {
		if !restarted {
			b.l.ForgetProcess(proc)
			_, _ = b.l.StartSpeaker(context.Background(), owner, l2SpeakerFlags...)
		}
	}()
	first, ok := p.waitFor(ctx, 10*time.Second, firstOK(tTerm, func(n string) bool { return n != owner }))
	if !ok {
		return r, fmt.Errorf("no GET served by another node within 10 s of SIGTERM to %s's speaker; since: %s", owner, tally(p.since(tTerm)))
	}
	var exited time.Duration
	for end := time.Now().Add(5 * time.Second); proc.Alive() && time.Now().Before(end); {
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return r, err
		}
	}
	if proc.Alive() {
		return r, fmt.Errorf("%s's speaker still runs 5 s after SIGTERM", owner)
	}
	exited = time.Since(tTerm)
	if err := sleepUntil(ctx, first.start.Add(time.Second+l2GetTimeout)); err != nil {
		return r, err
	}
	b.l.ForgetProcess(proc)
	restarted = true
	tStart := time.Now()
	if _, err := b.l.StartSpeaker(ctx, owner, l2SpeakerFlags...); err != nil {
		return r, err
	}
	back, ok := p.waitFor(ctx, l2HoldDown+25*time.Second, firstOK(tStart, func(n string) bool { return n == owner }))
	if !ok {
		return r, fmt.Errorf("the restarted speaker on %s did not take %s back within %s; since: %s; %s; %s", owner, l2VIP, l2HoldDown+25*time.Second, tally(p.since(tStart)), b.arpState(ctx), b.speakerState())
	}
	if err := sleepUntil(ctx, back.start.Add(l2Settle+l2GetTimeout)); err != nil {
		return r, err
	}
	s := p.finish()

	last, ok := lastOK(s, first.start, owner)
	if !ok {
		return r, fmt.Errorf("no GET served by %s before SIGTERM", owner)
	}
	r.gap = first.start.Sub(last.start)
	term := window(s, time.Time{}, first.start.Add(time.Second))
	r.lost = len(term) - countOK(term)
	rs := window(s, tStart, back.start.Add(l2Settle))
	r.restartLost = len(rs) - countOK(rs)
	answering := logSince(b.l, first.node, tTerm, "answering", "ip", l2VIP.String())
	gone := logSince(b.l, owner, tTerm, "no longer answering", "ip", l2VIP.String())
	fmt.Fprintf(os.Stderr, "l2 graceful %2d: %s -> %s gap %3d ms (SIGTERM -> last ok via old %3d ms, -> %s answering %s, -> its ARP %s, -> %s no longer answering %s, -> first ok via new %3d ms, -> exited %d ms); lost %d; "+
		"restart -> first ok via %s %d ms (its ARP %s), lost %d of %d\n",
		run, owner, first.node, ms(r.gap), ms(last.start.Sub(tTerm)), first.node, msOrNone(answering), b.garp(first.node, tTerm), owner, msOrNone(gone),
		ms(first.start.Sub(tTerm)), ms(exited), r.lost, owner, ms(back.start.Sub(tStart)), b.garp(owner, tStart), r.restartLost, len(rs))
	if r.lost > 0 {
		fmt.Fprintf(os.Stderr, "l2 graceful %2d: failures: %s\n", run, failures(term, tTerm))
	}
	if r.restartLost > 0 {
		fmt.Fprintf(os.Stderr, "l2 graceful %2d: take-back failures: %s\n", run, failures(rs, tStart))
	}
	return r, nil
}

// announce creates l2Announces Services, one at a time, each asking for its
// own address and selecting the running pods, and times from the create
// call's return to the first ARP reply (or gratuitous announcement) for the
// address that the client sees on the wire, asking every 2 ms.
func (b *l2Bench) announce(ctx context.Context) ([]time.Duration, error) {
	// When the controller's address shows in each Service's status.
	w, err := b.l.Kube().CoreV1().Services(l2NS).Watch(ctx, metav1.ListOptions{LabelSelector: "bench=announce"})
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	var mu sync.Mutex
	allocated := map[string]time.Time{}
	go func() {
		for ev := range w.ResultChan() {
			svc, ok := ev.Object.(*corev1.Service)
			if !ok || len(svc.Status.LoadBalancer.Ingress) == 0 {
				continue
			}
			now := time.Now()
			mu.Lock()
			if _, ok := allocated[svc.Name]; !ok {
				allocated[svc.Name] = now
			}
			mu.Unlock()
		}
	}()

	var lat, alloc, speakerPart []time.Duration
	created := map[string]time.Time{}
	seen := map[string]time.Time{}
	viaGratuitous := 0
	addr := l2AnnounceBase
	for i := range l2Announces {
		name := fmt.Sprintf("announce-%02d", i)
		svc := l2Service(name, addr)
		svc.Labels = map[string]string{"bench": "announce"}
		if _, err := b.l.Kube().CoreV1().Services(l2NS).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
		t0 := time.Now()
		var got arpEvent
		for end := t0.Add(5 * time.Second); ; {
			if e, ok := b.arp.first(addr); ok {
				got = e
				break
			}
			if time.Now().After(end) {
				return nil, fmt.Errorf("no ARP reply for %s (Service %s) within 5 s of its creation", addr, name)
			}
			if err := b.arp.c.Request(addr); err != nil {
				return nil, err
			}
			if err := sleep(ctx, 2*time.Millisecond); err != nil {
				return nil, err
			}
		}
		lat = append(lat, max(0, got.at.Sub(t0)))
		if got.gratuitous {
			viaGratuitous++
		}
		created[name], seen[name] = t0, got.at
		addr = addr.Next()
	}
	if err := sleep(ctx, time.Second); err != nil { // the watch may lag the wire
		return nil, err
	}
	mu.Lock()
	for name, t0 := range created {
		if a, ok := allocated[name]; ok {
			alloc = append(alloc, a.Sub(t0))
			speakerPart = append(speakerPart, seen[name].Sub(a))
		}
	}
	mu.Unlock()
	fmt.Fprintf(os.Stderr, "l2 announce: create -> ARP p50 %d ms, p99 %d ms, max %d ms; first sighting a gratuitous announcement for %d of %d; create -> status address seen by a watch (the controller's part) p50 %d ms, max %d ms; status seen -> ARP (the speaker's part, watch lag included) p50 %d ms, max %d ms (%d seen)\n",
		ms(pct(lat, 0.5)), ms(pct(lat, 0.99)), ms(pct(lat, 1)), viaGratuitous, len(lat), ms(pct(alloc, 0.5)), ms(pct(alloc, 1)),
		ms(pct(speakerPart, 0.5)), ms(pct(speakerPart, 1)), len(alloc))
	fmt.Fprintf(os.Stderr, "l2 announce: latencies ms: %v\n", msList(lat))
	return lat, nil
}

// arpEvent is an ARP reply or gratuitous announcement the client saw.
type arpEvent struct {
	at         time.Time
	ip         netip.Addr
	node       string // the sender's node, by MAC ("" if none)
	gratuitous bool
}

// arpWatch is a raw ARP socket in the client namespace that records every
// reply and announcement it sees.
type arpWatch struct {
	c         *arp.Client
	macToNode map[string]string
	done      chan struct{}

	mu     sync.Mutex
	events []arpEvent
	firsts map[netip.Addr]arpEvent
}

func openARP(ns string, macToNode map[string]string) (*arpWatch, error) {
	w := &arpWatch{macToNode: macToNode, done: make(chan struct{}), firsts: map[netip.Addr]arpEvent{}}
	err := lab.WithNS(ns, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		w.c, err = arp.Dial(ifi)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ARP client in %s: %w", ns, err)
	}
	go w.read()
	return w, nil
}

func (w *arpWatch) read() {
	defer close(w.done)
	for {
		pkt, _, err := w.c.Read()
		if err != nil {
			return // closed
		}
		e := arpEvent{at: time.Now(), ip: pkt.SenderIP, gratuitous: pkt.Operation == arp.OperationRequest && pkt.SenderIP == pkt.TargetIP,
			node: w.macToNode[strings.ToLower(pkt.SenderHardwareAddr.String())]}
		if pkt.Operation != arp.OperationReply && !e.gratuitous {
			continue
		}
		w.mu.Lock()
		w.events = append(w.events, e)
		if _, ok := w.firsts[e.ip]; !ok {
			w.firsts[e.ip] = e
		}
		w.mu.Unlock()
	}
}

func (w *arpWatch) close() {
	w.c.Close()
	<-w.done
}

// first is the first reply or announcement seen for ip.
func (w *arpWatch) first(ip netip.Addr) (arpEvent, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e, ok := w.firsts[ip]
	return e, ok
}

// since returns the events for ip seen after t.
func (w *arpWatch) since(ip netip.Addr, t time.Time) []arpEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []arpEvent
	for _, e := range w.events {
		if e.ip == ip && e.at.After(t) {
			out = append(out, e)
		}
	}
	return out
}

// answerers asks once who has ip and returns the nodes that reply within 100 ms.
func (w *arpWatch) answerers(ctx context.Context, ip netip.Addr) ([]string, error) {
	t := time.Now()
	if err := w.c.Request(ip); err != nil {
		return nil, err
	}
	if err := sleep(ctx, 100*time.Millisecond); err != nil {
		return nil, err
	}
	var out []string
	for _, e := range w.since(ip, t) {
		if !e.gratuitous {
			out = append(out, cmp.Or(e.node, "?"))
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// firstAnnouncement is the first gratuitous ARP for ip from node after t.
func (w *arpWatch) firstAnnouncement(ip netip.Addr, node string, t time.Time) (time.Duration, bool) {
	for _, e := range w.since(ip, t) {
		if e.gratuitous && e.node == node {
			return e.at.Sub(t), true
		}
	}
	return 0, false
}

// garp tells when the client first saw node's gratuitous ARP for l2VIP after t.
func (b *l2Bench) garp(node string, t time.Time) string {
	if d, ok := b.arp.firstAnnouncement(l2VIP, node, t); ok {
		return fmt.Sprintf("%d ms", ms(d))
	}
	return "(none seen)"
}

// l2Sample is one GET of the client loop.
type l2Sample struct {
	start, end time.Time
	ok         bool
	node       string // the node whose pod answered
	err        string // why it failed
}

// l2Prober is the client loop: one GET every l2Every, each on a new
// connection with l2GetTimeout, for at most a bounded time.
type l2Prober struct {
	client *http.Client
	url    string

	mu      sync.Mutex
	samples []l2Sample

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

func (b *l2Bench) probe(limit time.Duration) *l2Prober {
	p := &l2Prober{client: lab.HTTPClient(b.l.ClientNS(), l2GetTimeout), url: b.url, stop: make(chan struct{}), done: make(chan struct{})}
	go p.run(limit)
	return p
}

func (p *l2Prober) run(limit time.Duration) {
	defer close(p.done)
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(l2Every)
	defer tick.Stop()
	for range int(limit / l2Every) {
		wg.Go(p.get)
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
	}
}

func (p *l2Prober) get() {
	s := l2Sample{start: time.Now()}
	resp, err := p.client.Get(p.url)
	if err != nil {
		s.err = errKind(err)
	} else {
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case rerr != nil:
			s.err = errKind(rerr)
		case resp.StatusCode != http.StatusOK:
			s.err = resp.Status
		default:
			s.ok = true
			for f := range strings.FieldsSeq(string(body)) {
				if n, found := strings.CutPrefix(f, "node="); found {
					s.node = n
				}
			}
		}
	}
	s.end = time.Now()
	p.mu.Lock()
	p.samples = append(p.samples, s)
	p.mu.Unlock()
}

// snapshot returns the finished GETs so far, by start time.
func (p *l2Prober) snapshot() []l2Sample {
	p.mu.Lock()
	s := slices.Clone(p.samples)
	p.mu.Unlock()
	slices.SortFunc(s, func(a, b l2Sample) int { return a.start.Compare(b.start) })
	return s
}

func (p *l2Prober) since(t time.Time) []l2Sample { return window(p.snapshot(), t, time.Now()) }

// finish stops the loop, waits for the GETs in flight and returns them all.
func (p *l2Prober) finish() []l2Sample {
	p.stopOnce.Do(func() { close(p.stop) })
	<-p.done
	return p.snapshot()
}

// waitFor polls the samples until cond finds one, for at most timeout.
func (p *l2Prober) waitFor(ctx context.Context, timeout time.Duration, cond func([]l2Sample) (l2Sample, bool)) (l2Sample, bool) {
	end := time.Now().Add(timeout)
	for time.Now().Before(end) {
		if s, ok := cond(p.snapshot()); ok {
			return s, true
		}
		if sleep(ctx, 10*time.Millisecond) != nil {
			break
		}
	}
	return cond(p.snapshot())
}

// firstOK finds the first successful GET started after t served by a node that matches.
func firstOK(t time.Time, match func(node string) bool) func([]l2Sample) (l2Sample, bool) {
	return func(s []l2Sample) (l2Sample, bool) {
		for _, x := range s {
			if x.ok && x.start.After(t) && match(x.node) {
				return x, true
			}
		}
		return l2Sample{}, false
	}
}

// lastOK finds the last successful GET via node started before t.
func lastOK(s []l2Sample, t time.Time, node string) (l2Sample, bool) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i].ok && s[i].node == node && s[i].start.Before(t) {
			return s[i], true
		}
	}
	return l2Sample{}, false
}

// window returns the samples started in [from, to].
func window(s []l2Sample, from, to time.Time) []l2Sample {
	var out []l2Sample
	for _, x := range s {
		if !x.start.Before(from) && !x.start.After(to) {
			out = append(out, x)
		}
	}
	return out
}

func countOK(s []l2Sample) int {
	n := 0
	for _, x := range s {
		if x.ok {
			n++
		}
	}
	return n
}

func countVia(s []l2Sample, node string) int {
	n := 0
	for _, x := range s {
		if x.ok && x.node == node {
			n++
		}
	}
	return n
}

// tally summarises samples: how many each node served, how many failed.
func tally(s []l2Sample) string {
	by := map[string]int{}
	for _, x := range s {
		if x.ok {
			by[x.node]++
		} else {
			by["failed"]++
		}
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(by)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, by[k]))
	}
	return fmt.Sprintf("%d GETs (%s)", len(s), strings.Join(parts, " "))
}

// failures lists the failed GETs: start (ms from t0), duration and error.
func failures(s []l2Sample, t0 time.Time) string {
	var parts []string
	for _, x := range s {
		if !x.ok {
			parts = append(parts, fmt.Sprintf("started +%d ms, failed after %d ms: %s", ms(x.start.Sub(t0)), ms(x.end.Sub(x.start)), x.err))
		}
	}
	return strings.Join(parts, "; ")
}

// errKind shortens a client error to its cause (timeout, reset, refused...).
func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed (EOF)"
	}
	return err.Error()
}

// arpState says which nodes answer ARP for l2VIP now.
func (b *l2Bench) arpState(ctx context.Context) string {
	who, err := b.arp.answerers(ctx, l2VIP)
	switch {
	case err != nil:
		return "ARP: " + err.Error()
	case len(who) == 0:
		return fmt.Sprintf("nobody answers ARP for %s (the client keeps its cached entry while TCP confirms it)", l2VIP)
	}
	return fmt.Sprintf("ARP for %s answered by %v", l2VIP, who)
}

// speakerState says, for each speaker, its last info-level log line and when
// it was written: a speaker that went silent while the others declared it
// gone is stuck.
func (b *l2Bench) speakerState() string {
	var parts []string
	for _, n := range b.nodes {
		last := "no log"
		if f, err := os.Open(b.l.LogPath(lab.SpeakerName(n))); err == nil {
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				var e map[string]any
				if json.Unmarshal(sc.Bytes(), &e) == nil && e["level"] != "debug" {
					last = fmt.Sprintf("%v %v %v%v", e["ts"], e["msg"], e["node"], e["ip"])
				}
			}
			f.Close()
		}
		parts = append(parts, n+"'s speaker last logged: "+strings.ReplaceAll(last, "<nil>", ""))
	}
	return strings.Join(parts, "; ")
}

// logSince returns how long after t the first line of node's speaker log
// with message msg (and field key == value, if key is set) was written, or 0.
func logSince(l *lab.Lab, node string, t time.Time, msg, key, value string) time.Duration {
	f, err := os.Open(l.LogPath(lab.SpeakerName(node)))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !strings.Contains(string(line), msg) {
			continue
		}
		var e map[string]any
		if json.Unmarshal(line, &e) != nil || e["msg"] != msg {
			continue
		}
		if key != "" && fmt.Sprint(e[key]) != value {
			continue
		}
		ts, _ := e["ts"].(string)
		at, err := time.Parse("2006-01-02T15:04:05.000Z0700", ts)
		// The log has millisecond precision: allow for the truncation.
		if err != nil || at.Before(t.Truncate(time.Millisecond)) {
			continue
		}
		return max(at.Sub(t), time.Microsecond)
	}
	return 0
}

// pct is the nearest-rank percentile q (0..1) of d (0 when empty); q=1 is
// the max, and with 10 values p99 is the max too.
func pct(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) int64 { return d.Round(time.Millisecond).Milliseconds() }

func msOrNone(d time.Duration) string {
	if d == 0 {
		return "(not in log)"
	}
	return fmt.Sprintf("%d ms", ms(d))
}

func msList(d []time.Duration) []int64 {
	out := make([]int64, len(d))
	for i, x := range d {
		out[i] = ms(x)
	}
	return out
}

// lead is how long the client runs before a run's event: half a second,
// plus a random part of a GET interval so events fall at any phase of the loop.
func lead() time.Duration {
	return 500*time.Millisecond + rand.N(l2Every)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func sleepUntil(ctx context.Context, t time.Time) error { return sleep(ctx, time.Until(t)) }
