package ipam_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoClientGo keeps ipam free of Kubernetes clients: the import graph is
// the architecture (STYLE.md), and an allocator must stay a pure library.
func TestNoClientGo(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/heraldlb/herald/ipam").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	for dep := range strings.FieldsSeq(string(out)) {
		if strings.HasPrefix(dep, "k8s.io/client-go") {
			t.Errorf("ipam depends on %s; it must not import k8s.io/client-go", dep)
		}
	}
}
