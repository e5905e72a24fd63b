package lab

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// apiServerURL is the API server as every lab namespace reaches it.
func apiServerURL() string { return "https://" + net.JoinHostPort(APIServer4.String(), "6443") }

// startControlPlane writes the PKI and kubeconfigs and starts etcd,
// kube-apiserver and kube-controller-manager, waiting until the API is ready.
func (l *Lab) startControlPlane(ctx context.Context) error {
	p, err := newPKI(filepath.Join(l.Dir, "pki"))
	if err != nil {
		return err
	}
	serving := []net.IP{APIServer4.AsSlice(), APIServer6.AsSlice(), net.ParseIP("10.96.0.1"), net.ParseIP("2001:db8:96::1"), net.IPv4(127, 0, 0, 1)}
	certs := []struct {
		name, cn string
		orgs     []string
	}{
		{"admin", "lab-admin", []string{"system:masters"}},
		{"kube-controller-manager", "system:kube-controller-manager", nil},
		{"kube-proxy", "system:kube-proxy", nil},
		{"kube-scheduler", "system:kube-scheduler", nil},
	}
	for _, c := range certs {
		if err := p.issue(c.name, c.cn, c.orgs, nil, nil); err != nil {
			return err
		}
	}
	if err := p.issue("apiserver", "kube-apiserver", nil, serving, []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "localhost"}); err != nil {
		return err
	}
	if err := p.serviceAccountKey(); err != nil {
		return err
	}
	if err := p.kubeconfig(l.Kubeconfig(), "admin", apiServerURL()); err != nil {
		return err
	}
	kcmConfig := filepath.Join(l.Dir, "kube-controller-manager.kubeconfig")
	if err := p.kubeconfig(kcmConfig, "kube-controller-manager", apiServerURL()); err != nil {
		return err
	}
	schedConfig := filepath.Join(l.Dir, "kube-scheduler.kubeconfig")
	if err := p.kubeconfig(schedConfig, "kube-scheduler", apiServerURL()); err != nil {
		return err
	}
	for _, n := range l.Nodes {
		if err := p.kubeconfig(l.nodeKubeconfig(n), "kube-proxy", apiServerURL()); err != nil {
			return err
		}
	}

	cp := l.ControlPlaneNS()
	if _, err := l.start("etcd", cp, nil, l.Bin("etcd"),
		"--name=lab", "--data-dir="+filepath.Join(l.Dir, "etcd"),
		"--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=lab=http://127.0.0.1:2380", "--unsafe-no-fsync", "--log-level=warn"); err != nil {
		return err
	}
	if _, err := l.start("kube-apiserver", cp, nil, l.Bin("kube-apiserver"),
		"--etcd-servers=http://127.0.0.1:2379",
		"--bind-address=::", "--secure-port=6443", "--advertise-address="+APIServer4.String(),
		"--tls-cert-file="+p.path("apiserver.crt"), "--tls-private-key-file="+p.path("apiserver.key"),
		"--client-ca-file="+p.path("ca.crt"),
		"--service-account-key-file="+p.path("sa.pub"), "--service-account-signing-key-file="+p.path("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range="+strings.Join(ServiceCIDRs, ","),
		"--authorization-mode=Node,RBAC", "--allow-privileged=true", "--profiling=false",
		"--enable-priority-and-fairness=false", "--max-requests-inflight=2000", "--max-mutating-requests-inflight=1000"); err != nil {
		return err
	}
	if err := l.waitAPI(ctx); err != nil {
		return err
	}
	_, err = l.start("kube-controller-manager", cp, nil, l.Bin("kube-controller-manager"),
		"--kubeconfig="+kcmConfig, "--leader-elect=false", "--use-service-account-credentials=true",
		"--controllers="+strings.Join(controllers, ","),
		"--service-account-private-key-file="+p.path("sa.key"), "--root-ca-file="+p.path("ca.crt"),
		"--bind-address=127.0.0.1", "--secure-port=10257", "--profiling=false",
		"--kube-api-qps=500", "--kube-api-burst=1000", "--concurrent-service-endpoint-syncs=10")
	if err != nil || l.Minimal {
		return err
	}
	_, err = l.start("kube-scheduler", cp, nil, l.Bin("kube-scheduler"),
		"--kubeconfig="+schedConfig, "--authentication-kubeconfig="+schedConfig, "--authorization-kubeconfig="+schedConfig,
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=10259", "--profiling=false")
	return err
}

// controllers are the kube-controller-manager controllers a real cluster needs
// for what Herald touches. node-lifecycle is left out: with no kubelet it
// would mark every Node NotReady.
var controllers = []string{
	"endpointslice-controller", "endpointslice-mirroring-controller",
	"serviceaccount-controller", "serviceaccount-token-controller",
	"namespace-controller", "garbage-collector-controller",
	"root-ca-certificate-publisher-controller",
	// Herald's own workloads, installed from manifests/ (the scheduler
	// places their pods, the lab's kubelet runs them).
	"deployment-controller", "replicaset-controller", "daemonset-controller",
}

func (l *Lab) nodeKubeconfig(n Node) string {
	return filepath.Join(l.Dir, n.Name+".kubeconfig")
}

// waitAPI polls /readyz until the API server is ready or a process died.
func (l *Lab) waitAPI(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var last error
	for {
		body, err := l.Kube().Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(body) == "ok" {
			return nil
		}
		last = err
		for _, name := range []string{"etcd", "kube-apiserver"} {
			if p, ok := l.Proc(name); ok && !p.Alive() {
				return fmt.Errorf("%s exited; see %s", name, l.LogPath(name))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("API server not ready: %v (see %s)", last, l.LogPath("kube-apiserver"))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// registerNodes creates a Ready Node object for every lab node, as a kubelet would.
func (l *Lab) registerNodes(ctx context.Context) error {
	for _, n := range l.Nodes {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{
				"kubernetes.io/hostname": n.Name, "kubernetes.io/os": "linux",
			}},
			Spec: corev1.NodeSpec{PodCIDR: n.Pod4.String(), PodCIDRs: []string{n.Pod4.String(), n.Pod6.String()}},
		}
		created, err := l.Kube().CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("register %s: %w", n.Name, err)
		}
		now := metav1.Now()
		capacity := corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("8Gi"),
			corev1.ResourcePods: resource.MustParse("110"),
		}
		created.Status = corev1.NodeStatus{
			Capacity: capacity, Allocatable: capacity,
			NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "lab", OperatingSystem: "linux", Architecture: runtime.GOARCH},
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: n.IPv4.String()},
				{Type: corev1.NodeInternalIP, Address: n.IPv6.String()},
				{Type: corev1.NodeHostName, Address: n.Name},
			},
			Conditions: []corev1.NodeCondition{
				{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "lab node", LastHeartbeatTime: now, LastTransitionTime: now},
				{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse, Reason: "RouteCreated", LastHeartbeatTime: now, LastTransitionTime: now},
			},
		}
		updated, err := l.Kube().CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("register %s: %w", n.Name, err)
		}
		// Admission taints a new Node not-ready; node-lifecycle, which the lab
		// does not run, would lift it once the Node is Ready.
		updated.Spec.Taints = nil
		if _, err := l.Kube().CoreV1().Nodes().Update(ctx, updated, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("register %s: %w", n.Name, err)
		}
	}
	return nil
}

// startProxies runs kube-proxy in every node and waits until each has synced.
func (l *Lab) startProxies(ctx context.Context) error {
	for _, n := range l.Nodes {
		if _, err := l.start("kube-proxy-"+n.Name, n.NS, nil, l.Bin("kube-proxy"),
			"--kubeconfig="+l.nodeKubeconfig(n), "--hostname-override="+n.Name,
			"--proxy-mode="+l.ProxyMode, "--nodeport-addresses=primary", "--cluster-cidr="+strings.Join(ClusterCIDRs, ","),
			"--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0",
			"--healthz-bind-address=0.0.0.0:10256", "--metrics-bind-address=127.0.0.1:10249"); err != nil {
			return err
		}
	}
	for _, n := range l.Nodes {
		if err := l.waitHTTP(ctx, n.NS, "http://127.0.0.1:10256/healthz", "kube-proxy-"+n.Name); err != nil {
			return err
		}
	}
	return nil
}

// waitHTTP polls url from inside ns until it answers 200, failing early if
// the process proc exits.
func (l *Lab) waitHTTP(ctx context.Context, ns, url, proc string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{DialContext: DialContext(ns)}, Timeout: time.Second}
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p, ok := l.Proc(proc); ok && !p.Alive() {
			return fmt.Errorf("%s exited: %s (see %s)", proc, lastLine(l.LogPath(proc)), l.LogPath(proc))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not healthy at %s (see %s)", proc, url, l.LogPath(proc))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ensureNamespace creates a namespace if missing (idempotent).
func (l *Lab) ensureNamespace(ctx context.Context, name string) error {
	_, err := l.Kube().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// lastLine is the last line a process logged (its reason for exiting).
func lastLine(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
