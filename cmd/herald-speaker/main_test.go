package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/heraldlb/herald/e2e/lab"
	"github.com/heraldlb/herald/speaker"
)

var (
	shared     *lab.Lab
	skipReason string
)

func TestMain(m *testing.M) {
	os.Exit(lab.TestMain(m, lab.Config{Prefix: "hspk", ControlPlaneOnly: true}, nil, func(l *lab.Lab, skip string) { shared, skipReason = l, skip }))
}

// TestHealthzWhileWaitingForKey starts a speaker before its memberlist key
// exists, as on a fresh install before the controller has created it: it
// must answer /healthz (or the kubelet would restart it in a loop, which
// brings no key) and report not ready, until asked to stop.
func TestHealthzWhileWaitingForKey(t *testing.T) {
	if shared == nil {
		t.Skip("no lab: " + skipReason)
	}
	kube := shared.Kube()
	ns, err := kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "speaker-wait-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kube.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{}) })

	addr := freeAddr(t)
	d := speaker.DefaultMemberOptions()
	f := flags{node: "node-a", bind: "198.51.100.1", namespace: ns.Name, configName: "herald", secret: "herald-memberlist",
		metricsAddr: addr, memberPort: d.Port, holdDown: d.HoldDown, probeInterval: d.ProbeInterval, probeTimeout: d.ProbeTimeout,
		suspicionMult: d.SuspicionMult, handBack: time.Second, refresh: 30 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runWith(ctx, zaptest.NewLogger(t), f, kube, nil) }()

	for end := time.Now().Add(5 * time.Second); probe(addr, "/healthz") != http.StatusOK; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("/healthz did not answer 200 within 5 s of the start (last %d)", probe(addr, "/healthz"))
		}
	}
	// Bootstrap tries every 2 s: let it fail a couple of times.
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("the speaker returned while waiting for its key: %v", err)
		default:
		}
		if got := probe(addr, "/healthz"); got != http.StatusOK {
			t.Fatalf("/healthz = %d while waiting for the memberlist key, want 200", got)
		}
		if got := probe(addr, "/readyz"); got != http.StatusServiceUnavailable {
			t.Fatalf("/readyz = %d while waiting for the memberlist key, want 503", got)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the speaker, asked to stop while waiting: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the speaker did not stop within 5 s while waiting for its key")
	}
}

// probe is the status code of GET path on addr, 0 if it did not answer.
func probe(addr, path string) int {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// freeAddr is a loopback address with a port nothing listens on just now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
