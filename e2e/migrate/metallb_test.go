package migrate

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"

	"github.com/heraldlb/herald/e2e/lab"
)

// What MetalLB leaves in a cluster, built by hand: its CRDs, its
// configuration as custom resources in its namespace, and Services that
// carry its annotations and the addresses it gave them.

// metalLBNamespace is where MetalLB keeps its configuration, and where
// `migrate metallb --from-cluster` reads it by default.
const metalLBNamespace = "metallb-system"

// allocatedFromPool is the annotation MetalLB sets on a Service it gave
// addresses: the pool they came from.
const allocatedFromPool = "metallb.io/ip-allocated-from-pool"

// crds are the minimal MetalLB CRDs (testdata/metallb-crds.yaml).
const crds = "testdata/metallb-crds.yaml"

// installCRDs creates MetalLB's CRDs and its namespace, waits until the API
// server serves them, and removes both (and so every MetalLB object) when
// the test ends.
func installCRDs(t *testing.T, l *lab.Lab) {
	t.Helper()
	ctx := t.Context()
	file, err := filepath.Abs(crds)
	if err != nil {
		t.Fatal(err)
	}
	nss := l.Kube().CoreV1().Namespaces()
	if _, err := nss.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: metalLBNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := nss.Delete(ctx, metalLBNamespace, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete namespace %s: %v", metalLBNamespace, err)
			return
		}
		// The next test creates it again: wait until it is gone.
		for {
			_, err := nss.Get(ctx, metalLBNamespace, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return
			}
			if ctx.Err() != nil {
				t.Errorf("namespace %s still exists a minute after its deletion (%v)", metalLBNamespace, err)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	if out, err := l.Kubectl(ctx, "apply", "--server-side", "-f", file); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, err := l.Kubectl(ctx, "delete", "-f", file, "--wait=true", "--timeout=60s"); err != nil {
			t.Errorf("delete MetalLB's CRDs: %v: %s", err, out)
		}
	})
	if out, err := l.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=30s", "-f", file); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
}

// metalLBObject is one MetalLB custom resource.
type metalLBObject struct {
	kind, name string
	labels     map[string]string
	spec       map[string]any
}

// resources maps MetalLB's kinds to their resources, at the version MetalLB
// writes them today.
var resources = map[string]schema.GroupVersionResource{
	"IPAddressPool":    {Group: "metallb.io", Version: "v1beta1", Resource: "ipaddresspools"},
	"L2Advertisement":  {Group: "metallb.io", Version: "v1beta1", Resource: "l2advertisements"},
	"BGPAdvertisement": {Group: "metallb.io", Version: "v1beta1", Resource: "bgpadvertisements"},
	"BGPPeer":          {Group: "metallb.io", Version: "v1beta2", Resource: "bgppeers"},
	"BFDProfile":       {Group: "metallb.io", Version: "v1beta1", Resource: "bfdprofiles"},
	"Community":        {Group: "metallb.io", Version: "v1beta1", Resource: "communities"},
}

// createMetalLBObjects creates objs in MetalLB's namespace (they go with
// the namespace and the CRDs when the test ends).
func createMetalLBObjects(t *testing.T, l *lab.Lab, objs ...metalLBObject) {
	t.Helper()
	cfg, err := l.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		gvr, ok := resources[o.kind]
		if !ok {
			t.Fatalf("no MetalLB kind %s", o.kind)
		}
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": gvr.GroupVersion().String(),
			"kind":       o.kind,
			"metadata":   map[string]any{"name": o.name, "namespace": metalLBNamespace},
			"spec":       o.spec,
		}}
		u.SetLabels(o.labels)
		if _, err := dyn.Resource(gvr).Namespace(metalLBNamespace).Create(t.Context(), u, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s/%s: %v", o.kind, o.name, err)
		}
	}
}

// migrated is a Service as MetalLB left it.
type migrated struct {
	name        string
	annotations map[string]string // MetalLB's request annotations
	port        int32             // the Service's one port (to the pods' 8080)
	singleStack bool              // IPv4 only; else PreferDualStack
	pool        string            // the pool MetalLB took the addresses from
	ingress     []string          // the addresses MetalLB wrote, in its order
}

// createMigrated runs two pods labelled app=<s.name> and the Service s
// selecting them, then writes what MetalLB wrote: the pool annotation and
// the addresses in status. It returns the ingress as the API server
// stored it.
func createMigrated(t *testing.T, l *lab.Lab, ns string, i int, s migrated) []corev1.LoadBalancerIngress {
	t.Helper()
	ctx := t.Context()
	for j := range 2 {
		pod := fmt.Sprintf("%s-%d", s.name, j)
		node := l.Nodes[(i+j)%len(l.Nodes)].Name
		if _, err := l.AddPod(ctx, lab.PodSpec{Namespace: ns, Name: pod, Node: node, Labels: map[string]string{"app": s.name}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.DeletePod(context.Background(), ns, pod) })
	}
	policy := corev1.IPFamilyPolicyPreferDualStack
	if s.singleStack {
		policy = corev1.IPFamilyPolicySingleStack
	}
	svcs := l.Kube().CoreV1().Services(ns)
	svc, err := svcs.Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: s.name, Annotations: s.annotations},
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeLoadBalancer,
			Selector:       map[string]string{"app": s.name},
			IPFamilyPolicy: &policy,
			Ports:          []corev1.ServicePort{{Port: s.port, TargetPort: intstr.FromInt32(8080)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svcs.Delete(context.Background(), s.name, metav1.DeleteOptions{}) })

	if svc.Annotations == nil {
		svc.Annotations = map[string]string{}
	}
	svc.Annotations[allocatedFromPool] = s.pool
	if svc, err = svcs.Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc.Status.LoadBalancer.Ingress = nil
	for _, ip := range s.ingress {
		svc.Status.LoadBalancer.Ingress = append(svc.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	if svc, err = svcs.UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := svc.Status.LoadBalancer.Ingress
	var ips []string
	for _, in := range got {
		ips = append(ips, in.IP)
	}
	if strings.Join(ips, ",") != strings.Join(s.ingress, ",") {
		t.Fatalf("Service %s/%s holds %v after writing %v to its status", ns, s.name, ips, s.ingress)
	}
	t.Logf("Service %s/%s as MetalLB left it: annotations %v, ingress %s", ns, s.name, svc.Annotations, ingressString(got))
	return got
}

// urls are the URLs the client GETs for s: one per address, on its port.
func (s migrated) urls() []string {
	var out []string
	for _, ip := range s.ingress {
		out = append(out, "http://"+net.JoinHostPort(ip, strconv.Itoa(int(s.port)))+"/")
	}
	return out
}

// ingressString renders an ingress list with every field set.
func ingressString(in []corev1.LoadBalancerIngress) string {
	var out []string
	for _, i := range in {
		s := "{ip: " + i.IP
		if i.IPMode != nil {
			s += ", ipMode: " + string(*i.IPMode)
		}
		if i.Hostname != "" {
			s += ", hostname: " + i.Hostname
		}
		if len(i.Ports) > 0 {
			s += fmt.Sprintf(", ports: %v", i.Ports)
		}
		out = append(out, s+"}")
	}
	return "[" + strings.Join(out, ", ") + "]"
}
