package controller_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/heraldlb/herald/controller"
	"github.com/heraldlb/herald/speaker"
)

// TestMemberlistKeyCreated creates the memberlist key on a fresh install
// with credentials that may only create Secrets, as the controller's RBAC
// allows, and checks that a speaker takes the key it finds there.
func TestMemberlistKeyCreated(t *testing.T) {
	admin, ns := leaderNamespace(t, "memberlist-created")
	kube := createOnlySecrets(t, admin, ns)
	ensureKey(t, kube, ns)

	secret, err := admin.CoreV1().Secrets(ns).Get(t.Context(), "herald-memberlist", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key := secret.Data[controller.MemberlistKeyName]
	if len(key) != 32 || bytes.Equal(key, make([]byte, 32)) {
		t.Fatalf("Secret %s/herald-memberlist key %s = %d bytes %x, want 32 random bytes", ns, controller.MemberlistKeyName, len(key), key)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, got, err := speaker.Bootstrap(ctx, admin, "node-a", "198.51.100.1", ns, "herald-memberlist", zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("the speaker's Bootstrap with the created Secret: %v", err)
	}
	if !bytes.Equal(got, key) {
		t.Errorf("the speaker took key %x, the Secret holds %x", got, key)
	}

	// Created once: a second leader leaves it as it is.
	ensureKey(t, kube, ns)
	again, err := admin.CoreV1().Secrets(ns).Get(t.Context(), "herald-memberlist", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if again.ResourceVersion != secret.ResourceVersion {
		t.Errorf("the Secret changed (resourceVersion %s → %s) on a second EnsureMemberlistKey", secret.ResourceVersion, again.ResourceVersion)
	}
}

// TestMemberlistKeyExisting leaves a Secret the user made alone, whatever
// it holds.
func TestMemberlistKeyExisting(t *testing.T) {
	admin, ns := leaderNamespace(t, "memberlist-existing")
	mine := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "herald-memberlist", Namespace: ns, Labels: map[string]string{"owner": "me"}},
		Data:       map[string][]byte{controller.MemberlistKeyName: []byte("0123456789abcdef"), "other": []byte("kept")},
	}
	before, err := admin.CoreV1().Secrets(ns).Create(t.Context(), mine, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ensureKey(t, createOnlySecrets(t, admin, ns), ns)
	after, err := admin.CoreV1().Secrets(ns).Get(t.Context(), "herald-memberlist", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != before.ResourceVersion {
		t.Errorf("resourceVersion %s → %s: the user's Secret was written", before.ResourceVersion, after.ResourceVersion)
	}
	if diff := cmp.Diff(mine.Data, after.Data); diff != "" {
		t.Errorf("the user's Secret's data (-want +got):\n%s", diff)
	}
}

// ensureKey runs EnsureMemberlistKey, which must return at its first try.
func ensureKey(t *testing.T, kube kubernetes.Interface, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := controller.EnsureMemberlistKey(ctx, kube, ns, "herald-memberlist", zaptest.NewLogger(t)); err != nil {
		t.Fatalf("EnsureMemberlistKey: %v", err)
	}
}

// createOnlySecrets is a client whose only right in ns is to create Secrets.
func createOnlySecrets(t *testing.T, admin kubernetes.Interface, ns string) kubernetes.Interface {
	t.Helper()
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "create-secrets", Namespace: ns},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}}},
	}
	if _, err := admin.RbacV1().Roles(ns).Create(t.Context(), role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	user := "herald-test-secret-creator"
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "create-secrets", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(t.Context(), binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := shared.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Impersonate.UserName = user
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// RBAC bindings reach the authorizer's cache within moments.
	waitUntil(t, 5*time.Second, "the Role to take effect", func() bool {
		_, err := kube.CoreV1().Secrets(ns).Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: ns}},
			metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil
	})
	return kube
}
