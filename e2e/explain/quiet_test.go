package explain_test

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	"github.com/heraldlb/herald/e2e/lab"
	"github.com/heraldlb/herald/speaker/state"
)

// steadyWrites counts, for d, the writes to the SpeakerStates and to the
// Services of namespace ns while nothing changes in the cluster: speakers
// write their state only on change, and the controller the Announced
// condition only on change.
func steadyWrites(t *testing.T, l *lab.Lab, d time.Duration) (states, services int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	rc, err := l.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	// Watch from now: from the resourceVersion of a list.
	sl, err := dyn.Resource(state.GVR).Namespace("herald-system").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sw, err := dyn.Resource(state.GVR).Namespace("herald-system").Watch(ctx, metav1.ListOptions{ResourceVersion: sl.GetResourceVersion()})
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Stop()
	vl, err := l.Kube().CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vw, err := l.Kube().CoreV1().Services(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: vl.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer vw.Stop()
	count := func(w watch.Interface, n *int) {
		for ev := range w.ResultChan() {
			if ev.Type == watch.Modified || ev.Type == watch.Added || ev.Type == watch.Deleted {
				*n++
			}
		}
	}
	done := make(chan struct{})
	go func() { count(vw, &services); close(done) }()
	count(sw, &states)
	<-done
	return states, services
}
