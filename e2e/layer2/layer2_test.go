package layer2_test

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/heraldlb/herald/e2e/lab"
	"github.com/heraldlb/herald/speaker"
	"github.com/heraldlb/herald/speaker/state"
)

func nodeNames(l *lab.Lab) []string {
	var out []string
	for _, n := range l.Nodes {
		out = append(out, n.Name)
	}
	return out
}

func TestClientReachesVIPBothFamilies(t *testing.T) {
	l := needLab(t)
	app(t, l, "reach", "web", "198.51.100.201,2001:db8:1::201", false, map[string]string{"a": "node1", "b": "node2"})
	for _, vip := range []string{"198.51.100.201", "2001:db8:1::201"} {
		body := getEventually(t, l, vip, 20*time.Second)
		if !strings.HasPrefix(body, "pod=reach/") {
			t.Errorf("GET %s = %q", vip, body)
		}
		want := speaker.Winner(nodeNames(l), netip.MustParseAddr(vip))
		waitAnswerer(t, l, vip, want, 5*time.Second)
	}
	// The controller reports the owners, from the speakers' SpeakerStates,
	// in the Service's status.
	owner4 := speaker.Winner(nodeNames(l), netip.MustParseAddr("198.51.100.201"))
	owner6 := speaker.Winner(nodeNames(l), netip.MustParseAddr("2001:db8:1::201"))
	wantMsg := "198.51.100.201 announced from node " + owner4 + " on eth0 via L2; 2001:db8:1::201 announced from node " + owner6 + " on eth0 via L2"
	deadline := time.Now().Add(10 * time.Second)
	for {
		svc, err := l.Kube().CoreV1().Services("reach").Get(t.Context(), "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c := meta.FindStatusCondition(svc.Status.Conditions, state.ConditionAnnounced)
		if c != nil && c.Status == metav1.ConditionTrue && c.Reason == state.ReasonAnnouncedL2 && c.Message == wantMsg {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition %s = %+v, want True %s %q", state.ConditionAnnounced, c, state.ReasonAnnouncedL2, wantMsg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestReadinessDecidesAnnouncement(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	vip := "198.51.100.202"
	app(t, l, "readiness", "web", vip, false, map[string]string{"a": "node3"})
	getEventually(t, l, vip, 20*time.Second)
	if err := l.SetPodReady(ctx, "readiness", "a", false); err != nil {
		t.Fatal(err)
	}
	waitAnswerer(t, l, vip, "", 10*time.Second)
	if err := l.SetPodReady(ctx, "readiness", "a", true); err != nil {
		t.Fatal(err)
	}
	getEventually(t, l, vip, 10*time.Second)
}

func TestLocalPolicyFollowsThePod(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	vip := "198.51.100.203"
	app(t, l, "local", "web", vip, true, map[string]string{"a": "node2"})
	waitAnswerer(t, l, vip, "node2", 20*time.Second)
	body := getEventually(t, l, vip, 10*time.Second)
	if !strings.Contains(body, "client="+lab.Client4.String()+":") {
		t.Errorf("with Local policy the pod should see the client's own address: %q", body)
	}
	// Move the pod to node1.
	if _, err := l.AddPod(ctx, lab.PodSpec{Namespace: "local", Name: "b", Node: "node1", Labels: map[string]string{"app": "web"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.DeletePod(context.Background(), "local", "b") })
	if err := l.DeletePod(ctx, "local", "a"); err != nil {
		t.Fatal(err)
	}
	waitAnswerer(t, l, vip, "node1", 10*time.Second)
	getEventually(t, l, vip, 10*time.Second)
}

func TestServiceDeletedNobodyAnswers(t *testing.T) {
	l := needLab(t)
	vip := "198.51.100.204"
	app(t, l, "deleted", "web", vip, false, map[string]string{"a": "node1"})
	getEventually(t, l, vip, 20*time.Second)
	if err := l.Kube().CoreV1().Services("deleted").Delete(t.Context(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitAnswerer(t, l, vip, "", 10*time.Second)
}

func TestHardFailover(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	vip := "198.51.100.205"
	app(t, l, "failover", "web", vip, false, map[string]string{"a": "node1", "b": "node2", "c": "node3"})
	getEventually(t, l, vip, 20*time.Second)
	owner := answerer(t, l, vip)
	if owner == "" {
		t.Fatal("nobody answers")
	}
	if err := l.CutLink(ctx, owner); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.RestoreLink(context.Background(), owner) })
	start := time.Now()
	deadline := start.Add(15 * time.Second)
	for {
		body, err := get(t, l, vip)
		if err == nil && !strings.Contains(body, "node="+owner) {
			t.Logf("traffic flows again %v after the cut (served by %q)", time.Since(start).Round(time.Millisecond), strings.TrimSpace(body))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no GET succeeded through another node within 15 s of cutting %s", owner)
		}
	}
	if now := answerer(t, l, vip); now == owner || now == "" {
		t.Fatalf("after the cut %q answers", now)
	}
}

func TestGracefulHandover(t *testing.T) {
	l := needLab(t)
	vip := "198.51.100.206"
	app(t, l, "graceful", "web", vip, false, map[string]string{"a": "node1", "b": "node2", "c": "node3"})
	getEventually(t, l, vip, 20*time.Second)
	owner := answerer(t, l, vip)
	l.HoldContainer(lab.SpeakerName(owner))
	p, ok := l.Proc(lab.SpeakerName(owner))
	if !ok {
		t.Fatalf("no speaker process for %s", owner)
	}
	if err := p.Signal(15); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = l.StartSpeaker(context.Background(), owner) })
	others := slices.DeleteFunc(nodeNames(l), func(n string) bool { return n == owner })
	waitAnswerer(t, l, vip, speaker.Winner(others, netip.MustParseAddr(vip)), 5*time.Second)
	getEventually(t, l, vip, 5*time.Second)
}

func TestAPIServerAwayKeepsAnswering(t *testing.T) {
	l := needLab(t)
	vip := "198.51.100.207"
	app(t, l, "apidown", "web", vip, false, map[string]string{"a": "node1", "b": "node3"})
	getEventually(t, l, vip, 20*time.Second)
	owner := speaker.Winner(nodeNames(l), netip.MustParseAddr(vip))
	waitAnswerer(t, l, vip, owner, 15*time.Second) // every speaker settled
	api, ok := l.Proc("kube-apiserver")
	if !ok {
		t.Fatal("no kube-apiserver process")
	}
	if err := api.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer api.Signal(syscall.SIGCONT)
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(time.Second) {
		if _, err := get(t, l, vip); err != nil {
			t.Fatalf("with the API server stopped, GET %s failed: %v", vip, err)
		}
		if got := answerer(t, l, vip); got != owner {
			t.Fatalf("with the API server stopped, %s moved from %s to %q", vip, owner, got)
		}
	}
}

func TestExcludeLabelMovesTheAddress(t *testing.T) {
	l := needLab(t)
	vip := "198.51.100.208"
	app(t, l, "exclude", "web", vip, false, map[string]string{"a": "node1", "b": "node2", "c": "node3"})
	getEventually(t, l, vip, 20*time.Second)
	owner := speaker.Winner(nodeNames(l), netip.MustParseAddr(vip))
	waitAnswerer(t, l, vip, owner, 15*time.Second)
	label := func(add bool) {
		ctx := context.Background() // also from Cleanup
		n, err := l.Kube().CoreV1().Nodes().Get(ctx, owner, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if add {
			n.Labels[speaker.LabelExclude] = ""
		} else {
			delete(n.Labels, speaker.LabelExclude)
		}
		if _, err := l.Kube().CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	label(true)
	t.Cleanup(func() { label(false) })
	others := slices.DeleteFunc(nodeNames(l), func(n string) bool { return n == owner })
	waitAnswerer(t, l, vip, speaker.Winner(others, netip.MustParseAddr(vip)), 10*time.Second)
	getEventually(t, l, vip, 5*time.Second)
	label(false)
	waitAnswerer(t, l, vip, owner, 15*time.Second)
}

func TestInvalidConfigKeepsAnnouncements(t *testing.T) {
	l := needLab(t)
	vip := "198.51.100.209"
	app(t, l, "badconfig", "web", vip, false, map[string]string{"a": "node2"})
	getEventually(t, l, vip, 20*time.Second)
	owner := answerer(t, l, vip)
	if err := l.ApplyHeraldConfig(t.Context(), "pools: [{name: lan, addresses: [not-an-address]}]\n"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.ApplyHeraldConfig(context.Background(), labConfig) })
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
		if got := answerer(t, l, vip); got != owner {
			t.Fatalf("after an invalid config %s is answered by %q, want %q", vip, got, owner)
		}
		if _, err := get(t, l, vip); err != nil {
			t.Fatalf("after an invalid config GET %s: %v", vip, err)
		}
	}
}

func TestNetworkUnavailableMovesTheAddress(t *testing.T) {
	l := needLab(t)
	vip := "198.51.100.210"
	app(t, l, "netunavail", "web", vip, false, map[string]string{"a": "node1", "b": "node2", "c": "node3"})
	getEventually(t, l, vip, 20*time.Second)
	owner := speaker.Winner(nodeNames(l), netip.MustParseAddr(vip))
	waitAnswerer(t, l, vip, owner, 15*time.Second)
	setUnavailable := func(v corev1.ConditionStatus) {
		ctx := context.Background()
		n, err := l.Kube().CoreV1().Nodes().Get(ctx, owner, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range n.Status.Conditions {
			if n.Status.Conditions[i].Type == corev1.NodeNetworkUnavailable {
				n.Status.Conditions[i].Status = v
			}
		}
		if _, err := l.Kube().CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setUnavailable(corev1.ConditionTrue)
	t.Cleanup(func() { setUnavailable(corev1.ConditionFalse) })
	others := slices.DeleteFunc(nodeNames(l), func(n string) bool { return n == owner })
	waitAnswerer(t, l, vip, speaker.Winner(others, netip.MustParseAddr(vip)), 10*time.Second)
	getEventually(t, l, vip, 5*time.Second)
}

// A node whose link comes back takes its address back only after the
// hold-down, and without a lost GET. Local policy with a pod on every node
// keeps kube-proxy from sending GETs to the cut node's pod (which Kubernetes,
// not Herald, would have to mark unready).
func TestFailbackAfterHoldDown(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	vip := "198.51.100.211"
	app(t, l, "failback", "web", vip, true, map[string]string{"a": "node1", "b": "node2", "c": "node3"})
	getEventually(t, l, vip, 20*time.Second)
	owner := speaker.Winner(nodeNames(l), netip.MustParseAddr(vip))
	waitAnswerer(t, l, vip, owner, 15*time.Second)
	if err := l.CutLink(ctx, owner); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.RestoreLink(context.Background(), owner) })
	others := slices.DeleteFunc(nodeNames(l), func(n string) bool { return n == owner })
	waitAnswerer(t, l, vip, speaker.Winner(others, netip.MustParseAddr(vip)), 10*time.Second)
	getEventually(t, l, vip, 5*time.Second)

	if err := l.RestoreLink(ctx, owner); err != nil {
		t.Fatal(err)
	}
	restored := time.Now()
	lost, back := 0, time.Duration(0)
	for end := restored.Add(12 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if _, err := get(t, l, vip); err != nil {
			lost++
		}
		if back == 0 && answerer(t, l, vip) == owner {
			back = time.Since(restored)
		}
	}
	if back == 0 {
		t.Fatalf("%s never took %s back after its link returned", owner, vip)
	}
	if back < 2*time.Second { // the tests' --hold-down
		t.Errorf("%s took %s back %v after its link returned, before the 2 s hold-down", owner, vip, back)
	}
	if lost > 0 {
		t.Errorf("%d GETs lost while %s came back and took %s back", lost, owner, vip)
	}
	t.Logf("taken back %v after the link returned, no GET lost", back.Round(time.Millisecond))
}
