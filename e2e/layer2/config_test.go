package layer2_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/controller"
	"github.com/heraldlb/herald/e2e/lab"
	"github.com/heraldlb/herald/speaker"
)

// These tests change Herald's shared ConfigMap in ways that must never cost
// a Service its address or a client its connection: no config at all, an
// invalid one across restarts, and an edit that takes addresses away, which
// waits for the user's confirmation.

const (
	heraldConfigMap = "herald"
	controllerProc  = "herald-controller"
	// invalidConfig parses as YAML but fails validation.
	invalidConfig = "pools: [{name: lan, addresses: [not-an-address]}]\n"
	// quiet is how long a test watches that nothing moves after a change.
	quiet = 3 * time.Second
)

func TestConfigEmptyDocumentChangesNothing(t *testing.T) {
	l := needLab(t)
	vip := "198.51.100.230"
	ns := "cfgempty"
	app(t, l, ns, "web", vip, false, map[string]string{"a": "node1", "b": "node2", "c": "node3"})
	restoreConfigAfter(t, l)
	owner := settled(t, l, vip)

	p := startProbe(t, l, vip)
	for _, doc := range []string{"", "# nothing\n"} {
		if err := l.ApplyHeraldConfig(t.Context(), doc); err != nil {
			t.Fatal(err)
		}
		nothingMoves(t, l, ns, vip, owner, quiet, fmt.Sprintf("with config.yaml %q", doc))
		if got := record(t, l)[config.RecordLatest]; got != labConfig {
			t.Errorf("with config.yaml %q the record's %s = %q, want the lab's config", doc, config.RecordLatest, got)
		}
	}
	p.ExpectNoLoss(t, "while config.yaml was empty")
}

// A ConfigMap without config.yaml is not an empty configuration: speakers
// once read it as one and withdrew every address.
func TestConfigMissingKeyChangesNothing(t *testing.T) {
	l := needLab(t)
	vip := "198.51.100.231"
	ns := "cfgnokey"
	app(t, l, ns, "web", vip, false, map[string]string{"a": "node1", "b": "node2", "c": "node3"})
	restoreConfigAfter(t, l)
	owner := settled(t, l, vip)

	p := startProbe(t, l, vip)
	// A user's typo: the right document under the wrong key.
	if err := writeHeraldConfigMap(t.Context(), l, map[string]string{"config.yml": labConfig}, nil); err != nil {
		t.Fatal(err)
	}
	nothingMoves(t, l, ns, vip, owner, quiet, "without the key "+config.Key)
	if got := record(t, l)[config.RecordLatest]; got != labConfig {
		t.Errorf("without the key %s the record's %s = %q, want the lab's config", config.Key, config.RecordLatest, got)
	}
	p.ExpectNoLoss(t, "while the ConfigMap had no "+config.Key)
}

// A controller that starts while the config is invalid runs on the record's
// last valid document: it neither drops nor reassigns an address.
func TestConfigInvalidAcrossControllerRestart(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	vip := "198.51.100.232"
	ns := "cfgrestartctl"
	app(t, l, ns, "web", vip, false, map[string]string{"a": "node1", "b": "node2", "c": "node3"})
	restoreConfigAfter(t, l)
	owner := settled(t, l, vip)
	waitRecordLatest(t, l, labConfig)

	p := startProbe(t, l, vip)
	if err := l.ApplyHeraldConfig(ctx, invalidConfig); err != nil {
		t.Fatal(err)
	}
	logFrom := logSize(t, l, controllerProc)
	stopProc(t, l, controllerProc)
	t.Cleanup(func() { ensureRunning(l, controllerProc, startController) })
	if err := startController(ctx, l); err != nil {
		t.Fatal(err)
	}
	nothingMoves(t, l, ns, vip, owner, quiet, "after a controller restart with an invalid config")
	waitLogLine(t, l, controllerProc, logFrom, "configuration not loaded", config.Hash(labConfig))

	// Valid again: the restarted controller keeps the address it restored.
	if err := l.ApplyHeraldConfig(ctx, labConfig); err != nil {
		t.Fatal(err)
	}
	nothingMoves(t, l, ns, vip, owner, time.Second, "after the config became valid again")
	if _, c := serviceStatus(t, l, ns); c == nil || c.Reason != controller.ReasonAllocated {
		t.Errorf("condition %s = %+v, want reason %s", controller.ConditionAllocated, c, controller.ReasonAllocated)
	}
	p.ExpectNoLoss(t, "while the controller restarted with an invalid config")
}

// A speaker that starts while the config is invalid announces under the
// record's last valid document: it takes its address back after the
// hold-down, as with a valid config, and no GET is lost on the way (but a
// connection in flight at one of the two moves).
func TestConfigInvalidAcrossSpeakerRestart(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	vip := "198.51.100.233"
	ns := "cfgrestartspk"
	app(t, l, ns, "web", vip, false, map[string]string{"a": "node1", "b": "node2", "c": "node3"})
	restoreConfigAfter(t, l)
	owner := settled(t, l, vip)
	waitRecordLatest(t, l, labConfig)

	p := startProbe(t, l, vip)
	if err := l.ApplyHeraldConfig(ctx, invalidConfig); err != nil {
		t.Fatal(err)
	}
	name := lab.SpeakerName(owner)
	startSpeaker := func(ctx context.Context, l *lab.Lab) error {
		_, err := l.StartSpeaker(ctx, owner)
		return err
	}
	logFrom := logSize(t, l, name)
	stopProc(t, l, name)
	t.Cleanup(func() { ensureRunning(l, name, startSpeaker) })
	others := slices.DeleteFunc(nodeNames(l), func(n string) bool { return n == owner })
	waitAnswerer(t, l, vip, speaker.Winner(others, netip.MustParseAddr(vip)), 5*time.Second)

	if err := startSpeaker(ctx, l); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	for answerer(t, l, vip) != owner {
		if time.Since(started) > 15*time.Second {
			t.Fatalf("%s's restarted speaker did not take %s back within 15 s", owner, vip)
		}
		time.Sleep(100 * time.Millisecond)
	}
	back := time.Since(started)
	waitAnswerer(t, l, vip, owner, 5*time.Second)
	if back < 2*time.Second { // the tests' --hold-down
		t.Errorf("%s took %s back %v after its speaker started, before the 2 s hold-down", owner, vip, back)
	}
	t.Logf("%s took %s back %v after its speaker started", owner, vip, back.Round(time.Millisecond))
	waitLogLine(t, l, name, logFrom, "configuration not loaded", config.Hash(labConfig))
	// The address moved twice (to another node while the speaker was down,
	// and back): a connection open at either instant is reset.
	p.ExpectNoLossBut(t, "while the owner's speaker restarted with an invalid config", 2)
}

// extraConfig is the lab's config plus a pool outside "lan" (pools may not
// overlap) with its own L2 advertisement.
const extraConfig = `pools:
- name: lan
  addresses: ["198.51.100.200-198.51.100.250", "2001:db8:1::200-2001:db8:1::250"]
- name: extra
  addresses: ["198.51.100.251-198.51.100.254"]
l2Advertisements:
- name: lan
  pools: [lan]
- name: extra
  pools: [extra]
`

// An edit that removes a pool in use is held: the Service keeps its address
// and its announcement until the user confirms the edit with the command
// Herald gives; then the address goes.
func TestConfigChangeHeldUntilConfirmed(t *testing.T) {
	l := needLab(t)
	ctx := t.Context()
	vip := "198.51.100.251"
	ns := "cfgheld"
	if err := l.ApplyHeraldConfig(ctx, extraConfig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Confirm whatever may still be held, then drop the annotation.
		ctx := context.Background()
		_ = writeHeraldConfigMap(ctx, l, map[string]string{config.Key: labConfig}, map[string]string{config.ConfirmAnnotation: config.Hash(labConfig)})
		rec := l.Kube().CoreV1().ConfigMaps(lab.HeraldNamespace)
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			if cm, err := rec.Get(ctx, config.RecordName(heraldConfigMap), metav1.GetOptions{}); err == nil && cm.Data[config.RecordAccepted] == labConfig {
				break
			}
		}
		_ = l.ApplyHeraldConfig(ctx, labConfig)
	})
	waitRecordLatest(t, l, extraConfig)
	app(t, l, ns, "web", vip, false, map[string]string{"a": "node1", "b": "node2", "c": "node3"})
	owner := settled(t, l, vip)

	p := startProbe(t, l, vip)
	if err := l.ApplyHeraldConfig(ctx, labConfig); err != nil { // removes pool extra
		t.Fatal(err)
	}
	hash := config.Hash(labConfig)
	nothingMoves(t, l, ns, vip, owner, quiet, "after an unconfirmed edit removed its pool")
	p.ExpectNoLoss(t, "while the edit was held")

	deadline := time.Now().Add(5 * time.Second)
	for {
		_, c := serviceStatus(t, l, ns)
		if c != nil && c.Reason == controller.ReasonConfigChangeHeld {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition %s = %+v, want reason %s", controller.ConditionAllocated, c, controller.ReasonConfigChangeHeld)
		}
		time.Sleep(100 * time.Millisecond)
	}
	held := waitEvent(t, l, controller.ReasonConfigChangeHeld, ns+"/web", hash)
	if held.Type != corev1.EventTypeWarning {
		t.Errorf("event %s is of type %s, want %s", held.Reason, held.Type, corev1.EventTypeWarning)
	}

	// Confirm the way a user would.
	out, err := l.Exec(ctx, l.ControlPlaneNS(), l.Bin("kubectl"), "--kubeconfig="+l.Kubeconfig(),
		"-n", lab.HeraldNamespace, "annotate", "configmap", heraldConfigMap, config.ConfirmAnnotation+"="+hash, "--overwrite")
	if err != nil {
		t.Fatalf("confirm: %v: %s", err, out)
	}
	confirmed := time.Now()
	for {
		in, c := serviceStatus(t, l, ns)
		if !slices.Contains(in, vip) && c != nil && c.Reason != controller.ReasonAllocated && c.Reason != controller.ReasonConfigChangeHeld {
			t.Logf("after confirmation: ingress %v, condition %s: %s", in, c.Reason, c.Message)
			break
		}
		if time.Since(confirmed) > 10*time.Second {
			t.Fatalf("10 s after confirmation: ingress %v, condition %s = %+v; want %s released", in, controller.ConditionAllocated, c, vip)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitAnswerer(t, l, vip, "", 10*time.Second-time.Since(confirmed))
	t.Logf("nobody answers for %s %v after confirmation", vip, time.Since(confirmed).Round(time.Millisecond))
}

// settled waits until vip serves GETs and is answered by its elected owner
// alone, and returns that owner.
func settled(t *testing.T, l *lab.Lab, vip string) string {
	t.Helper()
	getEventually(t, l, vip, 20*time.Second)
	owner := speaker.Winner(nodeNames(l), netip.MustParseAddr(vip))
	waitAnswerer(t, l, vip, owner, 15*time.Second)
	return owner
}

// restoreConfigAfter puts the lab's config back when the test ends.
func restoreConfigAfter(t *testing.T, l *lab.Lab) {
	t.Cleanup(func() {
		if err := l.ApplyHeraldConfig(context.Background(), labConfig); err != nil {
			t.Errorf("restore the lab's config: %v", err)
		}
	})
}

// nothingMoves checks for d that owner keeps answering for vip and
// that the Service in ns keeps vip in its status.
func nothingMoves(t *testing.T, l *lab.Lab, ns, vip, owner string, d time.Duration, when string) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if got := answerer(t, l, vip); got != owner {
			t.Fatalf("%s %s is answered by %q, want %q", when, vip, got, owner)
		}
		if in, c := serviceStatus(t, l, ns); !slices.Contains(in, vip) {
			t.Fatalf("%s the Service has ingress %v (condition %+v), want %s", when, in, c, vip)
		}
	}
}

// serviceStatus returns the ingress addresses and Herald's allocation
// condition of Service ns/web.
func serviceStatus(t *testing.T, l *lab.Lab, ns string) ([]string, *metav1.Condition) {
	t.Helper()
	svc, err := l.Kube().CoreV1().Services(ns).Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var in []string
	for _, i := range svc.Status.LoadBalancer.Ingress {
		in = append(in, i.IP)
	}
	return in, meta.FindStatusCondition(svc.Status.Conditions, controller.ConditionAllocated)
}

// writeHeraldConfigMap replaces the data and annotations of Herald's ConfigMap.
func writeHeraldConfigMap(ctx context.Context, l *lab.Lab, data, annotations map[string]string) error {
	cms := l.Kube().CoreV1().ConfigMaps(lab.HeraldNamespace)
	cm, err := cms.Get(ctx, heraldConfigMap, metav1.GetOptions{})
	if err != nil {
		return err
	}
	cm.Data, cm.Annotations = data, annotations
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	return err
}

// record returns the data of the controller's record of the config.
func record(t *testing.T, l *lab.Lab) map[string]string {
	t.Helper()
	cm, err := l.Kube().CoreV1().ConfigMaps(lab.HeraldNamespace).Get(context.Background(), config.RecordName(heraldConfigMap), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the controller's record: %v", err)
	}
	return cm.Data
}

// waitRecordLatest waits until the controller has recorded text as the
// latest valid document, which it does once text is in force.
func waitRecordLatest(t *testing.T, l *lab.Lab, text string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for record(t, l)[config.RecordLatest] != text {
		if time.Now().After(deadline) {
			t.Fatalf("the record's %s is not %q after 10 s", config.RecordLatest, text)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitEvent waits for an Event of this reason on Herald's ConfigMap whose
// message holds every one of words.
func waitEvent(t *testing.T, l *lab.Lab, reason string, words ...string) corev1.Event {
	t.Helper()
	sel := "involvedObject.kind=ConfigMap,involvedObject.name=" + heraldConfigMap + ",reason=" + reason
	deadline := time.Now().Add(5 * time.Second)
	var seen []string
	for {
		evs, err := l.Kube().CoreV1().Events(lab.HeraldNamespace).List(t.Context(), metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			t.Fatal(err)
		}
		seen = seen[:0]
		for _, e := range evs.Items {
			if containsAll(e.Message, words) {
				return e
			}
			seen = append(seen, e.Message)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s Event on ConfigMap %s naming %q; saw %q", reason, heraldConfigMap, words, seen)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func containsAll(s string, words []string) bool {
	for _, w := range words {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}

func startController(ctx context.Context, l *lab.Lab) error {
	_, err := l.StartController(ctx, controllerProc)
	return err
}

// stopProc stops the container whose lab process is name (SIGTERM, then
// it waits for the exit) and holds it stopped until it is started again.
func stopProc(t *testing.T, l *lab.Lab, name string) {
	t.Helper()
	if err := l.StopContainer(name, 15*time.Second); err != nil {
		t.Fatal(err)
	}
}

// ensureRunning starts lab process name again unless it runs.
func ensureRunning(l *lab.Lab, name string, start func(context.Context, *lab.Lab) error) {
	if p, ok := l.Proc(name); ok {
		if p.Alive() {
			return
		}
		l.ForgetProcess(p)
	}
	if err := start(context.Background(), l); err != nil {
		fmt.Fprintf(os.Stderr, "restart %s: %v\n", name, err)
	}
}

// logSize is how much lab process name has logged so far.
func logSize(t *testing.T, l *lab.Lab, name string) int64 {
	t.Helper()
	fi, err := os.Stat(l.LogPath(name))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// waitLogLine waits until lab process name logs, after offset from, a line
// holding every one of words.
func waitLogLine(t *testing.T, l *lab.Lab, name string, from int64, words ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(l.LogPath(name))
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(string(b[min(from, int64(len(b))):])) {
			if containsAll(line, words) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s logged no line with %q since it restarted", name, words)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const (
	probeEvery = 50 * time.Millisecond
	probeFor   = 60 * time.Second // no probe outlives this, whatever its test does
)

// startProbe GETs vip from the client every probeEvery in the background,
// as a user's client would (lab.Probe), until the test ends or it is stopped.
func startProbe(t *testing.T, l *lab.Lab, vip string) *lab.Probe {
	p := lab.StartProbe(l.ClientNS(), "http://"+net.JoinHostPort(vip, "80")+"/", probeEvery, probeFor)
	t.Cleanup(p.Stop)
	return p
}
