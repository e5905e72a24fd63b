package migrate

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/e2e/lab"
)

// What Herald sets on a Service it serves (DESIGN.md, "What users see").
const (
	heraldAllocatedFrom = "herald.dev/allocated-from"
	heraldAllocated     = "herald.dev/IPAllocated"
)

// migrateFromCluster builds kubectl-herald and runs `kubectl herald migrate
// metallb --from-cluster` against the lab's API server with the admin
// kubeconfig, as an operator does. It fails the test unless the command
// exits 0, and returns what it printed on standard output: the config.yaml.
func migrateFromCluster(t *testing.T, l *lab.Lab) string {
	t.Helper()
	ctx := t.Context()
	root, err := lab.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "kubectl-herald")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/kubectl-herald")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build kubectl-herald: %v: %s", err, out)
	}
	// The API server listens on the lab network only: the CLI runs where
	// an operator's kubectl would, in the control-plane namespace.
	args := []string{"migrate", "metallb", "--from-cluster", "--kubeconfig", l.Kubeconfig()}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.ControlPlaneNS(), bin}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl herald %s: %v\nstderr:\n%s\nstdout:\n%s", strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	if stderr.Len() > 0 {
		t.Logf("kubectl herald %s wrote on standard error:\n%s", strings.Join(args, " "), stderr.String())
	}
	t.Logf("kubectl herald %s printed:\n%s", strings.Join(args, " "), stdout.String())
	return stdout.String()
}

// checkMigration parses the migrated configuration with the controller's
// own parser and compares what it says, section by section, with want
// (see summary), written by hand from MetalLB's objects.
func checkMigration(t *testing.T, text string, want []string) {
	t.Helper()
	if !strings.Contains(text, "# Every setting was carried over.\n") {
		t.Errorf("the migration did not carry every setting over (see its comments above)")
	}
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		t.Fatalf("the migrated configuration does not parse: %v", err)
	}
	for _, w := range cfg.Warnings {
		t.Errorf("the migrated configuration has a warning: %s", w)
	}
	if diff := cmp.Diff(want, summary(cfg)); diff != "" {
		t.Errorf("the migrated configuration says (-want +got):\n%s", diff)
	}
}

// summary renders what a configuration says, one line per object.
func summary(cfg *config.Config) []string {
	var out []string
	for _, p := range cfg.Pools {
		s := fmt.Sprintf("pool %s autoAssign=%v", p.Name, p.AutoAssign)
		for _, r := range p.Ranges {
			s += fmt.Sprintf(" %s-%s", r.From, r.To)
		}
		out = append(out, s)
	}
	for _, a := range cfg.L2Advertisements {
		out = append(out, fmt.Sprintf("l2 %s pools=%v interfaces=%v nodes=%q", a.Name, a.Pools, a.Interfaces, a.NodeSelector))
	}
	for _, p := range cfg.BGPPeers {
		out = append(out, fmt.Sprintf("peer %s %s port=%d asn=%d myASN=%d hold=%v keepalive=%v connect=%v multihop=%v bfd=%s gracefulRestart=%v nodes=%q",
			p.Name, p.Address, p.Port, p.ASN, p.MyASN, p.HoldTime, p.KeepaliveTime, p.ConnectTime, p.EBGPMultihop, p.BFDProfile, p.GracefulRestart, p.NodeSelector))
	}
	for _, b := range cfg.BFDProfiles {
		out = append(out, fmt.Sprintf("bfd %s rx=%v tx=%v multiplier=%d", b.Name, b.ReceiveInterval, b.TransmitInterval, b.DetectMultiplier))
	}
	for _, c := range cfg.Communities {
		out = append(out, fmt.Sprintf("community %s %s", c.Name, community(c.Value)))
	}
	for _, a := range cfg.BGPAdvertisements {
		var comms []string
		for _, c := range a.Communities {
			comms = append(comms, community(c))
		}
		out = append(out, fmt.Sprintf("bgp %s pools=%v peers=%v aggregation=%d/%d localPref=%d communities=%v nodes=%q",
			a.Name, a.Pools, a.Peers, a.AggregationLength, a.AggregationLengthV6, a.LocalPref, comms, a.NodeSelector))
	}
	return out
}

func community(v config.CommunityValue) string {
	if v.Large {
		return fmt.Sprintf("large:%d:%d:%d", v.Parts[0], v.Parts[1], v.Parts[2])
	}
	return fmt.Sprintf("%d:%d", v.Standard>>16, v.Standard&0xffff)
}

// installHerald writes Herald's configuration (the ConfigMap herald, key
// config.yaml), installs Herald from manifests/ as they are and uninstalls
// it when the test ends. It returns when the install began.
func installHerald(t *testing.T, l *lab.Lab, text string) time.Time {
	t.Helper()
	ctx := t.Context()
	in := lab.Install{Images: images(t, l)}
	if err := l.ApplyHeraldConfig(ctx, text); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !l.Installed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := l.UninstallHerald(ctx, in); err != nil {
			t.Errorf("uninstall: %v", err)
		}
	})
	start := time.Now()
	if err := l.InstallHerald(ctx, in); err != nil {
		t.Fatal(err)
	}
	t.Logf("Herald installed and rolled out in %v", time.Since(start).Round(time.Millisecond))
	return start
}

// waitServed waits until Herald's controller has judged every Service:
// it names the pool the addresses come from (which the migration keeps
// under MetalLB's name) and its IPAllocated condition is True.
func waitServed(t *testing.T, l *lab.Lab, ns string, svcs []migrated, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for _, s := range svcs {
		for {
			svc, err := l.Kube().CoreV1().Services(ns).Get(t.Context(), s.name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			c := meta.FindStatusCondition(svc.Status.Conditions, heraldAllocated)
			from := svc.Annotations[heraldAllocatedFrom]
			if from == s.pool && c != nil && c.Status == metav1.ConditionTrue {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Service %s/%s not served by Herald from pool %s after %v: %s=%q, condition %s: %+v, ingress %v",
					ns, s.name, s.pool, timeout, heraldAllocatedFrom, from, heraldAllocated, c, svc.Status.LoadBalancer.Ingress)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// ingressWatch follows every change to the Services of a namespace and
// records each one whose ingress differs from what MetalLB left.
type ingressWatch struct {
	ns     string
	want   map[string][]corev1.LoadBalancerIngress
	cancel context.CancelFunc
	done   chan struct{}
	start  time.Time
	// Written by the watching goroutine, read after done is closed.
	updates int      // changes seen to the Services
	changed []string // the first few that changed an ingress
	errs    []string
}

// watchIngress starts following the Services of ns; want is each one's
// ingress, by name.
func watchIngress(t *testing.T, l *lab.Lab, ns string, want map[string][]corev1.LoadBalancerIngress) *ingressWatch {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	w := &ingressWatch{ns: ns, want: want, cancel: cancel, done: make(chan struct{}), start: time.Now()}
	svcs := l.Kube().CoreV1().Services(ns)
	rv := w.list(ctx, t, svcs.List)
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			wi, err := svcs.Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
			if err != nil {
				w.noteErr(ctx, err)
				time.Sleep(100 * time.Millisecond)
				continue
			}
			for ev := range wi.ResultChan() {
				switch ev.Type {
				case watch.Added, watch.Modified, watch.Deleted:
					svc := ev.Object.(*corev1.Service)
					rv = svc.ResourceVersion
					w.updates++
					if ev.Type == watch.Deleted {
						w.note(fmt.Sprintf("%s deleted", svc.Name))
					} else {
						w.check(svc)
					}
				case watch.Bookmark:
					if o, err := meta.Accessor(ev.Object); err == nil {
						rv = o.GetResourceVersion()
					}
				case watch.Error:
					// Most likely our resource version expired: list again.
					w.noteErr(ctx, fmt.Errorf("watch: %v", ev.Object))
					rv = w.list(ctx, nil, svcs.List)
				}
			}
			wi.Stop()
		}
	}()
	t.Cleanup(w.stop)
	return w
}

// list checks every Service of the namespace as listed now and returns
// the list's resource version.
func (w *ingressWatch) list(ctx context.Context, t *testing.T, list func(context.Context, metav1.ListOptions) (*corev1.ServiceList, error)) string {
	l, err := list(ctx, metav1.ListOptions{})
	if err != nil {
		if t != nil {
			t.Fatal(err)
		}
		w.noteErr(ctx, err)
		return ""
	}
	for i := range l.Items {
		w.check(&l.Items[i])
	}
	return l.ResourceVersion
}

func (w *ingressWatch) check(svc *corev1.Service) {
	want, ok := w.want[svc.Name]
	if !ok {
		return
	}
	if diff := cmp.Diff(want, svc.Status.LoadBalancer.Ingress); diff != "" {
		w.note(fmt.Sprintf("%s at resourceVersion %s (-MetalLB's +now):\n%s", svc.Name, svc.ResourceVersion, diff))
	}
}

func (w *ingressWatch) note(s string) {
	if len(w.changed) < 10 {
		w.changed = append(w.changed, fmt.Sprintf("at %v: %s", time.Since(w.start).Round(time.Millisecond), s))
	}
}

func (w *ingressWatch) noteErr(ctx context.Context, err error) {
	if ctx.Err() == nil && len(w.errs) < 10 {
		w.errs = append(w.errs, err.Error())
	}
}

func (w *ingressWatch) stop() {
	w.cancel()
	<-w.done
}

// minWatchAfterInstall is how long at least the Services are watched
// after Herald's install began: not one look, but the controller's start,
// its first pass over every Service and the speakers' first announcements.
const minWatchAfterInstall = 10 * time.Second

// expectUnchanged stops the watch and fails the test if any Service's
// ingress differed from MetalLB's at any change seen, or differs now.
func (w *ingressWatch) expectUnchanged(t *testing.T, l *lab.Lab, installed time.Time) {
	t.Helper()
	if d := minWatchAfterInstall - time.Since(installed); d > 0 {
		time.Sleep(d)
	}
	w.stop()
	took := time.Since(w.start).Round(time.Millisecond)
	after := time.Since(installed).Round(time.Millisecond)
	for _, e := range w.errs {
		t.Logf("watching the Services of %s: %s", w.ns, e)
	}
	if len(w.changed) > 0 {
		t.Errorf("a Service's ingress changed in the %v watched (Herald's install began %v before the end):\n%s", took, after, strings.Join(w.changed, "\n"))
	}
	names := make([]string, 0, len(w.want))
	for name := range w.want {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		svc, err := l.Kube().CoreV1().Services(w.ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(w.want[name], svc.Status.LoadBalancer.Ingress); diff != "" {
			t.Errorf("Service %s/%s's ingress at the end (-MetalLB's +now):\n%s", w.ns, name, diff)
		}
	}
	if len(w.changed) == 0 {
		t.Logf("every Service of %s kept its ingress exactly through %d changes in %v, the last %v of them with Herald installed", w.ns, w.updates, took, after)
	}
}

// getSteady GETs url from namespace ns until GETs are steadily answered,
// and checks that the answer comes from a pod of app.
func getSteady(t *testing.T, l *lab.Lab, ns, url, app string, timeout time.Duration) {
	t.Helper()
	start := time.Now()
	body, err := l.HTTPGetSteady(t.Context(), ns, url, timeout)
	if err != nil {
		t.Fatalf("GET %s from %s: %v", url, ns, err)
	}
	if !strings.Contains(body, "/"+app+"-") {
		t.Errorf("GET %s from %s answered %q, not by a pod of %s", url, ns, strings.TrimSpace(body), app)
	}
	t.Logf("GET %s from %s steadily answered after %v: %s", url, ns, time.Since(start).Round(time.Millisecond), strings.TrimSpace(body))
}

const (
	probeEvery = 20 * time.Millisecond
	probeFor   = 5 * time.Second
)

// probeAll probes every URL of svcs from ns at once for probeFor, and
// fails the test for any GET lost.
func probeAll(t *testing.T, ns, from string, svcs []migrated) {
	t.Helper()
	var ps []*lab.Probe
	for _, s := range svcs {
		for _, u := range s.urls() {
			p := lab.StartProbe(ns, u, probeEvery, 2*time.Minute)
			t.Cleanup(p.Stop)
			ps = append(ps, p)
		}
	}
	time.Sleep(probeFor)
	for _, p := range ps {
		if n := p.Sent(); n < int(probeFor/probeEvery)/4 {
			t.Errorf("only %d GETs to %s from %s completed in %v", n, p.URL, from, probeFor)
		}
		p.ExpectNoLoss(t, "from "+from)
	}
}
