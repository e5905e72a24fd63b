package report_test

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/heraldlb/herald/controller/report"
)

// TestMetalLBFromCluster reads the resources a cluster holds into a stream
// Migrate converts (a unit test of the reading; the lab covers a cluster).
func TestMetalLBFromCluster(t *testing.T) {
	pool := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
		"metadata": map[string]any{"name": "lan", "namespace": "metallb-system"},
		"spec":     map[string]any{"addresses": []any{"198.51.100.200-198.51.100.250"}},
	}}
	adv := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
		"metadata": map[string]any{"name": "lan", "namespace": "metallb-system"},
	}}
	lists := map[schema.GroupVersionResource]string{}
	for _, gvr := range report.MetalLBResources {
		lists[gvr] = "List"
	}
	dyn := dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), lists, pool, adv)
	kube := fake.NewClientset(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "metallb-system"}})
	stream, sources, err := report.MetalLBFromCluster(t.Context(), dyn, kube, "metallb-system")
	if err != nil {
		t.Fatal(err)
	}
	m := report.Migrate(sources, stream)
	if !m.Valid || !strings.Contains(m.Config, "198.51.100.200-198.51.100.250") || !strings.Contains(m.Config, "l2Advertisements") {
		t.Errorf("migrated from the cluster:\n%s\nproblems %+v", m.Config, m.Problems)
	}
	if !strings.Contains(strings.Join(sources, ","), "1 ipaddresspools.metallb.io") {
		t.Errorf("sources %q", sources)
	}
}
