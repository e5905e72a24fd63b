package speaker

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

// ConditionAnnounced is the Service condition the announcing node keeps.
const ConditionAnnounced = "herald.dev/Announced"

// Reasons of ConditionAnnounced and of the speaker's Events.
const (
	ReasonAnnouncedL2  = "AnnouncedL2"
	ReasonNotAnnounced = "NotAnnounced"
)

// statusWriter writes the Announced condition of Services in the
// background, so that announcing never waits for the API server (and goes
// on while it is away); Events are recorded when ownership changes.
type statusWriter struct {
	kube     kubernetes.Interface
	recorder record.EventRecorder
	node     string
	log      *zap.Logger
	queue    workqueue.TypedRateLimitingInterface[string]

	mu      sync.Mutex
	want    map[string]metav1.Condition
	primary map[string]netip.Addr // each Service's first address
}

func newStatusWriter(kube kubernetes.Interface, recorder record.EventRecorder, node string, log *zap.Logger) *statusWriter {
	limiter := workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 10*time.Second)
	return &statusWriter{
		kube: kube, recorder: recorder, node: node, log: log,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(limiter, workqueue.TypedRateLimitingQueueConfig[string]{Name: "announced"}),
		want:  map[string]metav1.Condition{},
	}
}

// announced records that this node now answers for addr of services: an
// Event for each, and the condition where addr is the Service's first address.
func (w *statusWriter) announced(services []string, addr netip.Addr, iface string) {
	w.set(services, addr, w.announcedCondition(addr, iface), true)
}

func (w *statusWriter) announcedCondition(addr netip.Addr, iface string) metav1.Condition {
	msg := fmt.Sprintf("%s announced from node %s on %s via L2", addr, w.node, iface)
	return metav1.Condition{Type: ConditionAnnounced, Status: metav1.ConditionTrue, Reason: ReasonAnnouncedL2, Message: msg}
}

// keep re-writes the condition of the Services whose first address this
// node owns when what they show differs (level-based: a late write by a
// former owner, or one lost while the API server was away, gets mended).
func (w *statusWriter) keep(svcs []*corev1.Service, addr netip.Addr, iface string) {
	want := w.announcedCondition(addr, iface)
	var stale []string
	for _, svc := range svcs {
		c := meta.FindStatusCondition(svc.Status.Conditions, ConditionAnnounced)
		if c == nil || c.Status != want.Status || c.Message != want.Message {
			stale = append(stale, svc.Namespace+"/"+svc.Name)
		}
	}
	w.set(stale, addr, want, false)
}

// withdrawn records that nobody answers for addr any more, and why.
func (w *statusWriter) withdrawn(services []string, addr netip.Addr, why string) {
	msg := fmt.Sprintf("%s not announced: %s", addr, why)
	w.set(services, addr, metav1.Condition{Type: ConditionAnnounced, Status: metav1.ConditionFalse, Reason: ReasonNotAnnounced, Message: msg}, true)
}

// setPrimaries notes each Service's first address. A dual-stack Service's
// two addresses may be owned by two nodes; only the owner of the first
// writes the condition (both record Events), so it does not flip between them.
func (w *statusWriter) setPrimaries(svcs []ServiceInfo) {
	primary := make(map[string]netip.Addr, len(svcs))
	for _, s := range svcs {
		if len(s.Addrs) > 0 {
			primary[s.Key] = s.Addrs[0]
		}
	}
	w.mu.Lock()
	w.primary = primary
	w.mu.Unlock()
}

func (w *statusWriter) set(services []string, addr netip.Addr, c metav1.Condition, event bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, key := range services {
		if p, ok := w.primary[key]; !ok || p == addr {
			if cur, pending := w.want[key]; !pending || cur.Message != c.Message {
				w.want[key] = c
				w.queue.Add(key)
			}
		}
		if !event {
			continue
		}
		typ := corev1.EventTypeNormal
		if c.Status == metav1.ConditionFalse {
			typ = corev1.EventTypeWarning
		}
		w.event(key, typ, c.Reason, c.Message)
	}
}

// cancel drops what this node still meant to write about addr for services
// (it no longer owns addr: a late write would undo the new owner's).
func (w *statusWriter) cancel(services []string, addr netip.Addr) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, key := range services {
		if p, ok := w.primary[key]; !ok || p == addr {
			delete(w.want, key)
		}
	}
}

func (w *statusWriter) run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		w.queue.ShutDown()
	}()
	for {
		key, quit := w.queue.Get()
		if quit {
			return
		}
		if err := w.write(ctx, key); err != nil {
			w.log.Debug("status not written, will retry", zap.String("service", key), zap.Error(err))
			w.queue.AddRateLimited(key)
		} else {
			w.queue.Forget(key)
		}
		w.queue.Done(key)
	}
}

func (w *statusWriter) write(ctx context.Context, key string) error {
	w.mu.Lock()
	c, ok := w.want[key]
	w.mu.Unlock()
	if !ok {
		return nil
	}
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	svc, err := w.kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		w.forget(key, c)
		return nil
	}
	if err != nil {
		return err
	}
	c.ObservedGeneration = svc.Generation
	if old := meta.FindStatusCondition(svc.Status.Conditions, ConditionAnnounced); old != nil && old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message {
		w.forget(key, c)
		return nil
	}
	meta.SetStatusCondition(&svc.Status.Conditions, c)
	if _, err := w.kube.CoreV1().Services(ns).UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		return err
	}
	w.forget(key, c)
	return nil
}

// event records an Event on the Service key.
func (w *statusWriter) event(key, typ, reason, msg string) {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	w.recorder.Event(&corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: ns, Name: name}, typ, reason, msg)
}

// forget drops the wish for key if it is still c (a newer one stays).
func (w *statusWriter) forget(key string, c metav1.Condition) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if cur, ok := w.want[key]; ok && cur.Message == c.Message && cur.Status == c.Status {
		delete(w.want, key)
	}
}
