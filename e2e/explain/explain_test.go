package explain_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/heraldlb/herald/controller"
	"github.com/heraldlb/herald/controller/report"
	"github.com/heraldlb/herald/e2e/lab"
	"github.com/heraldlb/herald/speaker"
)

const converge = 30 * time.Second

// TestReachable: a Service in L2 and one in BGP are reachable and explain
// says so; status shows both. With HERALD_README_OUT set, the two outputs
// are written there (the README shows them).
func TestReachable(t *testing.T) {
	l := needLab(t)
	deploy(t, l, service{name: "web", pods: []string{"node1", "node2"}})
	deploy(t, l, service{name: "api", local: true, pods: []string{"node1", "node3"}, annotations: map[string]string{controller.AnnotationPool: "routed"}})
	web := explainUntil(t, l, "web", report.StepL2, "", true, converge)
	explainUntil(t, l, "api", report.StepBGP, "", true, converge)
	url := "http://" + net.JoinHostPort(web.Addresses[0], "80") + "/"
	if _, err := l.HTTPGetEventually(t.Context(), l.ClientNS(), url, 10*time.Second); err != nil {
		t.Errorf("explain says reachable, but GET %s: %v", url, err)
	}
	// Nothing changes now: a minute of it costs no write.
	time.Sleep(3 * time.Second) // Events and the last condition writes of the start
	states, services := steadyWrites(t, l, time.Minute)
	t.Logf("steady state for 1m: %d SpeakerState writes (3 nodes), %d Service writes", states, services)
	if states+services > 0 {
		t.Errorf("steady state for 1m: %d SpeakerState writes, %d Service writes; want none", states, services)
	}
	status := render(t, report.BuildStatus(read(t, l, "")))
	t.Logf("kubectl herald status:\n%s", status)
	if dir := os.Getenv("HERALD_README_OUT"); dir != "" {
		for name, text := range map[string]string{"status.txt": status, "explain.txt": render(t, web)} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestNoPoolMatches(t *testing.T) {
	l := needLab(t)
	deploy(t, l, service{name: "nopool", pods: []string{"node1"}, annotations: map[string]string{controller.AnnotationPool: "nowhere"}})
	explainUntil(t, l, "nopool", report.StepPool, controller.ReasonNoMatchingPool, false, converge)
}

func TestPoolExhausted(t *testing.T) {
	l := needLab(t)
	tiny := map[string]string{controller.AnnotationPool: "tiny"}
	deploy(t, l, service{name: "first", pods: []string{"node1"}, annotations: tiny})
	explainUntil(t, l, "first", report.StepL2, "", true, converge)
	deploy(t, l, service{name: "second", pods: []string{"node1"}, annotations: tiny})
	explainUntil(t, l, "second", report.StepPool, controller.ReasonPoolExhausted, false, converge)
}

func TestRequestedAddressTaken(t *testing.T) {
	l := needLab(t)
	ip := map[string]string{controller.AnnotationIPs: "198.51.100.205"}
	deploy(t, l, service{name: "holder", pods: []string{"node1"}, annotations: ip})
	explainUntil(t, l, "holder", report.StepL2, "", true, converge)
	deploy(t, l, service{name: "taker", pods: []string{"node1"}, annotations: ip})
	explainUntil(t, l, "taker", report.StepPool, controller.ReasonRequestedAddressUnavailable, false, converge)
}

func TestSharingConflict(t *testing.T) {
	l := needLab(t)
	sharing := map[string]string{controller.AnnotationIPs: "198.51.100.206", controller.AnnotationSharingKey: "front"}
	deploy(t, l, service{name: "front", pods: []string{"node1"}, annotations: sharing})
	explainUntil(t, l, "front", report.StepL2, "", true, converge)
	// Same key, but port 80 again: the two may not share the address.
	deploy(t, l, service{name: "front2", pods: []string{"node2"}, annotations: sharing})
	explainUntil(t, l, "front2", report.StepPool, report.ReasonSharingConflict, false, converge)
}

func TestNoReadyEndpoint(t *testing.T) {
	l := needLab(t)
	deploy(t, l, service{name: "empty"})
	x := explainUntil(t, l, "empty", report.StepEndpoints, report.ReasonNoReadyEndpoint, false, converge)
	if r := stepReason(x, report.StepL2); r != report.ReasonNoReadyEndpoint {
		t.Errorf("l2 reason %q, want %s", r, report.ReasonNoReadyEndpoint)
	}
}

// The edge pool is announced from node3 only; a Local Service whose pod
// runs on node1 has no node that may announce it.
func TestLocalWithoutLocalEndpoint(t *testing.T) {
	l := needLab(t)
	deploy(t, l, service{name: "edgy", local: true, pods: []string{"node1"}, annotations: map[string]string{controller.AnnotationPool: "edge"}})
	explainUntil(t, l, "edgy", report.StepL2, report.ReasonNoLocalEndpoint, false, converge)
}

// node3, the only node announcing the edge pool, is excluded.
func TestNodeExcluded(t *testing.T) {
	l := needLab(t)
	label(t, l, "node3", speaker.LabelExclude, "")
	deploy(t, l, service{name: "fenced", pods: []string{"node1"}, annotations: map[string]string{controller.AnnotationPool: "edge"}})
	explainUntil(t, l, "fenced", report.StepL2, report.ReasonNodeExcluded, false, converge)
}

func TestNoL2Advertisement(t *testing.T) {
	l := needLab(t)
	deploy(t, l, service{name: "dim", pods: []string{"node1"}, annotations: map[string]string{controller.AnnotationPool: "dark"}})
	explainUntil(t, l, "dim", report.StepL2, report.ReasonNoL2Advertisement, false, converge)
}

// The cut pool goes to the peer "gone", which nothing answers.
func TestBGPPeerDown(t *testing.T) {
	l := needLab(t)
	deploy(t, l, service{name: "island", pods: []string{"node1"}, annotations: map[string]string{controller.AnnotationPool: "cut"}})
	explainUntil(t, l, "island", report.StepBGP, report.ReasonPeerDown, false, converge)
}

// kube-proxy in IPVS mode without strictARP breaks L2; the lab's
// kube-proxy keeps no ConfigMap, so the test writes kubeadm's.
func TestIPVSWithoutStrictARP(t *testing.T) {
	l := needLab(t)
	cms := l.Kube().CoreV1().ConfigMaps(metav1.NamespaceSystem)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: report.KubeProxyConfigMap},
		Data: map[string]string{report.KubeProxyConfigKey: "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\nipvs:\n  strictARP: false\n"}}
	if _, err := cms.Create(t.Context(), cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cms.Delete(context.Background(), cm.Name, metav1.DeleteOptions{}) })
	deploy(t, l, service{name: "ipvs", pods: []string{"node2"}})
	explainUntil(t, l, "ipvs", report.StepKubeProxy, report.ReasonIPVSWithoutStrictARP, false, converge)
}

// Last: an invalid document; a new Service waits, and explain says why.
func TestInvalidConfig(t *testing.T) {
	l := needLab(t)
	if err := l.ApplyHeraldConfig(t.Context(), "pools:\n- name: lan\n  addresses: [198.51.100.0/33]\n"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.ApplyHeraldConfig(context.Background(), labConfig); err != nil {
			t.Errorf("restore the configuration: %v", err)
		}
	})
	deploy(t, l, service{name: "late", pods: []string{"node1"}})
	x := explainUntil(t, l, "late", report.StepPool, controller.ReasonConfigInvalid, false, converge)
	if r := stepReason(x, report.StepConfig); r != controller.ReasonConfigInvalid {
		t.Errorf("config reason %q, want %s", r, controller.ReasonConfigInvalid)
	}
	if st := report.BuildStatus(read(t, l, "")); st.Config.State != report.ConfigInvalid || len(st.Config.Problems) == 0 {
		t.Errorf("status config %+v, want invalid with its problems", st.Config)
	}
}

// label sets a label on a node until the test ends.
func label(t *testing.T, l *lab.Lab, node, key, value string) {
	t.Helper()
	patch := func(ctx context.Context, v *string) error {
		var p string
		if v == nil {
			p = `{"metadata":{"labels":{"` + key + `":null}}}`
		} else {
			p = `{"metadata":{"labels":{"` + key + `":"` + *v + `"}}}`
		}
		_, err := l.Kube().CoreV1().Nodes().Patch(ctx, node, types.StrategicMergePatchType, []byte(p), metav1.PatchOptions{})
		return err
	}
	if err := patch(t.Context(), &value); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := patch(context.Background(), nil); err != nil {
			t.Errorf("remove label %s from %s: %v", key, node, err)
		}
	})
}
