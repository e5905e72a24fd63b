package l2_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoKubernetes keeps l2 a networking package: it answers ARP and NDP
// for the addresses it is given and knows nothing of Services or Nodes.
func TestNoKubernetes(t *testing.T) {
	goBin, err := exec.LookPath("go") // go test puts its own go first in PATH
	if err != nil {
		t.Fatalf("find the go command: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", "github.com/heraldlb/herald/l2").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "k8s.io/") {
			t.Errorf("l2 depends on %s", dep)
		}
	}
}
