package migrate

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/heraldlb/herald/e2e/lab"
)

var (
	shared     *lab.Lab
	skipReason string
)

// Each test installs Herald itself and uninstalls it when it ends, and
// removes MetalLB's CRDs and objects, so the tests run in any order on one lab.
func TestMain(m *testing.M) {
	os.Exit(lab.TestMain(m, lab.Config{Prefix: "hmig"}, nil, func(l *lab.Lab, skip string) { shared, skipReason = l, skip }))
}

func needLab(t *testing.T) *lab.Lab {
	t.Helper()
	if shared == nil {
		t.Skip("no lab: " + skipReason)
	}
	return shared
}

// Herald's images, built and pushed to the lab registry once per run.
var (
	pushOnce sync.Once
	pushed   lab.Images
	pushErr  error
)

func images(t *testing.T, l *lab.Lab) lab.Images {
	t.Helper()
	pushOnce.Do(func() {
		start := time.Now()
		pushed, pushErr = l.PushImages(t.Context(), "migrate")
		t.Logf("images built and pushed in %v", time.Since(start).Round(time.Millisecond))
	})
	if pushErr != nil {
		t.Fatal(pushErr)
	}
	return pushed
}
