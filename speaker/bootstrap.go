package speaker

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// SecretKeyName is the key of the memberlist Secret that holds the AES key
// (the controller creates the Secret with controller.MemberlistKeyName).
const SecretKeyName = "secretkey"

// Bootstrap finds what the speaker needs before it can join the others:
// the address to bind memberlist to (bind, or the Node's first InternalIP)
// and the memberlist key from the Secret. It waits (logging why) until both
// exist or ctx ends: membership is never run unencrypted. On a fresh install
// the controller creates the Secret; the process's probes are served while
// it waits.
func Bootstrap(ctx context.Context, kube kubernetes.Interface, node, bind, namespace, secret string, log *zap.Logger) (netip.Addr, []byte, error) {
	for {
		addr, key, err := bootstrapOnce(ctx, kube, node, bind, namespace, secret)
		if err == nil {
			return addr, key, nil
		}
		log.Warn("waiting to join the speakers", zap.Error(err))
		select {
		case <-ctx.Done():
			return netip.Addr{}, nil, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

func bootstrapOnce(ctx context.Context, kube kubernetes.Interface, node, bind, namespace, secret string) (netip.Addr, []byte, error) {
	var addr netip.Addr
	if bind != "" {
		a, err := netip.ParseAddr(bind)
		if err != nil {
			return addr, nil, fmt.Errorf("--bind-address %q: %w", bind, err)
		}
		addr = a
	} else {
		n, err := kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return addr, nil, fmt.Errorf("node %s: %w", node, err)
		}
		for _, a := range n.Status.Addresses {
			if p, err := netip.ParseAddr(a.Address); err == nil && a.Type == corev1.NodeInternalIP {
				addr = p
				break
			}
		}
		if !addr.IsValid() {
			return addr, nil, fmt.Errorf("node %s has no InternalIP", node)
		}
	}
	s, err := kube.CoreV1().Secrets(namespace).Get(ctx, secret, metav1.GetOptions{})
	if err != nil {
		return addr, nil, fmt.Errorf("memberlist key: Secret %s/%s: %w", namespace, secret, err)
	}
	key := s.Data[SecretKeyName]
	if n := len(key); n != 16 && n != 24 && n != 32 {
		return addr, nil, fmt.Errorf("memberlist key: Secret %s/%s key %s has %d bytes; want 16, 24 or 32", namespace, secret, SecretKeyName, n)
	}
	return addr, key, nil
}
