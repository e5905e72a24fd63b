package controller_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/heraldlb/herald/controller"
)

// TestReadyReplicas runs two controller replicas as a Deployment would: both
// are Ready (a synced standby can do its job if asked), exactly one reports
// herald_controller_leader 1 and holds the Lease, and once it stops the
// other leads, still Ready.
func TestReadyReplicas(t *testing.T) {
	kube, ns := leaderNamespace(t, "ready-replicas")
	a := startControllerReplica(t, kube, ns, "a")
	b := startControllerReplica(t, kube, ns, "b")

	waitUntil(t, 15*time.Second, "both replicas Ready", func() bool { return a.ready() && b.ready() })
	// Ready does not wait for the election (a synced standby is Ready):
	// one of them takes the Lease a moment later.
	waitUntil(t, 15*time.Second, "a replica to lead", func() bool { return a.leader(t)+b.leader(t) >= 1 })
	// The new leader is Ready again once its controller has synced.
	waitUntil(t, 15*time.Second, "both replicas Ready under a leader", func() bool { return a.ready() && b.ready() })
	leader, standby := a, b
	if b.leader(t) == 1 {
		leader, standby = b, a
	}
	if got := []float64{leader.leader(t), standby.leader(t)}; got[0] != 1 || got[1] != 0 {
		t.Fatalf("herald_controller_leader of %s and %s = %v, want exactly one 1", leader.id, standby.id, got)
	}
	if h := holder(t, kube, ns); h != leader.id {
		t.Errorf("the Lease is held by %q, the metric says %q leads", h, leader.id)
	}
	// A standby stays Ready while it stands by: its Lease reads go on.
	for end := time.Now().Add(2 * testLeaseDuration); time.Now().Before(end); time.Sleep(testRetryPeriod) {
		if !standby.ready() || !leader.ready() {
			t.Fatalf("a replica became not Ready while both run: %s %v, %s %v", leader.id, leader.ready(), standby.id, standby.ready())
		}
	}

	leader.stopAndWait(t)
	if got := leader.leader(t); got != 0 {
		t.Errorf("herald_controller_leader of the stopped replica %s = %v, want 0", leader.id, got)
	}
	waitUntil(t, 10*time.Second, "the standby to lead", func() bool { return standby.leader(t) == 1 })
	waitUntil(t, 10*time.Second, "the new leader to be Ready", standby.ready)
	if h := holder(t, kube, ns); h != standby.id {
		t.Errorf("the Lease is held by %q, want the new leader %q", h, standby.id)
	}
}

// TestReadyNeedsCredentials runs a replica whose credentials may not read
// the Lease: it reaches the API server but could not do its job, so it is
// never Ready, and never leads.
func TestReadyNeedsCredentials(t *testing.T) {
	_, ns := leaderNamespace(t, "ready-forbidden")
	cfg, err := shared.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Impersonate.UserName = "system:serviceaccount:" + ns + ":no-rights"
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := startControllerReplica(t, kube, ns, "no-rights")
	for end := time.Now().Add(2 * testLeaseDuration); time.Now().Before(end); time.Sleep(testRetryPeriod) {
		if r.ready() || r.leader(t) != 0 {
			t.Fatalf("a replica that may not read the Lease: Ready %v, herald_controller_leader %v; want false, 0", r.ready(), r.leader(t))
		}
	}
}

// controllerReplica is one replica as herald-controller runs it: a Replica
// that, once it leads, builds and runs a Controller.
type controllerReplica struct {
	id      string
	replica *controller.Replica
	ctrl    atomic.Pointer[controller.Controller]
	metrics *prometheus.Registry
	stop    context.CancelFunc
	done    chan struct{}
}

func startControllerReplica(t *testing.T, kube kubernetes.Interface, ns, id string) *controllerReplica {
	t.Helper()
	r := &controllerReplica{id: id, metrics: prometheus.NewRegistry(), done: make(chan struct{})}
	metrics := controller.NewMetrics(r.metrics)
	log := zaptest.NewLogger(t).Named(id)
	r.replica = controller.NewReplica(kube, testLease(ns, id), metrics, log)
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "herald-controller"})
	lead := func(ctx context.Context) {
		all := informers.NewSharedInformerFactory(kube, 0)
		own := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(ns))
		c := controller.New(kube, all.Core().V1().Services(), all.Core().V1().Namespaces(), own.Core().V1().ConfigMaps(),
			recorder, metrics, log.Named("controller"), controller.Options{Namespace: ns, ConfigName: "herald", LBClass: "herald.dev/" + ns})
		r.ctrl.Store(c)
		all.Start(ctx.Done())
		own.Start(ctx.Done())
		_ = c.Run(ctx, 2)
		all.Shutdown()
		own.Shutdown()
	}
	go func() {
		defer close(r.done)
		defer broadcaster.Shutdown()
		if err := r.replica.Run(ctx, lead); err != nil {
			t.Errorf("replica %s: %v", id, err)
		}
	}()
	t.Cleanup(func() { r.stopAndWait(t) })
	return r
}

func (r *controllerReplica) ready() bool { return r.replica.Ready(r.ctrl.Load()) }

func (r *controllerReplica) stopAndWait(t *testing.T) {
	t.Helper()
	r.stop()
	waitClosed(t, r.done, 15*time.Second, "replica "+r.id+" to return")
}

// leader reads herald_controller_leader from the replica's registry.
func (r *controllerReplica) leader(t *testing.T) float64 {
	t.Helper()
	mfs, err := r.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "herald_controller_leader" && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("replica %s has no herald_controller_leader", r.id)
	return 0
}

// holder is the holder of the Lease herald-controller in ns ("" if none).
func holder(t *testing.T, kube kubernetes.Interface, ns string) string {
	t.Helper()
	lease, err := kube.CoordinationV1().Leases(ns).Get(t.Context(), "herald-controller", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := lease.Spec.HolderIdentity; h != nil {
		return *h
	}
	return ""
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(timeout); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("waited %v for %s", timeout, what)
		}
	}
}
