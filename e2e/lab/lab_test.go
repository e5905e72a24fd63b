package lab_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/heraldlb/herald/e2e/lab"
)

// The package shares one lab; tests use their own Kubernetes namespaces.
var (
	shared     *lab.Lab
	skipReason string
)

func TestMain(m *testing.M) {
	os.Exit(lab.TestMain(m, lab.Config{Prefix: "hlt"}, nil, func(l *lab.Lab, skip string) { shared, skipReason = l, skip }))
}

func needLab(t *testing.T) *lab.Lab {
	t.Helper()
	if shared == nil {
		t.Skip("no lab: " + skipReason)
	}
	return shared
}

func TestNodesReady(t *testing.T) {
	l := needLab(t)
	nodes, err := l.Kube().CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != len(l.Nodes) {
		t.Fatalf("%d nodes in the API, want %d", len(nodes.Items), len(l.Nodes))
	}
	for _, n := range nodes.Items {
		ready := false
		for _, c := range n.Status.Conditions {
			ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
		}
		if !ready || len(n.Status.Addresses) < 2 {
			t.Errorf("node %s: ready=%v addresses=%v", n.Name, ready, n.Status.Addresses)
		}
	}
}

// webService creates pods (name -> node) labelled app=<svc> and a Service for them.
func webService(t *testing.T, l *lab.Lab, ns, name string, typ corev1.ServiceType, pods map[string]string) *corev1.Service {
	t.Helper()
	ctx := t.Context()
	for pod, node := range pods {
		if _, err := l.AddPod(ctx, lab.PodSpec{Namespace: ns, Name: pod, Node: node, Labels: map[string]string{"app": name}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.DeletePod(context.Background(), ns, pod) })
	}
	svc, err := l.Kube().CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:           typ,
			Selector:       map[string]string{"app": name},
			IPFamilyPolicy: new(corev1.IPFamilyPolicyPreferDualStack),
			Ports:          []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WaitReadyEndpoints(ctx, ns, name, len(pods), 20*time.Second); err != nil {
		t.Fatal(err)
	}
	return svc
}

func TestPodReadinessDrivesEndpointSlices(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	webService(t, l, "ready", "web", corev1.ServiceTypeClusterIP, map[string]string{"a": "node1"})
	if err := l.SetPodReady(ctx, "ready", "a", false); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitReadyEndpoints(ctx, "ready", "web", 0, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.SetPodReady(ctx, "ready", "a", true); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitReadyEndpoints(ctx, "ready", "web", 1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestClusterIPFromNode(t *testing.T) {
	l := needLab(t)
	svc := webService(t, l, "clusterip", "web", corev1.ServiceTypeClusterIP, map[string]string{"a": "node2"})
	for _, n := range l.Nodes {
		url := "http://" + net.JoinHostPort(svc.Spec.ClusterIP, "80") + "/"
		body, err := l.HTTPGetEventually(t.Context(), n.NS, url, 10*time.Second)
		if err != nil || !strings.Contains(body, "pod=clusterip/a node=node2") {
			t.Errorf("from %s GET %s = %q, %v", n.Name, url, body, err)
		}
	}
}

func TestNodePortFromClient(t *testing.T) {
	l := needLab(t)
	svc := webService(t, l, "nodeport", "web", corev1.ServiceTypeNodePort, map[string]string{"a": "node1", "b": "node3"})
	port := strconv.Itoa(int(svc.Spec.Ports[0].NodePort))
	for _, n := range l.Nodes {
		for _, ip := range []string{n.IPv4.String(), n.IPv6.String()} {
			url := "http://" + net.JoinHostPort(ip, port) + "/"
			body, err := l.HTTPGetEventually(t.Context(), l.ClientNS(), url, 10*time.Second)
			if err != nil || !strings.HasPrefix(body, "pod=nodeport/") {
				t.Errorf("GET %s = %q, %v", url, body, err)
			}
		}
	}
}

func TestUnreadyPodGetsNoTraffic(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	svc := webService(t, l, "unready", "web", corev1.ServiceTypeNodePort, map[string]string{"a": "node1", "b": "node2"})
	url := "http://" + net.JoinHostPort(l.Nodes[0].IPv4.String(), strconv.Itoa(int(svc.Spec.Ports[0].NodePort))) + "/"
	if _, err := l.HTTPGetEventually(ctx, l.ClientNS(), url, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.SetPodReady(ctx, "unready", "b", false); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitReadyEndpoints(ctx, "unready", "web", 1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// kube-proxy applies the change within its minimum sync period (1 s).
	deadline := time.Now().Add(10 * time.Second)
	for run := 0; ; run++ {
		seenB := false
		for range 20 {
			body, err := l.HTTPGet(ctx, l.ClientNS(), url)
			if err != nil {
				t.Fatal(err)
			}
			seenB = seenB || strings.Contains(body, "pod=unready/b ")
		}
		if !seenB {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the unready pod still gets traffic 10 s after it went unready")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestRouterAnswersVtysh(t *testing.T) {
	l := needLab(t)
	var summary map[string]any
	if err := l.VtyshJSON(t.Context(), "show bgp summary json", &summary); err != nil {
		t.Fatal(err)
	}
	out, err := l.Vtysh(t.Context(), "show running-config")
	if err != nil || !strings.Contains(out, fmt.Sprintf("router bgp %d", lab.RouterASN)) {
		t.Fatalf("running-config = %q, %v", out, err)
	}
	// The external client reaches the lab bridge through the router.
	if _, err := l.Exec(t.Context(), l.ExternalNS(), "ping", "-c1", "-W2", lab.Client4.String()); err != nil {
		t.Fatal(err)
	}
}

func TestCutLinkIsolatesNode(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	node := l.Nodes[1]
	ping := func() error {
		_, err := l.Exec(ctx, l.ClientNS(), "ping", "-c1", "-W1", node.IPv4.String())
		return err
	}
	if err := ping(); err != nil {
		t.Fatal(err)
	}
	if err := l.CutLink(ctx, node.Name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.RestoreLink(context.Background(), node.Name) })
	if ping() == nil {
		t.Fatal("a cut node still answers")
	}
	if err := l.RestoreLink(ctx, node.Name); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for ping() != nil {
		if time.Now().After(deadline) {
			t.Fatal("node unreachable after the link was restored")
		}
	}
}

func TestClientNeighbourTable(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	if _, err := l.Exec(ctx, l.ClientNS(), "ping", "-c1", "-W1", lab.Router4.String()); err != nil {
		t.Fatal(err)
	}
	mac, err := l.MAC(ctx, l.RouterNS(), "eth0")
	if err != nil {
		t.Fatal(err)
	}
	neigh, err := l.Neighbours(ctx, l.ClientNS())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range neigh {
		if n.IP == lab.Router4 && n.MAC == mac {
			return
		}
	}
	t.Fatalf("client neighbours %v lack router %s at %s", neigh, lab.Router4, mac)
}

// A second lab runs beside the shared one (own prefix, same addresses, no
// clash), in nftables mode; a stale copy of it is replaced by Up; Down leaves
// nothing behind.
func TestSecondLabNFTablesStaleAndTeardown(t *testing.T) {
	needLab(t)
	ctx := t.Context()
	cfg := lab.Config{Prefix: lab.TestPrefix("hlu"), Nodes: 1, ProxyMode: "nftables"}
	stale, err := lab.Up(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Abandon it as a crashed run would, then bring the same prefix up again.
	stale.Detach()
	l, err := lab.Up(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if left := lab.Leftovers("nothing", stale.Procs); len(left) > 0 {
		t.Errorf("Up left the stale lab's processes running: %v", left)
	}
	svc := webService(t, l, "nft", "web", corev1.ServiceTypeNodePort, map[string]string{"a": "node1"})
	url := "http://" + net.JoinHostPort(l.Nodes[0].IPv4.String(), strconv.Itoa(int(svc.Spec.Ports[0].NodePort))) + "/"
	if body, err := l.HTTPGetEventually(ctx, l.ClientNS(), url, 10*time.Second); err != nil || !strings.Contains(body, "pod=nft/a") {
		t.Errorf("nftables NodePort GET %s = %q, %v", url, body, err)
	}
	if out, err := l.Exec(ctx, l.Nodes[0].NS, "nft", "list", "tables"); err != nil || !strings.Contains(out, "kube-proxy") {
		t.Errorf("no kube-proxy nftables table in the node: %q, %v", out, err)
	}
	procs := l.Procs
	if err := l.Down(); err != nil {
		t.Fatal(err)
	}
	if left := lab.Leftovers(cfg.Prefix, procs); len(left) > 0 {
		t.Errorf("Down left: %v", left)
	}
	if _, err := os.Stat(l.Dir); os.Getenv("HERALD_LAB_KEEP") == "" && err == nil {
		t.Errorf("Down left the state directory %s", l.Dir)
	}
}

// Without root the lab's tests skip with the reason instead of hanging.
func TestWithoutRootSkips(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("already not root: every lab test here skips")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} { // nobody must reach the copy
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "lab.test")
	if b, err := os.ReadFile(self); err != nil || os.WriteFile(bin, b, 0o755) != nil {
		t.Fatal("copy test binary:", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-test.run=^TestNodesReady$", "-test.v")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SKIP") || !strings.Contains(string(out), "needs root") {
		t.Fatalf("as nobody: err=%v output:\n%s", err, out)
	}
}

func TestRequirementsExplainWhatIsMissing(t *testing.T) {
	err := lab.Requirements(filepath.Join(t.TempDir(), "empty"))
	if err == nil || !strings.Contains(err.Error(), "make tools") {
		t.Fatalf("Requirements(empty bin dir) = %v, want an error naming `make tools`", err)
	}
}
