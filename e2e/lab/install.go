package lab

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Herald is installed in the lab as a user installs it: `make images` builds
// the images, they go to a registry inside the lab, and the kustomize base
// in manifests/ (or an overlay of it) is applied by server-side apply.
// kube-controller-manager and kube-scheduler create and place the pods; the
// lab's kubelet runs them with their ServiceAccounts' own permissions.

// RegistryAddr is the lab registry, served in the control-plane namespace.
var RegistryAddr = netip.AddrPortFrom(APIServer4, 5000)

// Images names the two images of one Herald version in the lab registry.
type Images struct {
	Version    string `json:"version"`
	Controller string `json:"controller"`
	Speaker    string `json:"speaker"`
}

// BaseImage is how manifests/kustomization.yaml names an image; an install
// points it at the lab registry.
func BaseImage(name string) string { return "registry.example.com/herald/" + name }

// PushImages builds Herald's images for this machine's platform with the
// images tool, stamped with version, and pushes them to the lab registry
// (started on first use).
func (l *Lab) PushImages(ctx context.Context, version string) (Images, error) {
	if err := l.ensureRegistry(ctx); err != nil {
		return Images{}, err
	}
	root, err := ModuleRoot()
	if err != nil {
		return Images{}, err
	}
	out := filepath.Join(l.Dir, "images", version)
	tool := l.Bin("herald-images")
	build := exec.CommandContext(ctx, tool, "build", "-out", out, "-version", version, "-revision", gitHead(root),
		"-epoch", "0", "-platforms", "linux/"+goarch())
	build.Dir = root
	if b, err := build.CombinedOutput(); err != nil {
		return Images{}, fmt.Errorf("build images %s: %w: %s", version, err, b)
	}
	repo := RegistryAddr.String() + "/herald"
	img := Images{Version: version}
	for _, name := range []string{"herald-controller", "herald-speaker"} {
		archive := filepath.Join(out, name+".oci.tar")
		if _, err := l.Exec(ctx, l.ControlPlaneNS(), tool, "push", "-insecure", "-registry", repo, "-tag", version, archive); err != nil {
			return Images{}, fmt.Errorf("push %s: %w", name, err)
		}
	}
	img.Controller = repo + "/herald-controller:" + version
	img.Speaker = repo + "/herald-speaker:" + version
	return img, nil
}

func goarch() string {
	out, err := exec.Command("go", "env", "GOARCH").Output()
	if err != nil {
		return "amd64"
	}
	return strings.TrimSpace(string(out))
}

// ensureRegistry starts the lab registry once and waits until it accepts
// connections.
func (l *Lab) ensureRegistry(ctx context.Context) error {
	if p, ok := l.Proc("registry"); !ok || !p.Alive() {
		if _, err := l.start("registry", l.ControlPlaneNS(), nil, l.Bin("herald-images"), "registry", "-addr", RegistryAddr.String()); err != nil {
			return err
		}
	}
	dial := DialContext(l.ControlPlaneNS())
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := dial(ctx, "tcp", RegistryAddr.String())
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lab registry not up: %w (see %s)", err, l.LogPath("registry"))
		}
	}
}

// Install says what to install: the images, and the kustomization to apply
// (default manifests/; a test that needs other flags names an overlay, see
// e2e/overlays/README.md).
type Install struct {
	Images  Images
	Overlay string // directory relative to the module root
}

// InstallHerald applies the kustomization with the lab's image references
// by server-side apply and waits until both workloads are rolled out.
func (l *Lab) InstallHerald(ctx context.Context, in Install) error {
	dir, err := l.kustomization(in)
	if err != nil {
		return err
	}
	if out, err := l.Kubectl(ctx, "apply", "--server-side", "--field-manager=herald-lab", "-k", dir); err != nil {
		return fmt.Errorf("install herald: %w: %s", err, out)
	}
	l.mu.Lock()
	l.Install = &in
	err = l.saveLocked()
	l.mu.Unlock()
	if err != nil {
		return err
	}
	return l.WaitRollout(ctx, 3*time.Minute)
}

// WaitRollout waits until `kubectl rollout status` reports both workloads done.
func (l *Lab) WaitRollout(ctx context.Context, timeout time.Duration) error {
	for _, w := range []string{"deployment/herald-controller", "daemonset/herald-speaker"} {
		if out, err := l.Kubectl(ctx, "-n", HeraldNamespace, "rollout", "status", w, "--timeout="+timeout.String()); err != nil {
			return fmt.Errorf("rollout status %s: %w: %s (kubelet log %s)", w, err, out, l.LogPath("kubelet"))
		}
	}
	return nil
}

// UninstallHerald deletes what InstallHerald applied and waits until the
// pods are gone.
func (l *Lab) UninstallHerald(ctx context.Context, in Install) error {
	dir, err := l.kustomization(in)
	if err != nil {
		return err
	}
	if out, err := l.Kubectl(ctx, "delete", "-k", dir, "--wait=true", "--timeout=2m"); err != nil {
		return fmt.Errorf("uninstall herald: %w: %s", err, out)
	}
	l.mu.Lock()
	l.Install = nil
	err = l.saveLocked()
	l.mu.Unlock()
	return err
}

// Installed reports whether Herald runs from the manifests (InstallHerald).
func (l *Lab) Installed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.Install != nil
}

// kustomization writes the lab's kustomization: the base (or overlay) with
// its images pointed at the lab registry.
func (l *Lab) kustomization(in Install) (string, error) {
	if in.Images.Controller == "" || in.Images.Speaker == "" {
		return "", errors.New("install herald: no images (PushImages first)")
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	base := filepath.Join(root, cmp.Or(in.Overlay, "manifests"))
	dir := filepath.Join(l.Dir, "install", in.Images.Version+"-"+strings.ReplaceAll(cmp.Or(in.Overlay, "base"), "/", "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	rel, err := filepath.Rel(dir, base)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- %s\nimages:\n", rel)
	for name, ref := range map[string]string{"herald-controller": in.Images.Controller, "herald-speaker": in.Images.Speaker} {
		repo, tag, _ := strings.Cut(strings.TrimPrefix(ref, RegistryAddr.String()+"/"), ":")
		fmt.Fprintf(&b, "- name: %s\n  newName: %s/%s\n  newTag: %s\n", BaseImage(name), RegistryAddr, repo, tag)
	}
	return dir, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(b.String()), 0o644)
}

// Kubectl runs the lab's kubectl with the admin kubeconfig in the
// control-plane namespace.
func (l *Lab) Kubectl(ctx context.Context, args ...string) (string, error) {
	return l.Exec(ctx, l.ControlPlaneNS(), append([]string{l.Bin("kubectl"), "--kubeconfig=" + l.Kubeconfig()}, args...)...)
}

// ModuleRoot is the directory of Herald's go.mod (tests and `go run` run
// inside the module).
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	mod := strings.TrimSpace(string(out))
	if err != nil || mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the herald module: %v", err)
	}
	return filepath.Dir(mod), nil
}

// gitHead is the checkout's commit, which the images' labels carry.
func gitHead(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		return strings.Repeat("0", 40)
	}
	return strings.TrimSpace(string(out))
}
