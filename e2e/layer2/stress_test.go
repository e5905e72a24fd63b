package layer2_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/heraldlb/herald/e2e/lab"
	"github.com/heraldlb/herald/speaker"
)

// These tests break things under a served address and check that exactly
// one node answers for it whenever the speakers agree on their members,
// that an address goes to a node only while it can serve it, and that
// Herald neither announces nor keeps silent about an address a foreign
// device holds. Each measures what a client sees on the wire: who answers
// its ARP requests and neighbour solicitations (lab.AnswerWatch) and which
// of its GETs, one every 20 ms, fail. Every duration is logged as
// "measured: <name>=<ms>ms", the form the benchmark reports.

const (
	// holdDown is the speakers' --hold-down in the lab (e2e/overlays/lab).
	holdDown = 2 * time.Second
	// stressEvery is how often the client asks who has an address and
	// starts a GET.
	stressEvery = 20 * time.Millisecond
	// conditionConflict is the Service condition Herald sets while a
	// foreign device answers for one of the Service's addresses.
	conditionConflict = "herald.dev/AddressConflict"
	reasonConflict    = "AddressConflict"
)

func TestFreezeShorterThanSuspicion(t *testing.T) {
	l := needLab(t)
	vip := "198.51.100.212"
	app(t, l, "freezeshort", "web", vip, false, map[string]string{"a": "node1", "b": "node2", "c": "node3"})
	owner := settled(t, l, vip)
	mac := nodeMAC(t, owner)
	w := watch(t, l, vip)
	g := startGETs(t, l, vip)
	time.Sleep(300 * time.Millisecond)

	frozen := time.Now()
	if err := l.FreezeSpeaker(owner); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.ThawSpeaker(owner) })
	time.Sleep(150 * time.Millisecond)
	if err := l.ThawSpeaker(owner); err != nil {
		t.Fatal(err)
	}
	thawed := time.Now()
	time.Sleep(5 * time.Second)
	w.Stop()
	g.stop()

	// A frozen speaker answers nobody, and then its backlog: no other
	// node may answer, at any time.
	if got := w.Answerers(frozen, time.Time{}); len(got) != 1 || got[mac] == 0 {
		t.Errorf("after a 150 ms freeze of %s's speaker %s was answered by %s, want %s alone", owner, vip, names(got), owner)
	}
	after := w.Rounds(thawed.Add(100*time.Millisecond), time.Time{})
	if gap := silence(after, answeredBy(mac)); gap > maxQuiet {
		t.Errorf("in the 5 s after the thaw %s did not answer for %s for %v: %s", owner, vip, gap, summary(after))
	}
	measured(t, "freeze_short_gap", silence(w.Rounds(frozen, time.Time{}), answeredBy(mac)))
	if lost := g.failed(time.Time{}, time.Time{}); len(lost) > 0 {
		t.Errorf("%d of %d GETs lost across a 150 ms freeze of the owner's speaker: %s", len(lost), g.count(), failures(lost))
	}
}

// TestFreezeWithinTheGrace: a speaker frozen for longer than memberlist's
// suspicion, but shorter than the others' grace for a member whose host
// still answers, keeps its address: the others declare it dead, find its
// kernel accepting connections, and wait; it refutes when it thaws, and
// no other node ever answers.
func TestFreezeWithinTheGrace(t *testing.T) {
	l := needLab(t)
	vip := "198.51.100.219"
	owner, others, _, mac, _, w, g := scene(t, l, "freezegrace", vip)
	time.Sleep(300 * time.Millisecond)
	sizes := map[string]int64{}
	for _, n := range others {
		if fi, err := os.Stat(l.LogPath(lab.SpeakerName(n))); err == nil {
			sizes[n] = fi.Size()
		}
	}

	frozen := time.Now()
	if err := l.FreezeSpeaker(owner); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.ThawSpeaker(owner) })
	time.Sleep(850 * time.Millisecond)
	if err := l.ThawSpeaker(owner); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Second)
	w.Stop()
	g.stop()

	// The freeze must have been a death in memberlist's eyes, or this
	// test would prove nothing beyond TestFreezeShorterThanSuspicion.
	declared := 0
	for _, n := range others {
		b, err := os.ReadFile(l.LogPath(lab.SpeakerName(n)))
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.SplitSeq(string(b[min(sizes[n], int64(len(b))):]), "\n") {
			if strings.Contains(line, "member declared dead: asking its host") && strings.Contains(line, `"node":"`+owner+`"`) {
				declared++
			}
		}
	}
	if declared == 0 {
		t.Fatalf("no speaker declared %s dead during its 850 ms freeze (memberlist's suspicion ends at about 0.5 s)", owner)
	}
	if got := w.Answerers(frozen, time.Time{}); len(got) != 1 || got[mac] == 0 {
		t.Errorf("after an 850 ms freeze of %s's speaker (declared dead by %d speakers) %s was answered by %s, want %s alone", owner, declared, vip, names(got), owner)
	}
	measured(t, "freeze_grace_gap", silence(w.Rounds(frozen, time.Time{}), answeredBy(mac)))
	// The client's neighbour entry stays valid: the node's kernel (kube-
	// proxy's rules) serves the address while its speaker is frozen.
	if lost := g.failed(time.Time{}, time.Time{}); len(lost) > 0 {
		t.Errorf("%d of %d GETs lost across an 850 ms freeze of the owner's speaker: %s", len(lost), g.count(), failures(lost))
	}
}

func TestFreezeLongerThanSuspicion(t *testing.T) {
	l := needLab(t)
	vip := "198.51.100.213"
	owner, _, next, mac, nextMAC, w, g := scene(t, l, "freezelong", vip)
	time.Sleep(300 * time.Millisecond)

	frozen := time.Now()
	if err := l.FreezeSpeaker(owner); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.ThawSpeaker(owner) })
	takeover := waitAnswered(t, w, nextMAC, frozen, 3*time.Second).Sub(frozen)
	measured(t, "freeze_takeover", takeover)
	// memberlist's death (about 0.5 s) and the grace for a member whose
	// host still answers (0.6 s; a dead host is not waited for).
	if takeover > 2*time.Second {
		t.Errorf("%s took %s over %v after %s's speaker froze, want within 2 s", next, vip, takeover, owner)
	}
	time.Sleep(time.Until(frozen.Add(3 * time.Second)))
	if err := l.ThawSpeaker(owner); err != nil {
		t.Fatal(err)
	}
	thawed := time.Now()

	// The thawed speaker learns it was declared dead and steps back: the
	// new owner keeps answering through the hold-down, then hands back.
	back := waitSole(t, w, mac, thawed, 15*time.Second, time.Second).Sub(thawed)
	measured(t, "freeze_handback", back)
	if back < holdDown {
		t.Errorf("%s answered alone for %s again %v after its thaw, before the %v hold-down", owner, vip, back, holdDown)
	}
	held := w.Rounds(thawed, thawed.Add(holdDown-100*time.Millisecond))
	if gap := silence(held, answeredBy(nextMAC)); gap > maxQuiet {
		t.Errorf("in the hold-down after the thaw %s did not answer for %s for %v: %s", next, vip, gap, summary(held))
	}
	if n := count(held, func(r lab.Round) bool { return isSole(r, mac) }); n > 0 {
		t.Errorf("in the hold-down after the thaw %s answered alone for %s (%d of %d requests): %s", owner, vip, n, len(held), summary(held))
	}
	dual := dualFor(t, w, "freeze")
	if dual > time.Second {
		t.Errorf("two nodes answered for %s for %v, want at most 1 s", vip, dual)
	}
	w.Stop()
	g.stop()

	// GETs fail only in the failover window; later only connections in
	// flight when the address moved are reset.
	window := frozen.Add(1500 * time.Millisecond)
	in, late := g.failed(frozen, window), g.failed(window, time.Time{})
	measured(t, "freeze_outage", g.outage())
	t.Logf("lost: freeze_long=%d of %d GETs (%d in the failover window)", len(in)+len(late), g.count(), len(in))
	if len(in) > int(1500*time.Millisecond/stressEvery) {
		t.Errorf("%d GETs lost in the failover window: %s", len(in), failures(in))
	}
	if resets := count2(late, isReset); resets < len(late) || resets > maxResets {
		t.Errorf("%d GETs lost after the failover window, %d of them connections reset in flight (at most %d allowed): %s", len(late), resets, maxResets, failures(late))
	}
}

func TestKubeProxyDownMovesTheAddress(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	vip := "198.51.100.214"
	owner, _, next, mac, nextMAC, w, g := scene(t, l, "proxydown", vip)
	time.Sleep(300 * time.Millisecond)

	if err := l.StopKubeProxy(ctx, owner); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	t.Cleanup(func() { _ = l.StartKubeProxy(context.Background(), owner) })
	moved := waitAnswered(t, w, nextMAC, killed, 5*time.Second).Sub(killed)
	measured(t, "kubeproxy_down_move", moved)
	if moved > time.Second {
		t.Errorf("%s answered for %s %v after %s's kube-proxy died, want within 1 s", next, vip, moved, owner)
	}
	gone := waitSole(t, w, nextMAC, killed, 5*time.Second, time.Second).Sub(killed)
	measured(t, "kubeproxy_down_sole", gone)

	// kube-proxy can answer healthy before StartKubeProxy returns (and the
	// speaker, polling every 100 ms, see it): the hold-down is checked
	// from the start, the earliest it can count from.
	started := time.Now()
	if err := l.StartKubeProxy(ctx, owner); err != nil {
		t.Fatal(err)
	}
	healthy := time.Now()
	back := waitSole(t, w, mac, healthy, 15*time.Second, time.Second).Sub(healthy)
	measured(t, "kubeproxy_back", back)
	early := w.Rounds(started, started.Add(holdDown))
	if n := count(early, answeredBy(mac)); n > 0 {
		t.Errorf("%s answered %d requests for %s in the %v hold-down after its kube-proxy was healthy again: %s", owner, n, vip, holdDown, summary(early))
	}
	dual := dualFor(t, w, "kubeproxy")
	if dual > time.Second {
		t.Errorf("two nodes answered for %s for %v, want at most 1 s", vip, dual)
	}
	w.Stop()
	g.stop()
	lost := g.failed(time.Time{}, time.Time{})
	measured(t, "kubeproxy_outage", g.outage())
	t.Logf("lost: kubeproxy_down=%d of %d GETs", len(lost), g.count())
	if len(lost) > int(time.Second/stressEvery) {
		t.Errorf("%d GETs lost while %s's kube-proxy was down and back, want at most 1 s worth: %s", len(lost), owner, failures(lost))
	}
}

func TestForeignDeviceBeforeAssignment(t *testing.T) {
	l := needLab(t)
	f := foreignHost(t, l, "fdbefore")

	// A Service asks for addresses a foreign device holds: Herald never
	// answers for them and reports the conflict, naming the device.
	t.Run("requested", func(t *testing.T) {
		addrs := []string{"198.51.100.215", "2001:db8:1::215"}
		claim(t, l, f, addrs...)
		var ws []*lab.AnswerWatch
		for _, a := range addrs {
			ws = append(ws, watch(t, l, a))
		}
		ns := "fdrequested"
		app(t, l, ns, "web", strings.Join(addrs, ","), false, map[string]string{"a": "node1", "b": "node2"})
		created := time.Now()
		c := waitConflict(t, l, ns, metav1.ConditionTrue, f.MAC, 15*time.Second)
		measured(t, "foreign_requested_condition", time.Since(created))
		t.Logf("condition %s: %s: %s", conditionConflict, c.Reason, c.Message)
		waitServiceEvent(t, l, ns, "web", reasonConflict, corev1.EventTypeWarning, f.MAC)
		time.Sleep(3 * time.Second) // speakers had time to answer, had they been wrong
		for i, w := range ws {
			w.Stop()
			if got := w.Answerers(time.Time{}, time.Time{}); len(got) != 1 || got[f.MAC] == 0 {
				t.Errorf("%s (held by the foreign device %s) was answered by %s, want the device alone", addrs[i], f.MAC, names(got))
			}
		}
	})

	// A Service that asks for nothing would get the lowest free addresses,
	// which a foreign device holds: the controller gives it others.
	t.Run("allocated", func(t *testing.T) {
		ctx := t.Context()
		ns := "fdallocated"
		lowest := lowestFree(t, l)
		var addrs []string
		for _, a := range lowest {
			addrs = append(addrs, a.String())
		}
		claim(t, l, f, addrs...)
		var ws []*lab.AnswerWatch
		for _, a := range addrs {
			ws = append(ws, watch(t, l, a))
		}
		appWith(t, l, ns, "web", nil, map[string]string{"a": "node1", "b": "node3"})
		created := time.Now()
		got := waitIngressAvoids(t, l, ns, lowest, 20*time.Second)
		measured(t, "foreign_allocated_moved", time.Since(created))
		t.Logf("with %v held by %s the Service got %v", addrs, f.MAC, got)
		waitServiceEvent(t, l, ns, "web", reasonConflict, corev1.EventTypeWarning, f.MAC)
		for _, a := range got {
			vip := a.String()
			if _, err := l.HTTPGetSteady(ctx, l.ClientNS(), "http://"+net.JoinHostPort(vip, "80")+"/", 20*time.Second); err != nil {
				t.Fatalf("GET %s (the Service's new address): %v", vip, err)
			}
			g := startGETs(t, l, vip)
			time.Sleep(2 * time.Second)
			g.stop()
			if lost := g.failed(time.Time{}, time.Time{}); len(lost) > 0 {
				t.Errorf("%d of %d GETs to %s lost: %s", len(lost), g.count(), vip, failures(lost))
			}
		}
		for i, w := range ws {
			w.Stop()
			if got := w.Answerers(time.Time{}, time.Time{}); len(got) != 1 || got[f.MAC] == 0 {
				t.Errorf("%s (held by the foreign device %s) was answered by %s, want the device alone", addrs[i], f.MAC, names(got))
			}
		}
	})
}

func TestForeignDeviceAfterAssignment(t *testing.T) {
	l := needLab(t)
	f := foreignHost(t, l, "fdafter")
	ns := "fdafter"
	addrs := []string{"198.51.100.216", "2001:db8:1::216"}
	app(t, l, ns, "web", strings.Join(addrs, ","), false, map[string]string{"a": "node1", "b": "node2", "c": "node3"})
	for _, vip := range addrs {
		settled(t, l, vip)
	}
	for _, vip := range addrs {
		family := "v4"
		if strings.Contains(vip, ":") {
			family = "v6"
		}
		t.Run(family, func(t *testing.T) {
			ctx := t.Context()
			owner := settled(t, l, vip)
			waitConflict(t, l, ns, metav1.ConditionFalse, "", 30*time.Second) // the other family's test left none
			w := watch(t, l, vip)
			g := startGETs(t, l, vip)
			time.Sleep(300 * time.Millisecond)

			claim(t, l, f, vip)
			claimed := time.Now()
			c := waitConflict(t, l, ns, metav1.ConditionTrue, f.MAC, 5*time.Second)
			reported := time.Since(claimed)
			measured(t, "foreign_after_condition_"+family, reported)
			t.Logf("condition %s: %s: %s", conditionConflict, c.Reason, c.Message)
			if reported > time.Second {
				t.Errorf("condition %s True %v after the foreign device claimed %s, want within 1 s", conditionConflict, reported, vip)
			}
			time.Sleep(time.Until(claimed.Add(2 * time.Second)))
			if err := l.ForeignRelease(ctx, f, netip.MustParseAddr(vip)); err != nil {
				t.Fatal(err)
			}
			released := time.Now()
			held := w.Rounds(claimed, released)
			if gap := silence(held, answeredByHerald); gap > maxQuiet {
				t.Errorf("while the foreign device held %s, no node answered for %v (owner %s): %s", vip, gap, owner, summary(held))
			}
			if got := w.Answerers(claimed, released); got[f.MAC] == 0 {
				t.Errorf("the foreign device did not answer for %s while it held it (answers %s): the test's claim failed", vip, names(got))
			}
			c = waitConflict(t, l, ns, metav1.ConditionFalse, "", 35*time.Second) // "within ~30 s"
			measured(t, "foreign_after_clear_"+family, time.Since(released))
			w.Stop()
			g.stop()
			measured(t, "foreign_after_outage_"+family, g.outage())
			t.Logf("lost: foreign_after_%s=%d of %d GETs", family, len(g.failed(time.Time{}, time.Time{})), g.count())
			if c != nil {
				t.Logf("condition %s after the release: %s: %s", conditionConflict, c.Reason, c.Message)
			}
		})
	}
}

func TestPartitionOwnerLosesSpeakers(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	vip := "198.51.100.217"
	owner, others, _, mac, nextMAC, w, g := scene(t, l, "partboth", vip)
	time.Sleep(300 * time.Millisecond)

	if err := l.Partition(ctx, owner, others, lab.Both); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	t.Cleanup(func() { _ = l.Heal(context.Background(), owner) })
	converged := waitSole(t, w, nextMAC, cut, 3*time.Second, 2*time.Second).Sub(cut)
	measured(t, "partition_both_converge", converged)
	dual := dualFor(t, w, "partition_both")
	t.Logf("two answered for %d ms", dual.Milliseconds())

	if err := l.Heal(ctx, owner); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	back := waitSole(t, w, mac, healed, 15*time.Second, time.Second).Sub(healed)
	measured(t, "partition_both_handback", back)
	early := w.Rounds(healed, healed.Add(holdDown))
	if n := count(early, answeredBy(mac)); n > 0 {
		t.Errorf("%s answered %d requests for %s in the %v hold-down after the partition healed: %s", owner, n, vip, holdDown, summary(early))
	}
	w.Stop()
	g.stop()
	measured(t, "partition_both_outage", g.outage())
	t.Logf("lost: partition_both=%d of %d GETs", len(g.failed(time.Time{}, time.Time{})), g.count())
}

func TestPartitionOneWay(t *testing.T) {
	l := needLab(t)
	vip := "198.51.100.218"
	app(t, l, "partoneway", "web", vip, false, map[string]string{"a": "node1", "b": "node2", "c": "node3"})
	for _, dir := range []lab.Direction{lab.Out, lab.In} {
		t.Run(dir.String(), func(t *testing.T) {
			ctx := t.Context()
			owner := settled(t, l, vip)
			others := slices.DeleteFunc(nodeNames(l), func(n string) bool { return n == owner })
			w := watch(t, l, vip)
			g := startGETs(t, l, vip)
			time.Sleep(300 * time.Millisecond)

			if err := l.Partition(ctx, owner, others, dir); err != nil {
				t.Fatal(err)
			}
			cut := time.Now()
			t.Cleanup(func() { _ = l.Heal(context.Background(), owner) })
			converged := waitSole(t, w, "", cut, 5*time.Second, 2*time.Second)
			sole := w.Rounds(converged, converged.Add(time.Millisecond))
			measured(t, "partition_"+dir.String()+"_converge", converged.Sub(cut))
			dual := dualFor(t, w, "partition_"+dir.String())
			t.Logf("partition %s of %s: %s answers alone; two answered for %d ms", dir, owner, names(counts(sole)), dual.Milliseconds())

			if err := l.Heal(ctx, owner); err != nil {
				t.Fatal(err)
			}
			healed := time.Now()
			back := waitSole(t, w, nodeMAC(t, owner), healed, 15*time.Second, time.Second).Sub(healed)
			measured(t, "partition_"+dir.String()+"_handback", back)
			w.Stop()
			g.stop()
			measured(t, "partition_"+dir.String()+"_outage", g.outage())
			t.Logf("lost: partition_%s=%d of %d GETs", dir, len(g.failed(time.Time{}, time.Time{})), g.count())
		})
	}
}

// logAnswers logs who answered each request of w, as runs.
func logAnswers(t *testing.T, w *lab.AnswerWatch) {
	t.Helper()
	t.Logf("answers for %s, a request every %v: %s", w.Addr, w.Every, summary(w.Rounds(time.Time{}, time.Time{})))
}

// measured logs a duration in the form the benchmark reports.
func measured(t *testing.T, name string, d time.Duration) {
	t.Helper()
	t.Logf("measured: %s=%dms", name, d.Milliseconds())
}

// nodeMAC is the MAC of node's lab interface.
// scene serves vip from a pod on every node and returns its settled owner,
// the other nodes, the one next in line, the owner's and the next one's
// MACs, and a watch of who answers and a GET client, both running.
func scene(t *testing.T, l *lab.Lab, ns, vip string) (owner string, others []string, next, mac, nextMAC string, w *lab.AnswerWatch, g *getter) {
	t.Helper()
	app(t, l, ns, "web", vip, false, map[string]string{"a": "node1", "b": "node2", "c": "node3"})
	owner = settled(t, l, vip)
	others = slices.DeleteFunc(nodeNames(l), func(n string) bool { return n == owner })
	next = speaker.Winner(others, netip.MustParseAddr(vip))
	return owner, others, next, nodeMAC(t, owner), nodeMAC(t, next), watch(t, l, vip), startGETs(t, l, vip)
}

func nodeMAC(t *testing.T, node string) string {
	t.Helper()
	for mac, n := range macToNode {
		if n == node {
			return mac
		}
	}
	t.Fatalf("no MAC for node %q", node)
	return ""
}

// names renders answer counts by MAC with the node of each MAC.
func names(byMAC map[string]int) string {
	var out []string
	for _, mac := range slices.Sorted(maps.Keys(byMAC)) {
		out = append(out, fmt.Sprintf("%s×%d", who(mac), byMAC[mac]))
	}
	if len(out) == 0 {
		return "nobody"
	}
	return strings.Join(out, ", ")
}

func who(mac string) string {
	if n, ok := macToNode[mac]; ok {
		return n
	}
	return mac
}

// counts tallies the answers of rounds by MAC.
func counts(rounds []lab.Round) map[string]int {
	out := map[string]int{}
	for _, r := range rounds {
		for _, m := range r.MACs {
			out[m]++
		}
	}
	return out
}

// watch asks from the client who has vip every stressEvery until the test ends.
func watch(t *testing.T, l *lab.Lab, vip string) *lab.AnswerWatch {
	t.Helper()
	w, err := l.WatchAnswers(context.Background(), netip.MustParseAddr(vip), stressEvery)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.Stop()
		if err := w.Err(); err != nil {
			t.Error(err)
		}
		logAnswers(t, w)
	})
	return w
}

// maxQuiet is the longest an answerer may seem silent while it answers:
// on a loaded machine a reply may come after the next request was sent,
// and count for that one, leaving a request or two without an answer.
const maxQuiet = 300 * time.Millisecond

// isSole reports whether mac alone answered r; "" stands for any one MAC.
func isSole(r lab.Round, mac string) bool {
	return len(r.MACs) == 1 && (mac == "" || r.MACs[0] == mac)
}

// answeredBy is true of the rounds mac answered (alone or not).
func answeredBy(mac string) func(lab.Round) bool {
	return func(r lab.Round) bool { return slices.Contains(r.MACs, mac) }
}

// answeredByHerald is true of the rounds a node answered.
func answeredByHerald(r lab.Round) bool {
	return slices.ContainsFunc(r.MACs, func(m string) bool { _, ok := macToNode[m]; return ok })
}

// count counts the rounds of which ok is true.
func count(rounds []lab.Round, ok func(lab.Round) bool) int {
	n := 0
	for _, r := range rounds {
		if ok(r) {
			n++
		}
	}
	return n
}

// silence is the longest time among rounds from a request of which ok is
// false to the next of which it is true (or to the last request).
func silence(rounds []lab.Round, ok func(lab.Round) bool) time.Duration {
	var gap time.Duration
	var since time.Time
	for _, r := range rounds {
		switch {
		case !ok(r) && since.IsZero():
			since = r.At
		case ok(r) && !since.IsZero():
			gap, since = max(gap, r.At.Sub(since)), time.Time{}
		}
	}
	if !since.IsZero() {
		gap = max(gap, rounds[len(rounds)-1].At.Sub(since))
	}
	return gap
}

// dualFor returns the longest time two or more nodes answered w's
// requests. lab.AnswerWatch.MultiSpans ends a span at the first request
// fewer answered; here a span also bridges up to maxQuiet of requests whose
// second answer came late, which on a loaded machine splits one long span
// into short ones. Both are logged, as <name>_dual and
// <name>_dual_consecutive.
func dualFor(t *testing.T, w *lab.AnswerWatch, name string) time.Duration {
	t.Helper()
	var longest time.Duration
	var first, last time.Time
	for _, r := range w.Rounds(time.Time{}, time.Time{}) {
		switch {
		case len(r.MACs) >= 2 && !last.IsZero() && r.At.Sub(last) <= maxQuiet:
			last = r.At
		case len(r.MACs) >= 2:
			first, last = r.At, r.At
		}
		if !last.IsZero() {
			longest = max(longest, last.Sub(first))
		}
	}
	spans := w.MultiSpans()
	t.Logf("two or more answered for %s: longest %v, bridged %v, %d spans", w.Addr, slices.Max(append(spans, 0)).Round(time.Millisecond), longest.Round(time.Millisecond), len(spans))
	measured(t, name+"_dual", longest)
	measured(t, name+"_dual_consecutive", slices.Max(append(spans, 0)))
	return longest
}

// summary renders rounds as runs: "12×[node1] 3×[] 5×[node1 node2]".
func summary(rounds []lab.Round) string {
	var b strings.Builder
	for i := 0; i < len(rounds); {
		j := i
		for j < len(rounds) && slices.Equal(rounds[j].MACs, rounds[i].MACs) {
			j++
		}
		var ns []string
		for _, m := range rounds[i].MACs {
			ns = append(ns, who(m))
		}
		fmt.Fprintf(&b, "%d×[%s] ", j-i, strings.Join(ns, " "))
		i = j
	}
	return strings.TrimSpace(b.String())
}

// waitAnswered waits until mac answers a request sent after since and
// returns when that request was sent.
func waitAnswered(t *testing.T, w *lab.AnswerWatch, mac string, since time.Time, within time.Duration) time.Time {
	t.Helper()
	for {
		rounds := w.Rounds(since, time.Time{})
		if i := slices.IndexFunc(rounds, func(r lab.Round) bool { return slices.Contains(r.MACs, mac) }); i >= 0 {
			return rounds[i].At
		}
		if time.Since(since) > within {
			t.Fatalf("%s did not answer for %s within %v: %s", who(mac), w.Addr, within, summary(rounds))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitSole waits until mac ("": any one MAC) has answered alone for
// steady, in a run that starts at most within after since, and returns
// when the run's first request was sent. A run is broken by any other
// answerer, not by requests that seem unanswered for up to maxQuiet.
func waitSole(t *testing.T, w *lab.AnswerWatch, mac string, since time.Time, within, steady time.Duration) time.Time {
	t.Helper()
	for {
		rounds := w.Rounds(since, time.Time{})
		var first, last *lab.Round
		for i := range rounds {
			r := &rounds[i]
			switch {
			case len(r.MACs) == 0:
				if last != nil && r.At.Sub(last.At) > maxQuiet {
					first, last = nil, nil
				}
			case !isSole(*r, mac):
				first, last = nil, nil
			case first == nil || r.MACs[0] != first.MACs[0]:
				first, last = r, r
			default:
				last = r
			}
		}
		if first != nil && first.At.Sub(since) <= within && last.At.Sub(first.At) >= steady {
			return first.At
		}
		if (first == nil || first.At.Sub(since) > within) && time.Since(since) > within+steady {
			want := "one node"
			if mac != "" {
				want = who(mac)
			}
			t.Fatalf("%s did not answer alone for %s for %v within %v: %s", want, w.Addr, steady, within, summary(rounds))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// getter GETs a URL from the client every stressEvery, each GET on a new
// connection in its own goroutine with a 1 s timeout, so a second without
// service costs 50 GETs whatever state each connection attempt is in (a
// sequential prober such as lab.Probe loses one GET to a second of
// blackhole, and its GET that waits for a SYN retry succeeds late).
type getter struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu   sync.Mutex
	gets []getResult
}

type getResult struct {
	at  time.Time
	err error
}

// startGETs starts a getter on vip:80 until stop or the test's end (at
// most two minutes).
func startGETs(t *testing.T, l *lab.Lab, vip string) *getter {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	g := &getter{cancel: cancel, done: make(chan struct{})}
	client := lab.HTTPClient(l.ClientNS(), time.Second)
	url := "http://" + net.JoinHostPort(vip, "80") + "/"
	go func() {
		defer close(g.done)
		var wg sync.WaitGroup
		defer wg.Wait()
		tick := time.NewTicker(stressEvery)
		defer tick.Stop()
		for {
			wg.Go(func() {
				at := time.Now()
				err := lab.GetOK(ctx, client, url)
				if ctx.Err() != nil {
					return // stopped mid-GET: it does not count
				}
				g.mu.Lock()
				g.gets = append(g.gets, getResult{at: at, err: err})
				g.mu.Unlock()
			})
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(g.stop)
	return g
}

// stop ends the getter once the GETs in flight are done; it may be called again.
func (g *getter) stop() {
	select {
	case <-g.done:
		return
	default:
	}
	time.Sleep(1100 * time.Millisecond) // let the GETs in flight finish or time out
	g.cancel()
	<-g.done
}

func (g *getter) results() []getResult {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := slices.Clone(g.gets)
	slices.SortFunc(out, func(a, b getResult) int { return a.at.Compare(b.at) })
	return out
}

func (g *getter) count() int { return len(g.results()) }

// failed returns the failed GETs started in [from, to); a zero to means no end.
func (g *getter) failed(from, to time.Time) []getResult {
	var out []getResult
	for _, r := range g.results() {
		if r.err != nil && !r.at.Before(from) && (to.IsZero() || r.at.Before(to)) {
			out = append(out, r)
		}
	}
	return out
}

// outage is the longest time GETs failed: from the first failed GET of a
// run to the next that succeeded.
func (g *getter) outage() time.Duration {
	var out time.Duration
	var since time.Time
	rs := g.results()
	for _, r := range rs {
		switch {
		case r.err != nil && since.IsZero():
			since = r.at
		case r.err == nil && !since.IsZero():
			out, since = max(out, r.at.Sub(since)), time.Time{}
		}
	}
	if !since.IsZero() {
		out = max(out, rs[len(rs)-1].at.Sub(since)+stressEvery)
	}
	return out
}

// maxResets is how many GETs may fail when an address moves between two
// working nodes: each connection in flight at the move is reset (the new
// node has no state for it; issue 12). With a GET every 20 ms a few are in
// flight at any time, and a hand-back is two moves.
const maxResets = 10

func isReset(r getResult) bool { return errors.Is(r.err, syscall.ECONNRESET) }

func count2(rs []getResult, ok func(getResult) bool) int {
	n := 0
	for _, r := range rs {
		if ok(r) {
			n++
		}
	}
	return n
}

// failures renders the first few failed GETs.
func failures(rs []getResult) string {
	var out []string
	for _, r := range rs[:min(len(rs), 5)] {
		out = append(out, fmt.Sprintf("%s: %v", r.at.UTC().Format("15:04:05.000"), r.err))
	}
	if len(rs) > 5 {
		out = append(out, fmt.Sprintf("and %d more", len(rs)-5))
	}
	return strings.Join(out, "; ")
}

// foreignHost puts a host with no speaker on the lab network until the test ends.
func foreignHost(t *testing.T, l *lab.Lab, name string) lab.Foreign {
	t.Helper()
	f, err := l.AddForeignHost(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.RemoveForeignHost(context.Background(), f); err != nil {
			t.Errorf("remove the foreign host: %v", err)
		}
	})
	return f
}

// claim makes the foreign host take addrs until the (sub)test ends.
func claim(t *testing.T, l *lab.Lab, f lab.Foreign, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		addr := netip.MustParseAddr(a)
		if err := l.ForeignClaim(t.Context(), f, addr); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.ForeignRelease(context.Background(), f, addr) })
	}
}

// appWith is app without herald.dev/ips: a dual-stack LoadBalancer
// Service with these annotations for pods (name -> node).
func appWith(t *testing.T, l *lab.Lab, ns, name string, annotations, pods map[string]string) {
	t.Helper()
	ctx := t.Context()
	for pod, node := range pods {
		if _, err := l.AddPod(ctx, lab.PodSpec{Namespace: ns, Name: pod, Node: node, Labels: map[string]string{"app": name}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.DeletePod(context.Background(), ns, pod) })
	}
	policy := corev1.IPFamilyPolicyPreferDualStack
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations},
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeLoadBalancer,
			Selector:       map[string]string{"app": name},
			IPFamilyPolicy: &policy,
			IPFamilies:     []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol},
			Ports:          []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	if _, err := l.Kube().CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Kube().CoreV1().Services(ns).Delete(context.Background(), name, metav1.DeleteOptions{}) })
}

// Pool "lan" of labConfig.
var (
	lan4 = [2]netip.Addr{netip.MustParseAddr("198.51.100.200"), netip.MustParseAddr("198.51.100.250")}
	lan6 = [2]netip.Addr{netip.MustParseAddr("2001:db8:1::200"), netip.MustParseAddr("2001:db8:1::250")}
)

// lowestFree returns the lowest address of each family of pool "lan" that
// no Service has in its status or asks for: the one the controller hands
// out next.
func lowestFree(t *testing.T, l *lab.Lab) []netip.Addr {
	t.Helper()
	svcs, err := l.Kube().CoreV1().Services("").List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	used := map[netip.Addr]bool{}
	for _, s := range svcs.Items {
		for _, in := range s.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(in.IP); err == nil {
				used[a] = true
			}
		}
		for f := range strings.SplitSeq(s.Annotations["herald.dev/ips"], ",") {
			if a, err := netip.ParseAddr(strings.TrimSpace(f)); err == nil {
				used[a] = true
			}
		}
	}
	var out []netip.Addr
	for _, r := range [][2]netip.Addr{lan4, lan6} {
		a := r[0]
		for used[a] && a.Compare(r[1]) < 0 {
			a = a.Next()
		}
		if used[a] {
			t.Fatalf("pool lan has no free address in %s-%s", r[0], r[1])
		}
		out = append(out, a)
	}
	return out
}

// waitIngressAvoids waits until Service ns/web has an address of each
// family in its status, none of them in avoid, and keeps them for a second.
func waitIngressAvoids(t *testing.T, l *lab.Lab, ns string, avoid []netip.Addr, timeout time.Duration) []netip.Addr {
	t.Helper()
	var got, stable []netip.Addr
	var since time.Time
	for deadline := time.Now().Add(timeout); ; time.Sleep(100 * time.Millisecond) {
		in, c := serviceStatus(t, l, ns)
		got = got[:0]
		for _, s := range in {
			if a, err := netip.ParseAddr(s); err == nil {
				got = append(got, a)
			}
		}
		slices.SortFunc(got, netip.Addr.Compare)
		ok := len(got) == 2 && got[0].Is4() != got[1].Is4() && !slices.ContainsFunc(got, func(a netip.Addr) bool { return slices.Contains(avoid, a) })
		switch {
		case !ok || !slices.Equal(got, stable):
			stable, since = slices.Clone(got), time.Now()
		case ok && time.Since(since) >= time.Second:
			return stable
		}
		if time.Now().After(deadline) {
			t.Fatalf("Service %s/web has ingress %v (condition %+v), want one address per family, none of %v", ns, got, c, avoid)
		}
	}
}

// waitConflict waits until Service ns/web has condition conditionConflict
// with status want and a message holding word, and returns it. Waiting for
// False is also satisfied by no condition (nil).
func waitConflict(t *testing.T, l *lab.Lab, ns string, want metav1.ConditionStatus, word string, timeout time.Duration) *metav1.Condition {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		svc, err := l.Kube().CoreV1().Services(ns).Get(t.Context(), "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c := meta.FindStatusCondition(svc.Status.Conditions, conditionConflict)
		if c == nil && want == metav1.ConditionFalse {
			return nil
		}
		if c != nil && c.Status == want && strings.Contains(c.Message, word) {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("Service %s/web: condition %s = %+v after %v, want %s with %q in its message", ns, conditionConflict, c, timeout, want, word)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitServiceEvent waits for an Event of this reason and type on Service
// ns/name whose message holds every one of words.
func waitServiceEvent(t *testing.T, l *lab.Lab, ns, name, reason, typ string, words ...string) corev1.Event {
	t.Helper()
	sel := "involvedObject.kind=Service,involvedObject.name=" + name + ",reason=" + reason
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs, err := l.Kube().CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			t.Fatal(err)
		}
		var seen []string
		for _, e := range evs.Items {
			if e.Type == typ && containsAll(e.Message, words) {
				return e
			}
			seen = append(seen, cmp.Or(e.Type, "?")+": "+e.Message)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s Event %s on Service %s/%s naming %q; saw %q", typ, reason, ns, name, words, seen)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
