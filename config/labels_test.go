package config

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// FuzzLabelChecks holds the hand-written name checks to Kubernetes' own:
// they are written out for speed, and must not drift from the rules.
func FuzzLabelChecks(f *testing.F) {
	for _, s := range []string{"", "a", "a-b", "-a", "a-", "A", "a_b", "a.b", "x/y", "example.com/key", "a/", "/a", "a/b/c",
		strings.Repeat("a", 63), strings.Repeat("a", 64), "Example.com/k", "a..b/c", strings.Repeat("b", 64) + ".com/k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := isLabel(s), len(validation.IsDNS1123Label(s)) == 0; got != want {
			t.Errorf("isLabel(%q) = %v; Kubernetes says %v", s, got, want)
		}
		if got, want := isLabelValue(s), len(validation.IsValidLabelValue(s)) == 0; got != want {
			t.Errorf("isLabelValue(%q) = %v; Kubernetes says %v", s, got, want)
		}
		if got, want := isLabelKey(s), len(validation.IsQualifiedName(s)) == 0; got != want {
			t.Errorf("isLabelKey(%q) = %v; Kubernetes says %v", s, got, want)
		}
	})
}
