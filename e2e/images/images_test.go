package images_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/heraldlb/herald/e2e/lab"
)

// What the test stamps into the images: fixed, so the expected values are
// known without asking git.
const (
	version  = "v0.0.0-imagetest"
	revision = "0123456789abcdef0123456789abcdef01234567"
	epoch    = 1700000000
)

var platforms = []string{"linux/amd64", "linux/arm64"}

// The images and the user each runs as; the controller must not be root.
var images = map[string]string{
	"herald-controller": "65532:65532",
	"herald-speaker":    "0:0",
}

// builds holds the two packagings the tests read, each made at most once
// per process and only when a test asks for it: the second only serves
// TestSameDigestTwice.
var builds [2]struct {
	dir, skip string
	err       error
	done      bool
}

// built compiles the binaries once and packages them twice, into two
// directories: the packaging must give the same bytes. (That compiling twice
// gives the same binaries is Go's own guarantee with -trimpath and
// -buildid=; `make images` twice shows it end to end.)
func built(t *testing.T) (first, second string) {
	t.Helper()
	return packaged(t, 0), packaged(t, 1)
}

// builtOnce is the first packaging alone, for the tests that read one.
func builtOnce(t *testing.T) string {
	t.Helper()
	return packaged(t, 0)
}

// packaged returns the directory of packaging i (0 or 1), making it first;
// the second packages the binaries the first compiled.
func packaged(t *testing.T, i int) string {
	t.Helper()
	if i > 0 {
		packaged(t, i-1)
	}
	b := &builds[i]
	if !b.done {
		b.done = true
		b.dir, b.skip, b.err = build(i)
	}
	if b.skip != "" {
		t.Skip(b.skip)
	}
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.dir
}

var tmpRoot string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "herald-images-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tmpRoot = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func tool() (string, string) {
	path := filepath.Join(lab.DefaultBinDir(), "herald-images")
	if _, err := os.Stat(path); err != nil {
		return "", "no image tool: " + path + " is missing (run `make tools`, or hack/tools/build.sh images)"
	}
	if _, err := exec.LookPath("go"); err != nil {
		return "", "no go command to compile the binaries with"
	}
	return path, ""
}

func build(i int) (dir, skip string, err error) {
	bin, skip := tool()
	if skip != "" {
		return "", skip, nil
	}
	dir = filepath.Join(tmpRoot, []string{"first", "second"}[i])
	run := []string{"build", "-out", dir, "-C", "../..", "-work", filepath.Join(tmpRoot, "work"),
		"-version", version, "-revision", revision, "-epoch", fmt.Sprint(epoch), "-platforms", strings.Join(platforms, ",")}
	if i > 0 {
		run = append(run, "-no-compile")
	}
	start := time.Now()
	out, err := exec.Command(bin, run...).CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("herald-images %s: %w\n%s", strings.Join(run, " "), err, out)
	}
	log.Printf("herald-images build -out %s: %.1fs", dir, time.Since(start).Seconds())
	return dir, "", nil
}

// archive is an OCI layout tar read with the standard library only, so the
// test does not trust the tool's own reader.
type archive struct {
	files   map[string][]byte
	headers []*tar.Header
}

func readArchive(t *testing.T, path string) archive {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a := archive{files: map[string][]byte{}}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return a
		}
		if err != nil {
			t.Fatal(err)
		}
		a.headers = append(a.headers, hdr)
		if hdr.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			a.files[hdr.Name] = b
		}
	}
}

type descriptor struct {
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	Annotations  map[string]string `json:"annotations"`
	Platform     *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
	} `json:"platform"`
}

type manifest struct {
	MediaType   string            `json:"mediaType"`
	Config      descriptor        `json:"config"`
	Layers      []descriptor      `json:"layers"`
	Manifests   []descriptor      `json:"manifests"`
	Annotations map[string]string `json:"annotations"`
}

type config struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Created      string `json:"created"`
	Config       struct {
		User       string            `json:"User"`
		Entrypoint []string          `json:"Entrypoint"`
		Labels     map[string]string `json:"Labels"`
	} `json:"config"`
}

// blob returns the blob d names, checking its size and digest.
func (a archive) blob(t *testing.T, d descriptor) []byte {
	t.Helper()
	alg, sum, ok := strings.Cut(d.Digest, ":")
	if !ok || alg != "sha256" {
		t.Fatalf("digest %q is not sha256", d.Digest)
	}
	b, ok := a.files["blobs/sha256/"+sum]
	if !ok {
		t.Fatalf("blob %s is missing", d.Digest)
	}
	if got := sha256.Sum256(b); hex.EncodeToString(got[:]) != sum || int64(len(b)) != d.Size {
		t.Fatalf("blob %s: sha256 %x, %d bytes, descriptor says %d", d.Digest, got, len(b), d.Size)
	}
	return b
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// index returns the descriptor of the archive's image index (the one entry of
// index.json) and the index itself.
func (a archive) index(t *testing.T) (descriptor, manifest) {
	t.Helper()
	top := decode[manifest](t, a.files["index.json"])
	if len(top.Manifests) != 1 {
		t.Fatalf("index.json has %d entries, want 1", len(top.Manifests))
	}
	d := top.Manifests[0]
	if d.MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Fatalf("index.json names a %s, want an OCI image index", d.MediaType)
	}
	return d, decode[manifest](t, a.blob(t, d))
}

func TestSameDigestTwice(t *testing.T) {
	first, second := built(t)
	for name := range images {
		a := readArchive(t, filepath.Join(first, name+".oci.tar"))
		b := readArchive(t, filepath.Join(second, name+".oci.tar"))
		da, _ := a.index(t)
		db, _ := b.index(t)
		if da.Digest != db.Digest {
			t.Errorf("%s: index digest %s, then %s", name, da.Digest, db.Digest)
		}
		fa, _ := os.ReadFile(filepath.Join(first, name+".oci.tar"))
		fb, _ := os.ReadFile(filepath.Join(second, name+".oci.tar"))
		if !bytes.Equal(fa, fb) {
			t.Errorf("%s: the two archives differ", name)
		}
	}
}

func TestArchive(t *testing.T) {
	first := builtOnce(t)
	for name, user := range images {
		t.Run(name, func(t *testing.T) {
			a := readArchive(t, filepath.Join(first, name+".oci.tar"))
			if got := string(a.files["oci-layout"]); !strings.Contains(got, `"imageLayoutVersion"`) {
				t.Errorf("oci-layout = %q", got)
			}
			var names []string
			for _, h := range a.headers {
				names = append(names, h.Name)
				if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || h.ModTime.Unix() != epoch {
					t.Errorf("archive entry %s: owner %d:%d %q:%q, mtime %v", h.Name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
				}
			}
			if !slices.IsSorted(names) {
				t.Errorf("archive entries not sorted: %q", names)
			}

			ref := name + ":" + version
			d, idx := a.index(t)
			if got := d.Annotations["org.opencontainers.image.ref.name"]; got != ref {
				t.Errorf("ref.name = %q, want %q", got, ref)
			}
			wantLabels := map[string]string{
				"org.opencontainers.image.source":   "https://github.com/heraldlb/herald",
				"org.opencontainers.image.version":  version,
				"org.opencontainers.image.revision": revision,
				"org.opencontainers.image.title":    name,
			}
			checkLabels(t, "index annotations", wantLabels, idx.Annotations)

			var got []string
			for _, m := range idx.Manifests {
				if m.Platform == nil {
					t.Fatalf("manifest %s has no platform", m.Digest)
				}
				p := m.Platform.OS + "/" + m.Platform.Architecture
				got = append(got, p)
				if m.ArtifactType != "" {
					t.Errorf("%s: index entry has artifactType %q: an image is no artifact", p, m.ArtifactType)
				}
				t.Run(p, func(t *testing.T) {
					img := decode[manifest](t, a.blob(t, m))
					cfg := decode[config](t, a.blob(t, img.Config))
					if cfg.OS+"/"+cfg.Architecture != p {
						t.Errorf("config platform %s/%s", cfg.OS, cfg.Architecture)
					}
					if cfg.Config.User != user {
						t.Errorf("user %q, want %q", cfg.Config.User, user)
					}
					if diff := cmp.Diff([]string{"/" + name}, cfg.Config.Entrypoint); diff != "" {
						t.Errorf("entrypoint (-want +got):\n%s", diff)
					}
					if cfg.Created != "2023-11-14T22:13:20Z" {
						t.Errorf("created %q, want the epoch", cfg.Created)
					}
					checkLabels(t, "config labels", wantLabels, cfg.Config.Labels)
					checkLabels(t, "manifest annotations", wantLabels, img.Annotations)
					if len(img.Layers) != 1 {
						t.Fatalf("%d layers, want 1", len(img.Layers))
					}
					checkLayer(t, a.blob(t, img.Layers[0]), name)
				})
			}
			if diff := cmp.Diff(platforms, got); diff != "" {
				t.Errorf("platforms (-want +got):\n%s", diff)
			}

			// docker load without the containerd store reads manifest.json.
			dm := decode[[]struct {
				Config   string
				RepoTags []string
				Layers   []string
			}](t, a.files["manifest.json"])
			if len(dm) != 1 || !slices.Equal(dm[0].RepoTags, []string{ref}) || len(dm[0].Layers) != 1 {
				t.Fatalf("manifest.json = %+v", dm)
			}
			for _, f := range append([]string{dm[0].Config}, dm[0].Layers...) {
				if _, ok := a.files[f]; !ok {
					t.Errorf("manifest.json names %s, not in the archive", f)
				}
			}
		})
	}
}

// checkLayer: the layer is one root-owned, executable, static ELF file at
// /<name>, dated the epoch.
func checkLayer(t *testing.T, gz []byte, name string) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var entries []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, h.Name)
		if h.Uid != 0 || h.Gid != 0 || h.Mode != 0o755 || h.ModTime.Unix() != epoch {
			t.Errorf("layer entry %s: %d:%d mode %o mtime %v", h.Name, h.Uid, h.Gid, h.Mode, h.ModTime)
		}
		head := make([]byte, 4)
		if _, err := io.ReadFull(tr, head); err != nil || string(head) != "\x7fELF" {
			t.Errorf("layer entry %s is not an ELF binary", h.Name)
		}
	}
	if diff := cmp.Diff([]string{name}, entries); diff != "" {
		t.Errorf("layer entries (-want +got):\n%s", diff)
	}
}

func checkLabels(t *testing.T, where string, want, got map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s = %q, want %q", where, k, got[k], v)
		}
	}
}

func TestPush(t *testing.T) {
	first := builtOnce(t)
	bin, _ := tool()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	var archives []string
	for name := range images {
		archives = append(archives, filepath.Join(first, name+".oci.tar"))
	}
	out, err := exec.Command(bin, append([]string{"push", "-registry", host + "/herald"}, archives...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	for name := range images {
		d, _ := readArchive(t, filepath.Join(first, name+".oci.tar")).index(t)
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodHead, srv.URL+"/v2/herald/"+name+"/manifests/"+version, nil)
		req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s:%s in the registry: %s", name, version, resp.Status)
		}
		if got := resp.Header.Get("Docker-Content-Digest"); got != d.Digest {
			t.Errorf("%s:%s has digest %s, built %s", name, version, got, d.Digest)
		}
	}
}
