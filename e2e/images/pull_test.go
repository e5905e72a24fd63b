package images_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pulled is what `herald-images pull` prints.
type pulled struct {
	Ref        string   `json:"ref"`
	Digest     string   `json:"digest"`
	ImageID    string   `json:"imageID"`
	Entrypoint []string `json:"entrypoint"`
	Cmd        []string `json:"cmd"`
	Env        []string `json:"env"`
	User       string   `json:"user"`
	WorkingDir string   `json:"workingDir"`
}

// TestRegistryPull runs the tool as the lab does: a registry process, a push
// of the controller's archive to it, and a pull that unpacks the linux/amd64
// image and reports how to run it.
func TestRegistryPull(t *testing.T) {
	first := builtOnce(t)
	bin, _ := tool()
	const name = "herald-controller"
	archive := filepath.Join(first, name+".oci.tar")

	// What the pull should resolve to, read from the archive by the test's
	// own reader: the index, and its linux/amd64 image.
	indexDesc, idx := readArchive(t, archive).index(t)
	var amd64 string
	for _, m := range idx.Manifests {
		if m.Platform != nil && m.Platform.OS == "linux" && m.Platform.Architecture == "amd64" {
			amd64 = m.Digest
		}
	}
	if amd64 == "" {
		t.Fatal("the archive's index has no linux/amd64 image")
	}

	host := startRegistry(t, bin)
	out, err := exec.Command(bin, "push", "-insecure", "-registry", host+"/herald", archive).CombinedOutput()
	if err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	ref := host + "/herald/" + name + ":" + version

	dir := filepath.Join(t.TempDir(), "rootfs")
	got := pull(t, bin, ref, dir)
	if got.Ref != ref {
		t.Errorf("ref %q, want %q", got.Ref, ref)
	}
	if got.Digest != indexDesc.Digest {
		t.Errorf("digest %s, want the index's %s", got.Digest, indexDesc.Digest)
	}
	if got.ImageID != amd64 {
		t.Errorf("imageID %s, want the linux/amd64 image's %s", got.ImageID, amd64)
	}
	if got.ImageID == got.Digest {
		t.Errorf("imageID is the index digest %s", got.Digest)
	}
	if want := images[name]; got.User != want || strings.HasPrefix(got.User, "0") {
		t.Errorf("user %q, want the non-root %q", got.User, want)
	}
	if len(got.Entrypoint) != 1 || got.Entrypoint[0] != "/"+name {
		t.Fatalf("entrypoint %q, want [/%s]", got.Entrypoint, name)
	}
	exe := filepath.Join(dir, got.Entrypoint[0])
	fi, err := os.Lstat(exe)
	if err != nil {
		t.Fatalf("entrypoint not unpacked: %v", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o755 {
		t.Errorf("%s: mode %v, want an executable file, 0755", exe, fi.Mode())
	}

	// By digest, the image itself: no index to resolve.
	byDigest := pull(t, bin, host+"/herald/"+name+"@"+amd64, filepath.Join(t.TempDir(), "rootfs"))
	if byDigest.Digest != amd64 || byDigest.ImageID != amd64 {
		t.Errorf("pull by digest: digest %s, imageID %s, want both %s", byDigest.Digest, byDigest.ImageID, amd64)
	}

	if runtime.GOOS+"/"+runtime.GOARCH != "linux/amd64" {
		t.Logf("not running the linux/amd64 binary on %s/%s", runtime.GOOS, runtime.GOARCH)
		return
	}
	out, err = exec.Command(exe, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v\n%s", exe, err, out)
	}
	if want := fmt.Sprintf("%s %s (commit %s,", name, version, revision); !strings.HasPrefix(string(out), want) {
		t.Errorf("%s --version = %q, want it to start %q", exe, out, want)
	}
}

// startRegistry runs `herald-images registry` on a free port and returns
// host:port. The registry is stopped with SIGTERM by PID when the test
// ends, and must exit 0.
func startRegistry(t *testing.T, bin string) string {
	t.Helper()
	cmd := exec.Command(bin, "registry", "-addr", "127.0.0.1:0")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Errorf("stop registry (pid %d): %v", cmd.Process.Pid, err)
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("registry (pid %d) did not exit cleanly: %v", cmd.Process.Pid, err)
		}
	})
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		s.Scan()
		line <- s.Text()
	}()
	select {
	case l := <-line:
		host, ok := strings.CutPrefix(l, "listening on ")
		if !ok {
			t.Fatalf("registry printed %q, want \"listening on HOST:PORT\"", l)
		}
		return host
	case <-time.After(10 * time.Second):
		t.Fatal("registry printed nothing in 10s")
		return ""
	}
}

// pull runs `herald-images pull` for linux/amd64 and decodes what it prints.
func pull(t *testing.T, bin, ref, dir string) pulled {
	t.Helper()
	cmd := exec.Command(bin, "pull", "-insecure", "-platform", "linux/amd64", "-dir", dir, ref)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pull %s: %v\n%s", ref, err, stderr.String())
	}
	var p pulled
	dec := json.NewDecoder(strings.NewReader(string(out)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("pull %s printed %q: %v", ref, out, err)
	}
	return p
}
