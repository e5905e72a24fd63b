// Package deploy tests Herald installed in a full lab exactly as a user
// installs it: images from the lab registry, manifests/ applied by
// server-side apply, pods placed by kube-scheduler and run by the lab's
// kubelet with their ServiceAccounts' permissions.
package deploy

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/heraldlb/herald/e2e/lab"
)

var (
	shared     *lab.Lab
	skipReason string
)

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

func TestInstallSmoke(t *testing.T) {
	l := needLab(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	img, err := l.PushImages(ctx, "lab-v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.InstallHerald(ctx, lab.Install{Images: img}); err != nil {
		t.Fatal(err)
	}
	out, _ := l.Kubectl(ctx, "-n", "herald-system", "get", "pods", "-o", "wide")
	t.Log(out)
}
