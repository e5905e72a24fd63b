package lab

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// The lab's kubelet runs the pods that kube-scheduler places on lab nodes
// (Herald's own, installed from manifests/) from their pod spec: it pulls the
// image from the lab registry, unpacks it, runs the entrypoint through
// labexec in the pod's network namespace (the node's for hostNetwork pods,
// one of its own with a pod IP otherwise) and a mount namespace whose root
// is the image, with the ServiceAccount token at the in-cluster path. It
// runs the HTTP and TCP probes, restarts containers with kubelet's backoff
// and reports pod status, so Deployments and DaemonSets roll out for real.
//
// What it does not emulate: resource limits (no cgroups), seccomp, image
// pull secrets, volumes other than the projected ServiceAccount token,
// exec probes, init and ephemeral containers, node status heartbeats and
// eviction. Pods that AddPod made are left to AddPod.
type kubelet struct {
	l *Lab

	mu      sync.Mutex
	workers map[types.UID]*podWorker
	held    map[string]bool // container names whose restarts a test holds back
	svcHost string          // the kubernetes Service's ClusterIP
}

// labPodImage marks the pods AddPod runs itself.
const labPodImage = "herald.dev/lab-pod:latest"

// startKubelet watches every pod bound to a node and keeps a worker per
// pod. It runs until ctx ends (the lab's owner exits).
func (l *Lab) startKubelet(ctx context.Context) error {
	svc, err := l.Kube().CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("kubelet: kubernetes Service: %w", err)
	}
	k := &kubelet{l: l, workers: map[types.UID]*podWorker{}, held: map[string]bool{}, svcHost: svc.Spec.ClusterIP}
	lw := cache.NewListWatchFromClient(l.Kube().CoreV1().RESTClient(), "pods", "", fields.OneTermNotEqualSelector("spec.nodeName", ""))
	_, ctl := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: lw,
		ObjectType:    &corev1.Pod{},
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { k.sync(ctx, o.(*corev1.Pod)) },
			UpdateFunc: func(_, o any) { k.sync(ctx, o.(*corev1.Pod)) },
			DeleteFunc: func(o any) {
				if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
					o = t.Obj
				}
				if p, ok := o.(*corev1.Pod); ok {
					k.gone(p.UID)
				}
			},
		},
	})
	l.mu.Lock()
	l.kubelet = k
	l.mu.Unlock()
	go ctl.RunWithContext(ctx)
	return nil
}

// sync hands the pod's latest version to its worker, starting one for a
// new pod on a lab node.
func (k *kubelet) sync(ctx context.Context, pod *corev1.Pod) {
	if _, ok := k.l.Node(pod.Spec.NodeName); !ok || isLabPod(pod) {
		return
	}
	k.mu.Lock()
	w, ok := k.workers[pod.UID]
	if !ok {
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			k.mu.Unlock()
			return
		}
		w = newPodWorker(k, pod)
		k.workers[pod.UID] = w
		go func() {
			w.run(ctx)
			k.mu.Lock()
			delete(k.workers, pod.UID)
			k.mu.Unlock()
		}()
	}
	k.mu.Unlock()
	w.update(pod)
}

// gone stops the worker of a pod deleted from the API (also when forced).
func (k *kubelet) gone(uid types.UID) {
	k.mu.Lock()
	w := k.workers[uid]
	k.mu.Unlock()
	if w != nil {
		w.kill()
	}
}

func isLabPod(pod *corev1.Pod) bool {
	for _, c := range pod.Spec.Containers {
		if c.Image == labPodImage {
			return true
		}
	}
	return false
}

// podDir is where the kubelet keeps a pod's image root, ServiceAccount
// files and state.
func (k *kubelet) podDir(uid types.UID) string {
	return filepath.Join(k.l.Dir, "pods", string(uid))
}

// logf records what the kubelet does in the lab's kubelet log.
func (k *kubelet) logf(format string, args ...any) {
	f, err := os.OpenFile(k.l.LogPath("kubelet"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	log.New(f, "", log.LstdFlags|log.Lmicroseconds).Printf(format, args...)
}

// HoldContainer keeps the lab kubelet from restarting the container whose
// process is named name (see ContainerProcName) after it exits, until
// ReleaseContainer: a test stops a speaker and decides when it comes back.
// A real kubelet restarts it at once; this is the one control the lab adds.
func (l *Lab) HoldContainer(name string) {
	if k := l.kubeletOrNil(); k != nil {
		k.mu.Lock()
		k.held[name] = true
		k.mu.Unlock()
	}
}

// ReleaseContainer lets the kubelet start a held container again.
func (l *Lab) ReleaseContainer(name string) {
	if k := l.kubeletOrNil(); k != nil {
		k.mu.Lock()
		delete(k.held, name)
		k.mu.Unlock()
	}
}

func (k *kubelet) isHeld(name string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.held[name]
}

func (l *Lab) kubeletOrNil() *kubelet {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.kubelet
}

// backoff is kubelet's restart delay: none for the first restart, then 10 s
// doubling to 5 min; a container that ran 10 min starts over.
func backoff(restarts int, ran time.Duration) time.Duration {
	if ran >= 10*time.Minute || restarts == 0 {
		return 0
	}
	d := 10 * time.Second
	for i := 1; i < restarts && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}
