package controller_test

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/controller"
	"github.com/heraldlb/herald/controller/report"
)

// `kubectl herald validate --cluster` lists exactly the Services that the
// controller then changes when the edit is applied and confirmed, with
// their new addresses where the preview can know them, and writes nothing.
func TestPreviewListsWhatTheControllerChanges(t *testing.T) {
	const before = `
pools:
- name: a
  addresses: ["198.51.100.10-198.51.100.19"]
- name: b
  addresses: ["203.0.113.10-203.0.113.19"]
- name: c
  addresses: ["203.0.113.110-203.0.113.119"]
`
	// b is removed; a loses .10 and .11, c loses .10.
	const edit = `
pools:
- name: a
  addresses: ["198.51.100.12-198.51.100.19"]
- name: c
  addresses: ["203.0.113.111-203.0.113.119"]
`
	e := newEnv(t, before)
	for i := range 4 {
		name := fmt.Sprint("a", i)
		e.svc(name)
		e.waitIPs(e.ns, name, fmt.Sprint("198.51.100.1", i))
	}
	for i := range 4 {
		name := fmt.Sprint("b", i)
		pool := withAnnotation(controller.AnnotationPool, "b")
		if i == 3 {
			pool = withAnnotation("metallb.universe.tf/address-pool", "b") // MetalLB's alias
		}
		e.svc(name, pool)
		e.waitIPs(e.ns, name, fmt.Sprint("203.0.113.1", i))
	}
	for i := range 2 {
		name := fmt.Sprint("c", i)
		e.svc(name, withAnnotation(controller.AnnotationPool, "c"))
		e.waitIPs(e.ns, name, fmt.Sprint("203.0.113.11", i))
	}
	was := e.addresses()
	versions := e.resourceVersions()

	im := e.preview(edit)
	if !im.Valid || im.Preview == nil {
		t.Fatalf("preview: %+v", im)
	}
	if diff := cmp.Diff(versions, e.resourceVersions()); diff != "" {
		t.Fatalf("the preview wrote (-before +after):\n%s", diff)
	}
	listed := map[string]report.ServiceChange{}
	var held []string
	for _, s := range im.Preview.Services {
		listed[strings.TrimPrefix(s.Service, e.ns+"/")] = s
	}
	for _, h := range im.Preview.Held {
		held = append(held, strings.TrimPrefix(h.Service, e.ns+"/"))
	}
	// By hand: the addresses of a0, a1 and c0 left their pools, every b
	// lost its pool.
	want := []string{"a0", "a1", "b0", "b1", "b2", "b3", "c0"}
	if diff := cmp.Diff(want, slices.Sorted(maps.Keys(listed))); diff != "" {
		t.Errorf("preview lists (-by hand +listed):\n%s", diff)
	}
	if diff := cmp.Diff(want, held); diff != "" {
		t.Errorf("preview holds (-by hand +listed):\n%s", diff)
	}
	if !strings.Contains(im.Preview.Confirm, config.ConfirmAnnotation+"="+config.Hash(edit)) {
		t.Errorf("confirm command %q does not confirm %s", im.Preview.Confirm, config.Hash(edit))
	}

	e.setConfig(edit)
	e.waitReason(e.ns, "c0", controller.ReasonConfigChangeHeld, "203.0.113.110")
	e.confirm(config.Hash(edit))
	e.settled()
	now := e.addresses()
	changed := map[string]bool{}
	for name, ips := range was {
		if !slices.Equal(ips, now[name]) {
			changed[name] = true
		}
	}
	if diff := cmp.Diff(slices.Sorted(maps.Keys(listed)), slices.Sorted(maps.Keys(changed))); diff != "" {
		t.Errorf("the controller changed other Services than the preview listed (-listed +changed):\n%s", diff)
	}
	for name, s := range listed {
		if s.OrderDependent {
			continue
		}
		if !slices.Equal(s.Before, was[name]) || !slices.Equal(s.After, now[name]) {
			t.Errorf("%s: preview %v -> %v, controller %v -> %v", name, s.Before, s.After, was[name], now[name])
		}
	}
	// By hand: c0 is alone to move in c and takes its lowest free address;
	// a0 and a1 take .14 and .15 between them, in the order they are synced.
	if got := listed["c0"]; got.OrderDependent || !slices.Equal(got.After, []string{"203.0.113.112"}) {
		t.Errorf("c0: %+v, want 203.0.113.112, known in advance", got)
	}
	var moved []string
	for _, name := range []string{"a0", "a1"} {
		if !listed[name].OrderDependent {
			t.Errorf("%s: %+v, want it flagged as depending on allocation order", name, listed[name])
		}
		moved = append(moved, now[name]...)
	}
	slices.Sort(moved)
	if diff := cmp.Diff([]string{"198.51.100.14", "198.51.100.15"}, moved); diff != "" {
		t.Errorf("a0 and a1 now (-by hand +got):\n%s", diff)
	}
}

// preview runs what `kubectl herald validate -f - --cluster` runs, as admin.
func (e *env) preview(doc string) report.Impact {
	e.t.Helper()
	rc, err := shared.RESTConfig()
	if err != nil {
		e.t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		e.t.Fatal(err)
	}
	im, err := report.ValidateInCluster(e.t.Context(), e.kube, dyn, e.ns, &e.class, "edit.yaml", []byte(doc))
	if err != nil {
		e.t.Fatal(err)
	}
	var table strings.Builder
	_ = im.Table(&table)
	e.t.Logf("preview:\n%s", table.String())
	return im
}

// addresses maps every Service of the env's namespace to its ingress IPs.
func (e *env) addresses() map[string][]string {
	e.t.Helper()
	list, err := e.kube.CoreV1().Services(e.ns).List(e.t.Context(), metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string][]string{}
	for i := range list.Items {
		out[list.Items[i].Name] = ips(&list.Items[i])
	}
	return out
}

// resourceVersions of every Service and ConfigMap of the env's namespace.
func (e *env) resourceVersions() map[string]string {
	e.t.Helper()
	out := map[string]string{}
	svcs, err := e.kube.CoreV1().Services(e.ns).List(e.t.Context(), metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, s := range svcs.Items {
		out["service/"+s.Name] = s.ResourceVersion
	}
	cms, err := e.kube.CoreV1().ConfigMaps(e.ns).List(e.t.Context(), metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, c := range cms.Items {
		out["configmap/"+c.Name] = c.ResourceVersion
	}
	return out
}

// settled waits until no Service is held and nothing has changed for a second.
func (e *env) settled() {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	last, since := "", time.Now()
	for time.Now().Before(deadline) {
		list, err := e.kube.CoreV1().Services(e.ns).List(e.t.Context(), metav1.ListOptions{})
		if err != nil {
			e.t.Fatal(err)
		}
		var b strings.Builder
		held := false
		for i := range list.Items {
			s := &list.Items[i]
			c := meta.FindStatusCondition(s.Status.Conditions, controller.ConditionAllocated)
			held = held || c == nil || c.Reason == controller.ReasonConfigChangeHeld
			fmt.Fprintf(&b, "%s=%s;", s.Name, s.ResourceVersion)
		}
		if b.String() != last {
			last, since = b.String(), time.Now()
		}
		if !held && time.Since(since) > time.Second {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatalf("the controller did not settle: %v", e.addresses())
}
