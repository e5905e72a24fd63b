package install_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// overlayBlock is a fenced YAML block of overlays/README.md that starts
// with "# overlay: <name>".
var overlayBlock = regexp.MustCompile("(?s)```yaml\n(# overlay: ([a-z0-9-]+)[^\n]*\n.*?)```")

// TestOverlays renders each overlay of manifests/overlays/README.md, as
// written there, from a directory next to a "checkout" of this repository,
// and checks that it does what the README says.
func TestOverlays(t *testing.T) {
	kubectl := kubectl(t)
	readme, err := os.ReadFile(filepath.Join(manifests, "overlays", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]func(t *testing.T, w workloads){
		"my-registry": func(t *testing.T, w workloads) {
			w.wantImages(t, "registry.internal.example/platform/herald-controller:v0.1.0", "registry.internal.example/platform/herald-speaker:v0.1.0")
		},
		"bgp-only": func(t *testing.T, w workloads) {
			w.wantImages(t, "registry.internal.example/platform/herald-controller:v0.1.0", "registry.internal.example/platform/herald-speaker:v0.1.0")
			pod := w.speaker.Spec.Template.Spec
			if sc := pod.SecurityContext; sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
				t.Errorf("speaker pod securityContext %+v: want a non-root user", sc)
			}
			if caps := pod.Containers[0].SecurityContext.Capabilities; len(caps.Add) > 0 || !slices.Equal(caps.Drop, []corev1.Capability{"ALL"}) {
				t.Errorf("speaker capabilities %+v: want none added, ALL dropped", caps)
			}
		},
		"speaker-flags": func(t *testing.T, w workloads) {
			if args := w.speaker.Spec.Template.Spec.Containers[0].Args; !slices.Contains(args, "--gratuitous-repeat=5") {
				t.Errorf("speaker args %q: want --gratuitous-repeat=5 added", args)
			}
		},
	}
	blocks := overlayBlock.FindAllSubmatch(readme, -1)
	var seen []string
	for _, b := range blocks {
		name, text := string(b[2]), b[1]
		seen = append(seen, name)
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Symlink(repo, filepath.Join(dir, "herald")); err != nil {
				t.Fatal(err)
			}
			overlay := filepath.Join(dir, "my-herald")
			if err := os.Mkdir(overlay, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), text, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := kustomize(kubectl, overlay)
			if err != nil {
				t.Fatal(err)
			}
			docs, err := decode(out)
			if err != nil {
				t.Fatal(err)
			}
			w := workloadsOf(t, docs)
			check, ok := checks[name]
			if !ok {
				t.Fatalf("no check for overlay %s: add one to TestOverlays", name)
			}
			check(t, w)
		})
	}
	for name := range checks {
		if !slices.Contains(seen, name) {
			t.Errorf("overlays/README.md has no block \"# overlay: %s\"", name)
		}
	}
}

type workloads struct {
	controller *appsv1.Deployment
	speaker    *appsv1.DaemonSet
}

func workloadsOf(t *testing.T, docs []doc) workloads {
	t.Helper()
	var w workloads
	for _, d := range docs {
		switch o := d.obj.(type) {
		case *appsv1.Deployment:
			w.controller = o
		case *appsv1.DaemonSet:
			w.speaker = o
		}
	}
	if w.controller == nil || w.speaker == nil {
		t.Fatal("the render lacks the controller Deployment or the speaker DaemonSet")
	}
	return w
}

func (w workloads) wantImages(t *testing.T, controller, speaker string) {
	t.Helper()
	if got := w.controller.Spec.Template.Spec.Containers[0].Image; got != controller {
		t.Errorf("controller image %s, want %s", got, controller)
	}
	if got := w.speaker.Spec.Template.Spec.Containers[0].Image; got != speaker {
		t.Errorf("speaker image %s, want %s", got, speaker)
	}
}
