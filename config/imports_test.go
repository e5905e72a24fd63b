package config_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoClientGo keeps config a pure package: text in, model out. Importing
// k8s.io/client-go here would drag an API client into everything that only
// needs to read the configuration.
func TestNoClientGo(t *testing.T) {
	goBin, err := exec.LookPath("go") // go test puts its own go first in PATH
	if err != nil {
		t.Fatalf("find the go command: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", "github.com/heraldlb/herald/config").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "k8s.io/client-go") {
			t.Errorf("config depends on %s", dep)
		}
	}
}
