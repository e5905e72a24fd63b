package deploy

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/heraldlb/herald/e2e/lab"
)

// replicas is how many pods of each workload run in the 3-node lab
// (manifests/: 2 controller replicas, a speaker per node).
var replicas = map[string]int{"herald-controller": 2, "herald-speaker": 3}

// runningPods returns Herald's running pods that are not being deleted, by
// app label.
func runningPods(ctx context.Context, l *lab.Lab) (map[string][]corev1.Pod, error) {
	pods, err := l.Kube().CoreV1().Pods(lab.HeraldNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := map[string][]corev1.Pod{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			out[p.Labels["app"]] = append(out[p.Labels["app"]], p)
		}
	}
	return out, nil
}

// expectImages checks that exactly the wanted pods run, each with img:
// its spec, its container status (image and imageID), and the --version of
// the binary the lab's kubelet unpacked for it. It returns the imageIDs, by
// app, for comparison with another version's.
func expectImages(t *testing.T, l *lab.Lab, img lab.Images) map[string]string {
	t.Helper()
	ctx := t.Context()
	want := map[string]string{"herald-controller": img.Controller, "herald-speaker": img.Speaker}
	var pods map[string][]corev1.Pod
	var problem string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var err error
		if pods, err = runningPods(ctx, l); err != nil {
			t.Fatal(err)
		}
		problem = ""
		for app, n := range replicas {
			if len(pods[app]) != n {
				problem = fmt.Sprintf("%d running %s pods, want %d", len(pods[app]), app, n)
			}
		}
		if problem == "" || time.Now().After(deadline) {
			break
		}
	}
	if problem != "" {
		t.Fatal(problem)
	}
	ids := map[string]string{}
	for app, ps := range pods {
		for _, p := range ps {
			c := p.Spec.Containers[0]
			if c.Image != want[app] {
				t.Errorf("pod %s: spec image %s, want %s", p.Name, c.Image, want[app])
			}
			if len(p.Status.ContainerStatuses) != 1 {
				t.Errorf("pod %s: %d container statuses, want 1", p.Name, len(p.Status.ContainerStatuses))
				continue
			}
			cs := p.Status.ContainerStatuses[0]
			if cs.Image != want[app] || cs.ImageID == "" || !cs.Ready || cs.State.Running == nil {
				t.Errorf("pod %s: status image %s id %q ready %v running %v, want %s running and ready",
					p.Name, cs.Image, cs.ImageID, cs.Ready, cs.State.Running != nil, want[app])
			}
			if id, ok := ids[app]; ok && id != cs.ImageID {
				t.Errorf("%s pods run two imageIDs: %s and %s", app, id, cs.ImageID)
			}
			ids[app] = cs.ImageID
			// The binary itself says which version it is: the kubelet
			// unpacks each image into the pod's directory (lab.kubelet),
			// the entrypoint is /<binary>.
			bin := filepath.Join(l.Dir, "pods", string(p.UID), "containers", c.Name, app)
			out, err := exec.CommandContext(ctx, bin, "--version").Output()
			if got := strings.Fields(string(out)); err != nil || len(got) < 2 || got[0] != app || got[1] != img.Version {
				t.Errorf("pod %s: %s --version = %q (%v), want %s %s", p.Name, bin, out, err, app, img.Version)
			}
		}
	}
	return ids
}
