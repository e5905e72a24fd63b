package controller_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/heraldlb/herald/controller"
)

// Short Lease timings so that a hand-over test takes seconds. The Lease
// stores whole seconds.
const (
	testLeaseDuration = 3 * time.Second
	testRenewDeadline = 2 * time.Second
	testRetryPeriod   = 250 * time.Millisecond
)

// TestLeaderHandOver stops a leader whose workers are slow to stop (they keep
// writing for longer than LeaseDuration after being told to) while a standby
// waits, and checks on the API server's own order of writes that none of
// the old leader's writes lands after the new leader's first one; and that
// the standby takes over soon after the old workers return, not a
// LeaseDuration later.
func TestLeaderHandOver(t *testing.T) {
	kube, ns := leaderNamespace(t, "leader-handover")
	led := newLedger(t, kube, ns)

	old := &fakeLeader{t: t, kube: kube, ns: ns, id: "old", drain: testLeaseDuration + 500*time.Millisecond}
	oldRep := runLeader(t, kube, ns, old)
	waitClosed(t, old.started, 10*time.Second, "the first replica to lead")
	fresh := &fakeLeader{t: t, kube: kube, ns: ns, id: "new"}
	newRep := runLeader(t, kube, ns, fresh)

	time.Sleep(4 * testRetryPeriod) // the standby tries the Lease a few times
	select {
	case <-fresh.started:
		t.Fatal("the standby leads while the leader holds the Lease")
	default:
	}
	oldRep.stop()
	waitClosed(t, fresh.started, 15*time.Second, "the standby to lead")
	waitClosed(t, old.stopped, 15*time.Second, "the old leader's workers to return")
	if err := oldRep.wait(t, 10*time.Second); err != nil {
		t.Errorf("the old leader, asked to stop: %v", err)
	}
	time.Sleep(300 * time.Millisecond) // the new leader writes a few times
	newRep.stop()
	if err := newRep.wait(t, 10*time.Second); err != nil {
		t.Errorf("the new leader, asked to stop: %v", err)
	}

	writes := led.all(t)
	firstNew := -1
	for i, w := range writes {
		if w.writer == "new" {
			firstNew = i
			break
		}
	}
	if firstNew < 0 {
		t.Fatalf("no write of the new leader among %d", len(writes))
	}
	var late []ledgerWrite
	for _, w := range writes[firstNew+1:] {
		if w.writer == "old" {
			late = append(late, w)
		}
	}
	if len(late) > 0 {
		t.Errorf("%d writes of the old leader landed after the new leader's first write (resourceVersion %s), the first its write %d (resourceVersion %s), the last its write %d (resourceVersion %s)",
			len(late), writes[firstNew].rv, late[0].seq, late[0].rv, late[len(late)-1].seq, late[len(late)-1].rv)
	}
	// The check means something only if the old workers wrote while stopping.
	if last := lastSeq(writes, "old"); last <= old.writesBeforeStop {
		t.Errorf("the old leader made %d writes before it was asked to stop and no more (last %d): its slow stop was not exercised", old.writesBeforeStop, last)
	}

	// Released on a planned stop: the standby waits for its next retry, not
	// for the Lease to expire.
	handOver := fresh.startedAt.Sub(old.stoppedAt)
	if limit := testLeaseDuration / 2; handOver > limit {
		t.Errorf("the standby led %v after the old leader's workers returned, want at most %v (retry period %v)", handOver, limit, testRetryPeriod)
	}
	lease, err := kube.CoordinationV1().Leases(ns).Get(t.Context(), "herald-controller", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := lease.Spec.HolderIdentity; h != nil && *h != "" {
		t.Errorf("after both replicas stopped the Lease is held by %q, want it released", *h)
	}
	t.Logf("%d writes; the old leader's workers stopped %v after being told to, the standby led %v later",
		len(writes), old.stoppedAt.Sub(old.ctxDoneAt).Round(time.Millisecond), handOver.Round(time.Millisecond))
}

// TestLeaderLostLease takes the Lease away from a leader: Replica.Run must
// report the loss and stop its workers, and the Lease must stay with its new
// holder.
func TestLeaderLostLease(t *testing.T) {
	kube, ns := leaderNamespace(t, "leader-lost")
	newLedger(t, kube, ns)
	l := &fakeLeader{t: t, kube: kube, ns: ns, id: "old"}
	rep := runLeader(t, kube, ns, l)
	waitClosed(t, l.started, 10*time.Second, "the replica to lead")

	leases := kube.CoordinationV1().Leases(ns)
	thief, long := "thief", int32(60)
	// The leader renews every retry period: take the Lease between two renewals.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		lease, err := leases.Get(t.Context(), "herald-controller", metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.NowMicro()
		lease.Spec.HolderIdentity, lease.Spec.LeaseDurationSeconds = &thief, &long
		lease.Spec.AcquireTime, lease.Spec.RenewTime = &now, &now
		_, err = leases.Update(t.Context(), lease, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	stolen := time.Now()

	if err := rep.wait(t, testRenewDeadline+10*time.Second); err == nil {
		t.Error("Run returned nil after losing the Lease, want an error")
	}
	waitClosed(t, l.stopped, 5*time.Second, "the workers to stop after the Lease was lost")
	lease, err := leases.Get(t.Context(), "herald-controller", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := lease.Spec.HolderIdentity; h == nil || *h != thief {
		t.Errorf("after losing the Lease its holder is %v, want %q: the loser must not release", h, thief)
	}
	t.Logf("workers told to stop %v after the Lease was taken (renew deadline %v)",
		l.ctxDoneAt.Sub(stolen).Round(time.Millisecond), testRenewDeadline)
}

// testLease is the Lease herald-controller in ns with the test timings.
func testLease(ns, id string) controller.LeaderElection {
	return controller.LeaderElection{Namespace: ns, Name: "herald-controller", Identity: id,
		LeaseDuration: testLeaseDuration, RenewDeadline: testRenewDeadline, RetryPeriod: testRetryPeriod}
}

// leaderNamespace makes a namespace for one test's Lease and ledger.
func leaderNamespace(t *testing.T, prefix string) (kubernetes.Interface, string) {
	t.Helper()
	if shared == nil {
		t.Skip("no lab: " + skipReason)
	}
	kube := shared.Kube()
	// A generated name: a deleted namespace stays Terminating without a
	// namespace controller, and -count=2 must not trip over it.
	n, err := kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kube.CoreV1().Namespaces().Delete(context.Background(), n.Name, metav1.DeleteOptions{}) })
	return kube, n.Name
}

// replica is one Replica.Run of the test process.
type replica struct {
	stop context.CancelFunc
	done chan struct{} // closed when Run returned
	err  error         // what it returned
}

// runLeader runs l under the Lease herald-controller in ns until stop is
// called; no replica or worker outlives the test.
func runLeader(t *testing.T, kube kubernetes.Interface, ns string, l *fakeLeader) *replica {
	l.started, l.stopped = make(chan struct{}), make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = controller.NewReplica(kube, testLease(ns, l.id), controller.NewMetrics(prometheus.NewRegistry()),
			zaptest.NewLogger(t).Named(l.id)).Run(ctx, l.run)
	}()
	t.Cleanup(func() {
		cancel()
		waitClosed(t, r.done, 15*time.Second, "replica "+l.id+" to return")
		select {
		case <-l.started:
			waitClosed(t, l.stopped, 15*time.Second, "replica "+l.id+"'s workers to return")
		default:
		}
	})
	return r
}

// wait waits for Run to return and yields its result.
func (r *replica) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	waitClosed(t, r.done, timeout, "Run to return")
	return r.err
}

func waitClosed(t *testing.T, c <-chan struct{}, timeout time.Duration, what string) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(timeout):
		t.Fatalf("waited %v for %s", timeout, what)
	}
}

// fakeLeader is the work done under the Lease: it writes to the ledger until
// its context ends, and then for drain longer, as a controller's workers
// finish the syncs they have in flight. Every write is stamped with its
// writer and a counter.
type fakeLeader struct {
	t                *testing.T
	kube             kubernetes.Interface
	ns, id           string
	drain            time.Duration
	started          chan struct{}
	stopped          chan struct{}
	startedAt        time.Time
	stoppedAt        time.Time
	ctxDoneAt        time.Time // when run's context ended
	writesBeforeStop int
}

func (l *fakeLeader) run(ctx context.Context) {
	l.startedAt = time.Now()
	close(l.started)
	defer close(l.stopped)
	seq := 0
	write := func() {
		seq++
		patch := fmt.Sprintf(`{"data":{"writer":%q,"seq":"%d"}}`, l.id, seq)
		if _, err := l.kube.CoreV1().ConfigMaps(l.ns).Patch(context.Background(), "ledger", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			l.t.Errorf("%s: write %d: %v", l.id, seq, err)
		}
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil {
		write()
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	l.ctxDoneAt, l.writesBeforeStop = time.Now(), seq
	for end := time.Now().Add(l.drain); time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
		write()
	}
	l.stoppedAt = time.Now()
}

// ledger records, in the API server's order, every write to the ConfigMap
// "ledger" of a namespace.
type ledger struct {
	kube   kubernetes.Interface
	ns     string
	mu     sync.Mutex
	writes []ledgerWrite
	err    error // the watch failed
}

type ledgerWrite struct {
	writer string
	seq    int
	rv     string // the resourceVersion the write made
}

// newLedger creates the ledger ConfigMap and watches it from its creation.
func newLedger(t *testing.T, kube kubernetes.Interface, ns string) *ledger {
	t.Helper()
	cms := kube.CoreV1().ConfigMaps(ns)
	cm, err := cms.Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "ledger", Namespace: ns}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := cms.Watch(t.Context(), metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", "ledger").String(),
		ResourceVersion: cm.ResourceVersion,
	})
	if err != nil {
		t.Fatal(err)
	}
	l := &ledger{kube: kube, ns: ns}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			l.mu.Lock()
			switch cm, ok := ev.Object.(*corev1.ConfigMap); {
			case ev.Type == watch.Error:
				l.err = apierrors.FromObject(ev.Object)
			case ok && ev.Type == watch.Modified:
				seq, _ := strconv.Atoi(cm.Data["seq"])
				l.writes = append(l.writes, ledgerWrite{writer: cm.Data["writer"], seq: seq, rv: cm.ResourceVersion})
			}
			l.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		w.Stop()
		<-done
	})
	return l
}

// all returns every write up to the ledger's current state, in order.
func (l *ledger) all(t *testing.T) []ledgerWrite {
	t.Helper()
	cm, err := l.kube.CoreV1().ConfigMaps(l.ns).Get(t.Context(), "ledger", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		l.mu.Lock()
		writes, err := slices.Clone(l.writes), l.err
		l.mu.Unlock()
		if err != nil {
			t.Fatalf("watching the ledger: %v", err)
		}
		if n := len(writes); n > 0 && writes[n-1].rv == cm.ResourceVersion {
			return writes
		}
	}
	t.Fatalf("the ledger's watch did not reach resourceVersion %s within 10 s", cm.ResourceVersion)
	return nil
}

// lastSeq is the counter of writer's last write.
func lastSeq(writes []ledgerWrite, writer string) int {
	last := 0
	for _, w := range writes {
		if w.writer == writer {
			last = w.seq
		}
	}
	return last
}
