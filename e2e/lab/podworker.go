package lab

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podWorker runs one pod: its sandbox, its containers, its status, and
// its end when the pod is deleted.
type podWorker struct {
	k *kubelet

	mu      sync.Mutex
	pod     *corev1.Pod // latest seen
	changed chan struct{}
	dirty   chan struct{} // status needs writing
	killed  chan struct{} // the pod is gone from the API
	kill    func()

	sb         sandbox
	containers []*container
	started    metav1.Time
	setupErr   string // why the containers cannot start yet (image pull, ...)
}

func newPodWorker(k *kubelet, pod *corev1.Pod) *podWorker {
	killed := make(chan struct{})
	return &podWorker{
		k: k, pod: pod, changed: make(chan struct{}, 1), dirty: make(chan struct{}, 1),
		killed: killed, kill: sync.OnceFunc(func() { close(killed) }), started: metav1.Now(),
	}
}

func (w *podWorker) update(pod *corev1.Pod) {
	w.mu.Lock()
	w.pod = pod
	w.mu.Unlock()
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

func (w *podWorker) latest() *corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod
}

func (w *podWorker) markDirty() {
	select {
	case w.dirty <- struct{}{}:
	default:
	}
}

// run sets the pod up, runs its containers until the pod is deleted, then
// stops them within the grace period, tears the sandbox down and removes
// the pod from the API, as kubelet does.
func (w *podWorker) run(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pod := w.latest()
	name := pod.Namespace + "/" + pod.Name
	go w.statusLoop(ctx)
	w.markDirty()
	if !w.setUp(ctx) {
		w.tearDown(ctx)
		return
	}
	w.k.logf("pod %s on %s: sandbox %s, ip %s", name, pod.Spec.NodeName, w.sb.ns, w.sb.ip4)
	var wg sync.WaitGroup
	stop := make(chan time.Duration, len(w.containers))
	for _, c := range w.containers {
		wg.Go(func() { c.loop(ctx, w, stop) })
	}
	grace := w.waitDeleted(ctx)
	for range w.containers {
		stop <- grace
	}
	wg.Wait()
	w.k.logf("pod %s: containers stopped", name)
	w.tearDown(ctx)
}

// setUp builds the sandbox, pulls the images and writes the ServiceAccount
// files, retrying until it works or the pod is deleted.
func (w *podWorker) setUp(ctx context.Context) bool {
	for {
		err := w.trySetUp(ctx)
		if err == nil {
			w.mu.Lock()
			w.setupErr = ""
			w.mu.Unlock()
			return true
		}
		w.k.logf("pod %s: %v", w.name(), err)
		w.mu.Lock()
		w.setupErr = err.Error()
		w.mu.Unlock()
		w.markDirty()
		select {
		case <-ctx.Done():
			return false
		case <-w.killed:
			return false
		case <-w.changed:
			if w.latest().DeletionTimestamp != nil {
				return false
			}
		case <-time.After(2 * time.Second):
		}
	}
}

func (w *podWorker) trySetUp(ctx context.Context) error {
	pod := w.latest()
	if w.sb.ns == "" {
		sb, err := w.k.newSandbox(ctx, pod)
		if err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		w.mu.Lock()
		w.sb = sb
		w.mu.Unlock()
		w.markDirty()
	}
	if err := w.k.writeServiceAccount(ctx, pod); err != nil {
		return fmt.Errorf("service account token: %w", err)
	}
	if w.containers != nil {
		return nil
	}
	var cs []*container
	for _, spec := range pod.Spec.Containers {
		c, err := w.k.newContainer(ctx, pod, spec, w.sb)
		if err != nil {
			return err
		}
		cs = append(cs, c)
	}
	w.mu.Lock()
	w.containers = cs
	w.mu.Unlock()
	return nil
}

// waitDeleted blocks until the pod has a deletion timestamp (returning
// its grace period) or is gone (no grace).
func (w *podWorker) waitDeleted(ctx context.Context) time.Duration {
	refresh := time.NewTicker(48 * time.Minute) // tokens last an hour
	defer refresh.Stop()
	for {
		pod := w.latest()
		if pod.DeletionTimestamp != nil {
			g := int64(30)
			if pod.DeletionGracePeriodSeconds != nil {
				g = *pod.DeletionGracePeriodSeconds
			}
			return time.Duration(g) * time.Second
		}
		select {
		case <-ctx.Done():
			return 0
		case <-w.killed:
			return 0
		case <-w.changed:
		case <-refresh.C:
			if err := w.k.writeServiceAccount(ctx, pod); err != nil {
				w.k.logf("pod %s/%s: refresh token: %v", pod.Namespace, pod.Name, err)
			}
		}
	}
}

// tearDown removes the sandbox and the pod's files, then the Pod itself
// (with its UID as precondition: a new pod of the same name stays).
func (w *podWorker) tearDown(ctx context.Context) {
	pod := w.latest()
	w.k.removeSandbox(context.WithoutCancel(ctx), w.sb)
	_ = os.RemoveAll(w.k.podDir(pod.UID))
	select {
	case <-w.killed:
		return
	default:
	}
	if pod.DeletionTimestamp == nil {
		return
	}
	err := w.k.l.Kube().CoreV1().Pods(pod.Namespace).Delete(context.WithoutCancel(ctx), pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64(0)), Preconditions: &metav1.Preconditions{UID: &pod.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		w.k.logf("pod %s/%s: delete: %v", pod.Namespace, pod.Name, err)
	}
}

// statusLoop writes the pod's status whenever it changed, coalescing bursts.
func (w *podWorker) statusLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.killed:
			return
		case <-w.dirty:
		}
		if err := w.writeStatus(ctx); err != nil && ctx.Err() == nil {
			w.k.logf("pod %s: status: %v", w.name(), err)
			w.markDirty()
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func (w *podWorker) name() string {
	pod := w.latest()
	return pod.Namespace + "/" + pod.Name
}

func (w *podWorker) writeStatus(ctx context.Context) error {
	pod := w.latest()
	pods := w.k.l.Kube().CoreV1().Pods(pod.Namespace)
	cur, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if cur.UID != pod.UID {
		return nil
	}
	cur.Status = w.status(cur)
	_, err = pods.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		w.markDirty()
		return nil
	}
	return err
}
