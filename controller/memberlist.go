package controller

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// MemberlistKeyName is the key of the Secret that holds the AES key the
// speakers encrypt memberlist with (the speaker reads the same key).
const MemberlistKeyName = "secretkey"

// EnsureMemberlistKey creates the Secret namespace/name with a new 32-byte
// memberlist key from crypto/rand, so that speakers can join each other on
// a fresh install without a manual step. A Secret of that name that exists
// is left as it is, unread: it may hold the user's own key, or the key the
// speakers already share. It tries again, backing off up to 30 s, until
// the Secret exists or ctx ends (only then does it return an error).
func EnsureMemberlistKey(ctx context.Context, kube kubernetes.Interface, namespace, name string, log *zap.Logger) error {
	log = log.With(zap.String("secret", namespace+"/"+name))
	for delay := time.Second; ; delay = min(2*delay, 30*time.Second) {
		created, err := createMemberlistKey(ctx, kube, namespace, name)
		switch {
		case err == nil && created:
			log.Info("created the memberlist key")
			return nil
		case err == nil:
			log.Debug("the memberlist key exists; left as it is")
			return nil
		}
		log.Warn("memberlist key not created; trying again", zap.Duration("after", delay), zap.Error(err))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}

// createMemberlistKey creates the Secret unless it exists; it never reads
// or updates one, so create is the only verb it needs.
func createMemberlistKey(ctx context.Context, kube kubernetes.Interface, namespace, name string) (bool, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return false, fmt.Errorf("memberlist key: %w", err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Annotations: map[string]string{
			"herald.dev/about": "created by herald-controller: the key (" + MemberlistKeyName + ") the speakers encrypt memberlist with. " +
				"Never overwritten; to rotate it, replace the Secret and restart the speakers.",
		}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{MemberlistKeyName: key},
	}
	_, err := kube.CoreV1().Secrets(namespace).Create(ctx, secret, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("create Secret %s/%s: %w", namespace, name, err)
	}
	return true, nil
}
