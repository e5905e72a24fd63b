package lab

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/heraldlb/herald/config"
)

// HeraldNamespace holds Herald's ConfigMap, Lease and Secrets in the lab.
const HeraldNamespace = "herald-system"

// ApplyHeraldConfig creates or replaces the ConfigMap herald-system/herald.
func (l *Lab) ApplyHeraldConfig(ctx context.Context, text string) error {
	if err := l.ensureNamespace(ctx, HeraldNamespace); err != nil {
		return err
	}
	cms := l.Kube().CoreV1().ConfigMaps(HeraldNamespace)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "herald", Namespace: HeraldNamespace}, Data: map[string]string{config.Key: text}}
	_, err := cms.Update(ctx, cm, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
	}
	return err
}

// StartController runs herald-controller. With Herald installed from the
// manifests (InstallHerald) it lets the kubelet start the controller's
// container again after StopContainer, and takes no flags: a test that
// needs other flags installs an overlay. Otherwise it builds the binary
// (once per lab) and runs it in the control-plane namespace as process
// name, with the admin kubeconfig and the given flags (benchmarks do).
func (l *Lab) StartController(ctx context.Context, name string, flags ...string) (Proc, error) {
	if l.Installed() {
		return l.restartContainer(ctx, name, flags)
	}
	bin, err := l.Build(ctx, "github.com/heraldlb/herald/cmd/herald-controller")
	if err != nil {
		return Proc{}, err
	}
	if err := l.ensureNamespace(ctx, HeraldNamespace); err != nil {
		return Proc{}, err
	}
	argv := append([]string{bin, "--kubeconfig=" + l.Kubeconfig(), "--namespace=" + HeraldNamespace}, flags...)
	p, err := l.StartProcess(name, l.ControlPlaneNS(), argv...)
	if err != nil {
		return p, fmt.Errorf("start %s: %w", name, err)
	}
	return p, nil
}

// restartContainer releases a container StopContainer held and waits until
// the kubelet runs it again.
func (l *Lab) restartContainer(ctx context.Context, name string, flags []string) (Proc, error) {
	if len(flags) > 0 {
		return Proc{}, fmt.Errorf("start %s %v: Herald runs from the manifests; set flags in an overlay (e2e/overlays)", name, flags)
	}
	old, _ := l.Proc(name)
	l.ReleaseContainer(name)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if p, ok := l.Proc(name); ok && p != old && p.Alive() {
			return p, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return Proc{}, fmt.Errorf("the kubelet did not start %s again within 30 s (see %s)", name, l.LogPath("kubelet"))
		}
	}
}

// StopContainer stops a container the kubelet runs (SIGTERM, SIGKILL after
// grace) and holds it stopped until StartSpeaker or StartController.
func (l *Lab) StopContainer(name string, grace time.Duration) error {
	p, ok := l.Proc(name)
	if !ok || !p.Alive() {
		return fmt.Errorf("%s is not running", name)
	}
	l.HoldContainer(name)
	p.Stop(grace)
	if p.Alive() {
		return fmt.Errorf("%s still runs", name)
	}
	return nil
}

// MemberlistSecret is the Secret the lab's speakers take their key from.
const MemberlistSecret = "herald-memberlist"

// ensureMemberlistSecret creates the speakers' memberlist key once.
func (l *Lab) ensureMemberlistSecret(ctx context.Context) error {
	if err := l.ensureNamespace(ctx, HeraldNamespace); err != nil {
		return err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	_, err := l.Kube().CoreV1().Secrets(HeraldNamespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: MemberlistSecret, Namespace: HeraldNamespace},
		Data:       map[string][]byte{"secretkey": key},
	}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// SpeakerName is the lab process name of a node's speaker.
func SpeakerName(node string) string { return "herald-speaker-" + node }

// StartSpeaker runs the node's herald-speaker: with Herald installed from
// the manifests, as StartController does; otherwise it builds the binary
// (once per lab) and runs it inside the node's namespace (as hostNetwork
// would), with the admin kubeconfig and the given extra flags.
func (l *Lab) StartSpeaker(ctx context.Context, node string, flags ...string) (Proc, error) {
	n, ok := l.Node(node)
	if !ok {
		return Proc{}, fmt.Errorf("no node %q", node)
	}
	if l.Installed() {
		return l.restartContainer(ctx, SpeakerName(n.Name), flags)
	}
	bin, err := l.Build(ctx, "github.com/heraldlb/herald/cmd/herald-speaker")
	if err != nil {
		return Proc{}, err
	}
	if err := l.ensureMemberlistSecret(ctx); err != nil {
		return Proc{}, err
	}
	argv := append([]string{bin, "--kubeconfig=" + l.Kubeconfig(), "--namespace=" + HeraldNamespace,
		"--node-name=" + n.Name, "--bind-address=" + n.IPv4.String()}, flags...)
	return l.StartProcess(SpeakerName(n.Name), n.NS, argv...)
}
