package controller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/heraldlb/herald/controller"
)

// sharing is what decides whether two Services may show one address.
type sharing struct {
	key      string
	ports    []string // protocol/port
	local    bool
	selector string
}

func sharingOf(s *corev1.Service) sharing {
	sh := sharing{
		key:      strings.TrimSpace(s.Annotations[controller.AnnotationSharingKey]),
		local:    s.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
		selector: fmt.Sprint(s.Spec.Selector), // fmt prints maps sorted
	}
	for _, p := range s.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		sh.ports = append(sh.ports, fmt.Sprintf("%s/%d", proto, p.Port))
	}
	return sh
}

// mayShare: the same non-empty sharing key, no protocol and port used by
// both and, if either is Local, the same selector.
func mayShare(a, b sharing) bool {
	if a.key == "" || a.key != b.key {
		return false
	}
	for _, p := range a.ports {
		if slices.Contains(b.ports, p) {
			return false
		}
	}
	return !(a.local || b.local) || a.selector == b.selector
}

// requestOf is everything of a Service that Herald's decision may depend on.
func requestOf(s *corev1.Service) string {
	b, _ := json.Marshal(struct {
		Spec        corev1.ServiceSpec
		Labels      map[string]string
		Annotations [3]string
	}{s.Spec, s.Labels, [3]string{s.Annotations[controller.AnnotationIPs], s.Annotations[controller.AnnotationPool], s.Annotations[controller.AnnotationSharingKey]}})
	return string(b)
}

// svcWatch follows every Service update in one namespace, from before the
// first Service exists, and checks the invariants on each.
type svcWatch struct {
	mu      sync.Mutex
	svcs    map[string]*watched
	holders map[string]map[string]bool // address -> Services showing it
	seen    map[string]bool            // violations reported, by text
	events  int
	updates int      // status changes
	grew    []string // a Service holding an address got one more, unasked
	errs    []string
	done    chan struct{}
}

type watched struct {
	svc       *corev1.Service
	ips       []string
	req       string         // requestOf
	edits     int            // request changes seen
	addrEdits int            // edits when the addresses last changed
	since     map[string]int // address -> edits when it appeared
	// asked holds the requests the Service had since the controller last
	// wrote its status: the controller may have judged sharing by any of them.
	asked []sharing
}

func watchServices(t *testing.T, e *env) *svcWatch {
	t.Helper()
	list, err := e.kube.CoreV1().Services(e.ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rw, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return e.kube.CoreV1().Services(e.ns).Watch(ctx, o)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	w := &svcWatch{svcs: map[string]*watched{}, holders: map[string]map[string]bool{}, seen: map[string]bool{}, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for ev := range rw.ResultChan() {
			if ev.Type == watch.Error {
				w.mu.Lock()
				w.violation(fmt.Sprintf("watch error: %v", apierrors.FromObject(ev.Object)))
				w.mu.Unlock()
				continue
			}
			w.observe(ev)
		}
	}()
	t.Cleanup(func() {
		cancel()
		rw.Stop()
		<-w.done
	})
	return w
}

// violation records msg once; the caller holds w.mu.
func (w *svcWatch) violation(msg string) {
	if !w.seen[msg] {
		w.seen[msg] = true
		w.errs = append(w.errs, time.Now().Format("15:04:05.000 ")+msg)
	}
}

func (w *svcWatch) observe(ev watch.Event) {
	s, ok := ev.Object.(*corev1.Service)
	if !ok {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events++
	old := w.svcs[s.Name]
	coHolders := map[string][]string{} // of the addresses it showed, for messages
	if old != nil {
		for _, a := range old.ips {
			delete(w.holders[a], s.Name)
			for h := range w.holders[a] {
				o := w.svcs[h]
				coHolders[a] = append(coHolders[a], fmt.Sprintf("%s (request changed %d times since it showed it)", h, o.edits-o.since[a]))
			}
		}
	}
	if ev.Type == watch.Deleted {
		delete(w.svcs, s.Name)
		return
	}
	cur := &watched{svc: s, ips: ips(s), req: requestOf(s), since: map[string]int{}, asked: []sharing{sharingOf(s)}}
	if old != nil {
		cur.edits, cur.since, cur.asked = old.edits, maps.Clone(old.since), old.asked
		if cur.req != old.req {
			cur.edits++
			cur.asked = append(slices.Clip(cur.asked), sharingOf(s))
		}
		if !equality.Semantic.DeepEqual(old.svc.Status, s.Status) {
			w.updates++
			cur.asked = []sharing{sharingOf(s)}
		}
		for _, a := range old.ips {
			if slices.Contains(cur.ips, a) {
				continue
			}
			if cur.since[a] == cur.edits {
				w.violation(fmt.Sprintf("(b) %s lost %s (%v -> %v) though its request did not change since it showed it; condition: %s; other holders: %v",
					s.Name, a, old.ips, cur.ips, conditionText(s), coHolders[a]))
			}
			delete(cur.since, a)
		}
		grew := len(old.ips) > 0 && len(cur.ips) > len(old.ips) && !slices.ContainsFunc(old.ips, func(a string) bool { return !slices.Contains(cur.ips, a) })
		if grew && cur.edits == old.addrEdits {
			w.grew = append(w.grew, fmt.Sprintf("%s %v -> %v (%s)", s.Name, old.ips, cur.ips, requestSummary(s)))
		}
		cur.addrEdits = old.addrEdits
		if !slices.Equal(old.ips, cur.ips) {
			cur.addrEdits = cur.edits
		}
	}
	for _, a := range cur.ips {
		if _, ok := cur.since[a]; !ok {
			cur.since[a] = cur.edits
		}
		if w.holders[a] == nil {
			w.holders[a] = map[string]bool{}
		}
		w.holders[a][s.Name] = true
	}
	w.svcs[s.Name] = cur
	for _, a := range cur.ips {
		for other := range w.holders[a] {
			if other == s.Name {
				continue
			}
			o := w.svcs[other]
			if !anyMayShare(cur.asked, o.asked) {
				x, y := min(s.Name, other), max(s.Name, other)
				w.violation(fmt.Sprintf("(a) %s is shown by %s and %s, which may not share it: %+v vs %+v",
					a, x, y, sharingOf(w.svcs[x].svc), sharingOf(w.svcs[y].svc)))
			}
		}
	}
}

func anyMayShare(as, bs []sharing) bool {
	for _, a := range as {
		for _, b := range bs {
			if mayShare(a, b) {
				return true
			}
		}
	}
	return false
}

func conditionText(s *corev1.Service) string {
	c := meta.FindStatusCondition(s.Status.Conditions, controller.ConditionAllocated)
	if c == nil {
		return "none"
	}
	return fmt.Sprintf("%s %s: %s", c.Status, c.Reason, c.Message)
}

// caughtUp reports whether the watch has seen exactly the Services of list.
func (w *svcWatch) caughtUp(list []corev1.Service) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.svcs) != len(list) {
		return false
	}
	for _, s := range list {
		if o := w.svcs[s.Name]; o == nil || o.svc.ResourceVersion != s.ResourceVersion {
			return false
		}
	}
	return true
}

func (w *svcWatch) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.errs {
		t.Error(e)
	}
}

func (w *svcWatch) gained() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.grew)
}

func (w *svcWatch) liveLB() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, s := range w.svcs {
		if s.svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
			n++
		}
	}
	return n
}

func (w *svcWatch) withAddresses() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, s := range w.svcs {
		if len(s.ips) > 0 {
			n++
		}
	}
	return n
}

// settle waits until every Service is where it should end up and the watch
// has seen it there, then checks sharing on the final state.
func settle(t *testing.T, p *procEnv, w *svcWatch, bound time.Duration) {
	t.Helper()
	begin := time.Now()
	var problems []string
	var list *corev1.ServiceList
	for time.Since(begin) < bound {
		var err error
		list, err = p.kube.CoreV1().Services(p.ns).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if problems = unsettled(list.Items); len(problems) == 0 && w.caughtUp(list.Items) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		t.Fatalf("not settled %v after churn ended (%d Services):\n%s\nlogs: %s", bound, len(problems), strings.Join(problems, "\n"), p.logPaths())
	}
	if !w.caughtUp(list.Items) {
		t.Fatalf("the watch did not catch up with the Services within %v", bound)
	}
	reasons := map[string]int{}
	for i := range list.Items {
		if c := meta.FindStatusCondition(list.Items[i].Status.Conditions, controller.ConditionAllocated); c != nil {
			reasons[c.Reason]++
		}
	}
	p.logf("settled after %v; conditions by reason: %v", time.Since(begin).Round(time.Millisecond), reasons)
	byAddr := map[string][]*corev1.Service{}
	for i := range list.Items {
		for _, a := range ips(&list.Items[i]) {
			byAddr[a] = append(byAddr[a], &list.Items[i])
		}
	}
	for a, ss := range byAddr {
		for i, x := range ss {
			for _, y := range ss[i+1:] {
				if !mayShare(sharingOf(x), sharingOf(y)) {
					t.Errorf("at the end %s is shown by %s and %s, which may not share it", a, x.Name, y.Name)
				}
			}
		}
	}
}

// unsettled lists the Services that are not where they should end up: every
// LoadBalancer has an address and condition Allocated, except those whose
// pool is exhausted, whose requested address another Service rightly holds,
// or whose request is invalid (the condition says which, and is right); no
// other Service has a trace of Herald.
func unsettled(svcs []corev1.Service) []string {
	shown := map[netip.Addr][]*corev1.Service{}
	for i := range svcs {
		for _, a := range ips(&svcs[i]) {
			x := netip.MustParseAddr(a)
			shown[x] = append(shown[x], &svcs[i])
		}
	}
	tightFull := func(is4 bool) bool {
		n := 0
		for a := range shown {
			if inTight(a) && a.Is4() == is4 {
				n++
			}
		}
		return n == tightSize[is4]
	}
	var out []string
	for i := range svcs {
		s := &svcs[i]
		cond := meta.FindStatusCondition(s.Status.Conditions, controller.ConditionAllocated)
		if s.Spec.Type != corev1.ServiceTypeLoadBalancer {
			if len(s.Status.LoadBalancer.Ingress) > 0 || cond != nil || s.Annotations[controller.AnnotationAllocatedFrom] != "" {
				out = append(out, fmt.Sprintf("%s: %s but still has status %+v, annotation %q", s.Name, s.Spec.Type, s.Status, s.Annotations[controller.AnnotationAllocatedFrom]))
			}
			continue
		}
		if cond == nil {
			out = append(out, s.Name+": no condition")
			continue
		}
		if cond.Status == metav1.ConditionTrue {
			if len(s.Status.LoadBalancer.Ingress) == 0 {
				out = append(out, fmt.Sprintf("%s: no address, condition %s", s.Name, conditionText(s)))
			}
			continue
		}
		// A failed request keeps the addresses it still allows (a
		// RequireDualStack Service may keep one family): the failure must
		// be justified either way.
		ok := false
		switch cond.Reason {
		case controller.ReasonPoolExhausted:
			full4, full6 := tightFull(true), tightFull(false)
			if s.Annotations[controller.AnnotationPool] == "tight" {
				var full []bool
				for _, f := range s.Spec.IPFamilies {
					full = append(full, f == corev1.IPv4Protocol && full4 || f == corev1.IPv6Protocol && full6)
				}
				if *s.Spec.IPFamilyPolicy == corev1.IPFamilyPolicyRequireDualStack {
					ok = slices.Contains(full, true)
				} else {
					ok = !slices.Contains(full, false)
				}
			}
		case controller.ReasonRequestedAddressUnavailable:
			for _, a := range requested(s) {
				for _, h := range shown[a] {
					ok = ok || h.Name != s.Name && !mayShare(sharingOf(s), sharingOf(h))
				}
			}
		case controller.ReasonInvalidRequest:
			_, err := controller.ParseIPs(s.Annotations[controller.AnnotationIPs])
			ok = err != nil && s.Annotations[controller.AnnotationIPs] != "" ||
				s.Spec.LoadBalancerIP != "" && s.Annotations[controller.AnnotationIPs] != "" && s.Annotations[controller.AnnotationIPs] != s.Spec.LoadBalancerIP
		case controller.ReasonNoMatchingPool:
			ok = s.Annotations[controller.AnnotationPool] == "nope"
		}
		if !ok {
			out = append(out, fmt.Sprintf("%s: has %v, condition %s (request %s)", s.Name, ips(s), conditionText(s), requestSummary(s)))
		}
	}
	return out
}

func requested(s *corev1.Service) []netip.Addr {
	if v := s.Annotations[controller.AnnotationIPs]; v != "" {
		a, _ := controller.ParseIPs(v)
		return a
	}
	if a, err := netip.ParseAddr(s.Spec.LoadBalancerIP); err == nil {
		return []netip.Addr{a}
	}
	return nil
}

func requestSummary(s *corev1.Service) string {
	var fams []string
	for _, f := range s.Spec.IPFamilies {
		fams = append(fams, string(f))
	}
	var keys []string
	for _, k := range slices.Sorted(maps.Keys(s.Annotations)) {
		if strings.HasPrefix(k, "herald.dev/") {
			keys = append(keys, k+"="+s.Annotations[k])
		}
	}
	return fmt.Sprintf("%s %v %v lbIP=%q %+v", *s.Spec.IPFamilyPolicy, fams, keys, s.Spec.LoadBalancerIP, sharingOf(s))
}
