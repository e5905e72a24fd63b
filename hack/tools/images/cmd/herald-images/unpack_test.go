package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// entry is one tar header, with a body for regular files.
type entry struct {
	name, link, body string
	typ              byte
	mode             int64
}

func file(name, body string, mode int64) entry {
	return entry{name: name, body: body, typ: tar.TypeReg, mode: mode}
}
func dir(name string, mode int64) entry { return entry{name: name, typ: tar.TypeDir, mode: mode} }
func symlink(name, to string) entry {
	return entry{name: name, link: to, typ: tar.TypeSymlink, mode: 0o777}
}
func hardlink(name, to string) entry {
	return entry{name: name, link: to, typ: tar.TypeLink, mode: 0o644}
}

func layer(t *testing.T, entries ...entry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.body))}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func imageOf(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// tree lists dir as "path mode [-> link | =body]" lines, sorted.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		line := rel + " " + fi.Mode().String()
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			to, _ := os.Readlink(p)
			line += " -> " + to
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			line += " =" + string(b)
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func TestUnpackLayers(t *testing.T) {
	img := imageOf(t,
		layer(t,
			dir("etc/", 0o755), file("etc/keep", "k", 0o644), file("etc/gone", "g", 0o644),
			dir("opt/", 0o755), dir("opt/sub/", 0o755), file("opt/sub/old", "o", 0o644), file("opt/old", "o", 0o644),
			file("bin/tool", "v1", 0o755), hardlink("bin/alias", "bin/tool"),
			dir("ro/", 0o555), file("ro/f", "r", 0o444),
			file("./dot/x", "x", 0o600), symlink("lib", "usr/lib"),
			entry{name: "dev/null", typ: tar.TypeChar, mode: 0o666},
		),
		layer(t,
			// The opaque marker after this layer's own entry in opt/ must not hide it.
			file("opt/sub/new", "n", 0o640), file("opt/.wh..wh..opq", "", 0),
			file("etc/.wh.gone", "", 0),
			file("bin/tool", "v2", 0o700), // replaced, not truncated: bin/alias keeps v1
			file("lib", "now a file", 0o644),
		),
	)
	dst := t.TempDir()
	if err := unpack(img, dst); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"bin drwxr-xr-x",
		"bin/alias -rwxr-xr-x =v1",
		"bin/tool -rwx------ =v2",
		"dev drwxr-xr-x",
		"dot drwxr-xr-x",
		"dot/x -rw------- =x",
		"etc drwxr-xr-x",
		"etc/keep -rw-r--r-- =k",
		"lib -rw-r--r-- =now a file",
		"opt drwxr-xr-x",
		"opt/sub drwxr-xr-x",
		"opt/sub/new -rw-r----- =n",
		"ro dr-xr-xr-x",
		"ro/f -r--r--r-- =r",
	}
	got := tree(t, dst)
	if !slices.Equal(want, got) {
		t.Errorf("unpacked tree:\nwant %s\ngot  %s", strings.Join(want, "\n     "), strings.Join(got, "\n     "))
	}
}

func TestUnpackRefusesEscapes(t *testing.T) {
	for name, l := range map[string][]entry{
		"dot-dot":           {file("../evil", "x", 0o644)},
		"hard link outside": {hardlink("x", "../../etc/passwd")},
		"through a symlink": {symlink("up", ".."), file("up/evil", "x", 0o644)},
	} {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "root")
			if err := os.Mkdir(dst, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := unpack(imageOf(t, layer(t, l...)), dst); err == nil {
				t.Error("unpacked without error")
			}
			if _, err := os.Lstat(filepath.Join(parent, "evil")); err == nil {
				t.Error("wrote outside the directory")
			}
		})
	}
}
