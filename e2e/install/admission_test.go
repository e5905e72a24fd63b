package install_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestServerDryRun sends the whole render through the API server's
// validation and admission (kubectl apply --dry-run=server): schema errors,
// unknown fields and refused objects fail here, not at a user's install.
func TestServerDryRun(t *testing.T) {
	if shared == nil {
		t.Skip("no lab: " + skipReason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	abs, err := filepath.Abs(manifests)
	if err != nil {
		t.Fatal(err)
	}
	out, err := shared.Exec(ctx, shared.ControlPlaneNS(), shared.Bin("kubectl"), "--kubeconfig="+shared.Kubeconfig(),
		"apply", "--dry-run=server", "--validate=strict", "-k", abs)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl apply --dry-run=server -k manifests/:\n%s", out)
	if strings.Contains(strings.ToLower(out), "warning") {
		t.Errorf("the API server warned about the render:\n%s", out)
	}
}

// TestPodsAdmitted creates, as a server-side dry run, the pods the
// Deployment and DaemonSet would create, so that PodSecurity and Priority
// admission judge them as they would on a cluster: both are admitted in
// herald-system (privileged, system-*-critical classes resolved), and the
// controller's pod also in a namespace that enforces restricted.
func TestPodsAdmitted(t *testing.T) {
	if shared == nil {
		t.Skip("no lab: " + skipReason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	docs, err := decode(render(t, manifests))
	if err != nil {
		t.Fatal(err)
	}
	templates := map[string]corev1.PodTemplateSpec{}
	for _, d := range docs {
		switch o := d.obj.(type) {
		case *appsv1.Deployment:
			templates[o.Name] = o.Spec.Template
		case *appsv1.DaemonSet:
			templates[o.Name] = o.Spec.Template
		}
	}
	for _, name := range []string{"herald-controller", "herald-speaker"} {
		if _, ok := templates[name]; !ok {
			t.Fatalf("the render has no workload %s", name)
		}
	}

	kube := shared.Kube()
	restricted := "hin-restricted"
	_, err = kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: restricted, Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest",
	}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = kube.CoreV1().Namespaces().Delete(context.Background(), restricted, metav1.DeleteOptions{})
	})
	// ServiceAccount admission wants the pod's account to exist.
	for _, sa := range []string{"herald-controller", "herald-speaker"} {
		if _, err := kube.CoreV1().ServiceAccounts(restricted).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		workload, namespace string
		priority            int32 // 0: refused
	}{
		{"herald-controller", heraldNamespace, 2000000000}, // system-cluster-critical
		{"herald-speaker", heraldNamespace, 2000001000},    // system-node-critical
		{"herald-controller", restricted, 2000000000},
		// The check has teeth: the speaker is beyond restricted.
		{"herald-speaker", restricted, 0},
	} {
		t.Run(tc.workload+"/"+tc.namespace, func(t *testing.T) {
			tmpl := templates[tc.workload]
			pod := &corev1.Pod{ObjectMeta: *tmpl.ObjectMeta.DeepCopy(), Spec: *tmpl.Spec.DeepCopy()}
			pod.Name, pod.Namespace = tc.workload+"-dry-run", tc.namespace
			pod.Spec.NodeName = "node1"
			got, err := kube.CoreV1().Pods(tc.namespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if tc.priority == 0 {
				if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "PodSecurity") {
					t.Fatalf("pod of %s in %s: got error %v, want refused by PodSecurity", tc.workload, tc.namespace, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("pod of %s refused in %s: %v", tc.workload, tc.namespace, err)
			}
			if got.Spec.Priority == nil || *got.Spec.Priority != tc.priority {
				t.Errorf("pod of %s: priority %v, want %d (class %s)", tc.workload, got.Spec.Priority, tc.priority, got.Spec.PriorityClassName)
			}
		})
	}
}
