package speaker

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// TestSecretsByNameOnly: every list and watch names its Secret; a Secret the
// Role does not name gives an error that says how to grant it.
func TestSecretsByNameOnly(t *testing.T) {
	// The fake clientset does not stream a watch-list's initial events.
	t.Setenv("KUBE_FEATURE_WatchListClient", "false")
	kube := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "herald-system", Name: "herald-bgp-passwords"}, Data: map[string][]byte{"tor": []byte("pw")}})
	var selectors []string
	kube.PrependReactor("list", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sel := a.(k8stesting.ListAction).GetListRestrictions().Fields.String()
		selectors = append(selectors, sel)
		if sel != "metadata.name=herald-bgp-passwords" {
			return true, nil, apierrors.NewForbidden(corev1.Resource("secrets"), "", nil)
		}
		return false, nil, nil
	})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s := NewSecrets(kube, "herald-system")
	s.Start(ctx, func() {})
	s.Wait(ctx, "herald-bgp-passwords", 5*time.Second)
	got, err := s.Get("herald-bgp-passwords")
	if err != nil || string(got.Data["tor"]) != "pw" {
		t.Fatalf("Get herald-bgp-passwords = %v, %v (lists: %q)", got, err, selectors)
	}
	s.Wait(ctx, "tor-md5", 5*time.Second)
	if _, err := s.Get("tor-md5"); err == nil || !strings.Contains(err.Error(), `add "tor-md5" to the resourceNames of Role herald-speaker`) {
		t.Fatalf("Get tor-md5: %v, want the Role hint", err)
	}
	for _, sel := range selectors {
		if !strings.HasPrefix(sel, "metadata.name=") {
			t.Errorf("a list without a name: %q", sel)
		}
	}
	s.Retain(map[string]bool{"herald-bgp-passwords": true})
	if len(s.watches) != 1 {
		t.Errorf("%d watches after Retain, want 1", len(s.watches))
	}
}
