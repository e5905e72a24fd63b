package deploy

import (
	"os"
	"testing"

	"github.com/heraldlb/herald/e2e/lab"
)

var (
	shared     *lab.Lab
	skipReason string
)

// Each test installs Herald itself and uninstalls it when it ends, so the
// tests run in any order on one lab.
func TestMain(m *testing.M) {
	os.Exit(lab.TestMain(m, lab.Config{Prefix: "hdp"}, nil, func(l *lab.Lab, skip string) { shared, skipReason = l, skip }))
}

func needLab(t *testing.T) *lab.Lab {
	t.Helper()
	if shared == nil {
		t.Skip("no lab: " + skipReason)
	}
	return shared
}
