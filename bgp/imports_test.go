package bgp_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps Kubernetes out of bgp/.
func TestImports(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	out, err := exec.Command(goTool, "list", "-deps", "github.com/heraldlb/herald/bgp").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v: %s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "k8s.io/") {
			t.Errorf("bgp depends on %s", dep)
		}
	}
}
