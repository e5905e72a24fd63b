package deploy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/heraldlb/herald/e2e/lab"
)

// Two Herald versions, pushed to the lab registry once per run.
var (
	pushMu sync.Mutex
	pushed = map[string]lab.Images{}
)

func images(t *testing.T, l *lab.Lab, version string) lab.Images {
	t.Helper()
	pushMu.Lock()
	defer pushMu.Unlock()
	if img, ok := pushed[version]; ok {
		return img
	}
	start := time.Now()
	img, err := l.PushImages(t.Context(), version)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("images %s built and pushed in %v", version, time.Since(start).Round(time.Millisecond))
	pushed[version] = img
	return img
}

// install writes Herald's configuration, installs img from manifests/ and
// uninstalls Herald when the test ends unless the test did.
func install(t *testing.T, l *lab.Lab, config string, img lab.Images) *lab.Install {
	t.Helper()
	ctx := t.Context()
	if err := l.ApplyHeraldConfig(ctx, config); err != nil {
		t.Fatal(err)
	}
	in := &lab.Install{Images: img}
	t.Cleanup(func() {
		if !l.Installed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := l.UninstallHerald(ctx, *in); err != nil {
			t.Errorf("uninstall: %v", err)
		}
	})
	if err := l.InstallHerald(ctx, *in); err != nil {
		t.Fatal(err)
	}
	return in
}

// app runs a pod on every node labelled app=<name> in namespace ns and a
// dual-stack LoadBalancer Service for them asking for the given addresses.
func app(t *testing.T, l *lab.Lab, ns, name, ips string) {
	t.Helper()
	ctx := t.Context()
	for _, n := range l.Nodes {
		pod := name + "-" + n.Name
		if _, err := l.AddPod(ctx, lab.PodSpec{Namespace: ns, Name: pod, Node: n.Name, Labels: map[string]string{"app": name}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.DeletePod(context.Background(), ns, pod) })
	}
	policy := corev1.IPFamilyPolicyPreferDualStack
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{"herald.dev/ips": ips}},
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeLoadBalancer,
			Selector:       map[string]string{"app": name},
			IPFamilyPolicy: &policy,
			Ports:          []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	if _, err := l.Kube().CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Kube().CoreV1().Services(ns).Delete(context.Background(), name, metav1.DeleteOptions{}) })
}

// ingress returns the Service's status.loadBalancer.ingress.
func ingress(t *testing.T, l *lab.Lab, ns, name string) []corev1.LoadBalancerIngress {
	t.Helper()
	svc, err := l.Kube().CoreV1().Services(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc.Status.LoadBalancer.Ingress
}

func url(vip string) string { return "http://" + net.JoinHostPort(vip, "80") + "/" }

// getEventually GETs url from namespace ns until it answers.
func getEventually(t *testing.T, l *lab.Lab, ns, vip string, timeout time.Duration) {
	t.Helper()
	if _, err := l.HTTPGetSteady(t.Context(), ns, url(vip), timeout); err != nil {
		t.Fatalf("GET %s from %s: %v", vip, ns, err)
	}
}

const (
	probeEvery = 20 * time.Millisecond
	probeFor   = 4 * time.Minute // no probe outlives this, whatever its test does
)

// startProbe GETs vip from namespace ns every probeEvery until the test
// ends or it is stopped (lab.Probe).
func startProbe(t *testing.T, ns, vip string) *lab.Probe {
	p := lab.StartProbe(ns, url(vip), probeEvery, probeFor)
	t.Cleanup(p.Stop)
	return p
}

// macWatch counts how often the client's neighbour entry for an address
// changes MAC: the moves of that address the client sees. A move undone
// within a second is two nodes answering at once (a planned move waits out
// a hold-down or a hand-back): flaps counts those.
type macWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
	moves  int
	flaps  []string
}

func watchMAC(t *testing.T, l *lab.Lab, ns, vip string) *macWatch {
	ctx, cancel := context.WithTimeout(context.Background(), probeFor)
	w := &macWatch{cancel: cancel, done: make(chan struct{})}
	want := netip.MustParseAddr(vip)
	go func() {
		defer close(w.done)
		last, prev, lastMove := "", "", time.Time{}
		for ctx.Err() == nil {
			if ns, err := l.Neighbours(ctx, ns); err == nil {
				for _, n := range ns {
					if n.IP != want || n.MAC == "" || n.MAC == last {
						continue
					}
					if last != "" {
						w.moves++
						if n.MAC == prev && time.Since(lastMove) < time.Second {
							w.flaps = append(w.flaps, fmt.Sprintf("%s -> %s -> %s within %v at %s", prev, last, n.MAC,
								time.Since(lastMove).Round(time.Millisecond), time.Now().UTC().Format("15:04:05.000")))
						}
						lastMove = time.Now()
					}
					prev, last = last, n.MAC
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *macWatch) stop() {
	w.cancel()
	<-w.done
}

// arpReply matches a reply line of Debian's arping (Thomas Habets'):
// "42 bytes from 5a:83:d8:a6:2e:27 (198.51.100.201): index=0 time=...".
var arpReply = regexp.MustCompile(`bytes from ([0-9A-Fa-f:]{17}) \(`)

// answers resolves vip from the client on the wire (ARP, or NDP after
// flushing the client's entry) and returns the MAC that answered, or "".
func answers(t *testing.T, l *lab.Lab, vip string) string {
	t.Helper()
	ctx := t.Context()
	if !strings.Contains(vip, ":") {
		out, _ := l.Exec(ctx, l.ClientNS(), "arping", "-c", "1", "-w", "1", "-I", "eth0", vip)
		if m := arpReply.FindStringSubmatch(out); m != nil {
			return strings.ToLower(m[1])
		}
		return ""
	}
	_, _ = l.Exec(ctx, l.ClientNS(), "ip", "-6", "neigh", "flush", "to", vip)
	_, _ = l.Exec(ctx, l.ClientNS(), "ping", "-6", "-c", "1", "-W", "1", vip)
	neigh, err := l.Neighbours(ctx, l.ClientNS())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range neigh {
		if n.IP.String() == vip && n.MAC != "" && !strings.Contains(strings.Join(n.State, ","), "FAILED") {
			return strings.ToLower(n.MAC)
		}
	}
	return ""
}
