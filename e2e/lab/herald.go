package lab

import (
	"context"
	"crypto/rand"
	"fmt"

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

// StartController builds herald-controller (once per lab) and runs it in the
// control-plane namespace as process name, with the admin kubeconfig and
// the given extra flags.
func (l *Lab) StartController(ctx context.Context, name string, flags ...string) (Proc, error) {
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

// StartSpeaker builds herald-speaker (once per lab) and runs it inside the
// node's namespace (as hostNetwork would), with the admin kubeconfig and the
// given extra flags.
func (l *Lab) StartSpeaker(ctx context.Context, node string, flags ...string) (Proc, error) {
	n, ok := l.Node(node)
	if !ok {
		return Proc{}, fmt.Errorf("no node %q", node)
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
