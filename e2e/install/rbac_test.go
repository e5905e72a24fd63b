package install_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

const (
	heraldNamespace = "herald-system"
	// elsewhere names, in rbac-expected.yaml, the permissions in every
	// namespace but Herald's; the test asks in this one.
	elsewhere      = "elsewhere"
	otherNamespace = "default"
	// noBindings is a ServiceAccount of Herald's namespace that nothing is
	// bound to: what it may do, every ServiceAccount may (system:basic-user,
	// system:discovery, system:public-info-viewer, service-account issuer
	// discovery); that is subtracted from what Herald's accounts may do.
	noBindings = "hin-no-bindings"
)

// TestRBAC asks the API server what each of Herald's ServiceAccounts may do
// (SelfSubjectRulesReview, impersonating the account) in Herald's namespace
// and in another, and compares that with manifests/rbac-expected.yaml. A new
// API call in the code needs a rule in the manifests, and a rule needs a
// line in the list: both are reviewed together.
func TestRBAC(t *testing.T) {
	if shared == nil {
		t.Skip("no lab: " + skipReason)
	}
	want := expectedPermissions(t)
	var accounts []string
	docs, err := decode(render(t, manifests))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		if sa, ok := d.obj.(*corev1.ServiceAccount); ok {
			accounts = append(accounts, sa.Name)
		}
	}
	slices.Sort(accounts)
	listed := slices.Sorted(func(yield func(string) bool) {
		for sa := range want {
			if !yield(sa) {
				return
			}
		}
	})
	if diff := cmp.Diff(listed, accounts); diff != "" {
		t.Errorf("ServiceAccounts in rbac-expected.yaml and in the render differ (-listed +rendered):\n%s", diff)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, sa := range accounts {
		for _, ns := range []string{heraldNamespace, otherNamespace} {
			key := ns
			if ns != heraldNamespace {
				key = elsewhere
			}
			t.Run(sa+"/"+key, func(t *testing.T) {
				got, err := effective(ctx, heraldNamespace, sa, ns)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want[sa][key], got); diff != "" {
					t.Errorf("effective permissions of ServiceAccount %s/%s in namespace %s differ from manifests/rbac-expected.yaml (%s.%s) (-expected +granted):\n%s",
						heraldNamespace, sa, ns, sa, key, diff)
				}
			})
		}
	}
}

// expectedPermissions reads manifests/rbac-expected.yaml: ServiceAccount →
// "herald-system" or "elsewhere" → sorted permission lines.
func expectedPermissions(t *testing.T) map[string]map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(manifests, "rbac-expected.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]map[string][]string
	if err := yaml.Unmarshal(b, &want); err != nil {
		t.Fatalf("rbac-expected.yaml: %v", err)
	}
	for sa, byNS := range want {
		for key, lines := range byNS {
			if key != heraldNamespace && key != elsewhere {
				t.Errorf("rbac-expected.yaml: %s.%s: want %s or %s", sa, key, heraldNamespace, elsewhere)
			}
			if !slices.IsSorted(lines) {
				t.Errorf("rbac-expected.yaml: %s.%s is not sorted", sa, key)
			}
		}
	}
	return want
}

// effective is what ServiceAccount namespace/name may do in ns beyond what
// a ServiceAccount with no bindings may, as permission lines.
func effective(ctx context.Context, namespace, name, ns string) ([]string, error) {
	granted, err := rules(ctx, "system:serviceaccount:"+namespace+":"+name, ns)
	if err != nil {
		return nil, err
	}
	everyone, err := rules(ctx, "system:serviceaccount:"+namespace+":"+noBindings, ns)
	if err != nil {
		return nil, err
	}
	for p := range everyone {
		delete(granted, p)
	}
	return lines(granted), nil
}

// permission is one verb on one resource (or non-resource URL); name ""
// means any object.
type permission struct {
	verb, group, resource, name, url string
}

// rules asks the API server, as user, what user may do in ns. Impersonating
// a ServiceAccount's user name brings its groups along (system:authenticated,
// system:serviceaccounts, system:serviceaccounts:<namespace>).
func rules(ctx context.Context, user, ns string) (map[permission]bool, error) {
	cfg, err := shared.RESTConfig()
	if err != nil {
		return nil, err
	}
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	review, err := kube.AuthorizationV1().SelfSubjectRulesReviews().Create(ctx,
		&authzv1.SelfSubjectRulesReview{Spec: authzv1.SelfSubjectRulesReviewSpec{Namespace: ns}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("rules review for %s in %s: %w", user, ns, err)
	}
	if st := review.Status; st.Incomplete || st.EvaluationError != "" {
		return nil, fmt.Errorf("rules review for %s in %s is incomplete: %s", user, ns, st.EvaluationError)
	}
	out := map[permission]bool{}
	for _, r := range review.Status.ResourceRules {
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, v := range r.Verbs {
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, n := range names {
						out[permission{verb: v, group: g, resource: res, name: n}] = true
					}
				}
			}
		}
	}
	for _, r := range review.Status.NonResourceRules {
		for _, v := range r.Verbs {
			for _, u := range r.NonResourceURLs {
				out[permission{verb: v, url: u}] = true
			}
		}
	}
	return out, nil
}

// lines writes permissions as rbac-expected.yaml does, one line per object
// kind (and name), verbs sorted: "leases.coordination.k8s.io named
// herald-controller: get, update", "nonResourceURL /healthz: get".
func lines(perms map[permission]bool) []string {
	verbs := map[string][]string{}
	for p := range perms {
		var what string
		if p.url != "" {
			what = "nonResourceURL " + p.url
		} else {
			res, sub, _ := strings.Cut(p.resource, "/")
			what = res
			if p.group != "" {
				what += "." + p.group
			}
			if sub != "" {
				what += "/" + sub
			}
			if p.name != "" {
				what += " named " + p.name
			}
		}
		verbs[what] = append(verbs[what], p.verb)
	}
	out := []string{}
	for what, vs := range verbs {
		slices.Sort(vs)
		out = append(out, what+": "+strings.Join(vs, ", "))
	}
	slices.Sort(out)
	return out
}

// TestSpeakerReadsOnlyItsSecrets: the speaker may read the memberlist key
// and the BGP password Secret by name, and list no other Secret: a watch
// without a name, or for another name, is refused.
func TestSpeakerReadsOnlyItsSecrets(t *testing.T) {
	if shared == nil {
		t.Skip("no lab: " + skipReason)
	}
	kube, err := shared.ServiceAccountClient(t.Context(), heraldNamespace, "herald-speaker")
	if err != nil {
		t.Fatal(err)
	}
	secrets := kube.CoreV1().Secrets(heraldNamespace)
	byName := func(name string) metav1.ListOptions {
		return metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()}
	}
	if _, err := secrets.List(t.Context(), byName("herald-bgp-passwords")); err != nil {
		t.Errorf("list herald-bgp-passwords by name: %v", err)
	}
	for what, opts := range map[string]metav1.ListOptions{"every Secret": {}, "another Secret by name": byName("tor-pw")} {
		if _, err := secrets.List(t.Context(), opts); !apierrors.IsForbidden(err) {
			t.Errorf("list %s: got %v, want Forbidden", what, err)
		}
	}
}
