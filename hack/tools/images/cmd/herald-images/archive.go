package main

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// The names an OCI layout's index.json gives its entry: podman load and the
// OCI tools read the first, containerd (and so Docker's containerd image
// store) the second.
const (
	refNameKey        = "org.opencontainers.image.ref.name"
	containerdNameKey = "io.containerd.image.name"
)

// dockerPlatform is the one image manifest.json names (see writeArchive).
var dockerPlatform = platform{OS: "linux", Arch: "amd64"}

// writeArchive writes idx as a tarred OCI image layout whose index.json has
// one entry, the image index named ref. The tar also carries manifest.json,
// the `docker save` format, which Docker without the containerd image store
// and `crane push FILE` read: that format holds single images only, so it
// names the linux/amd64 one. Every tar entry is dated created, owned by
// root and written in lexical order: the same index gives the same bytes.
func writeArchive(path string, idx v1.ImageIndex, ref string, created time.Time) error {
	dir, err := os.MkdirTemp("", "herald-layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	names := map[string]string{refNameKey: ref, containerdNameKey: dockerNormalize(ref)}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(names)); err != nil {
		return err
	}
	dm, err := dockerManifest(idx, ref)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), dm, 0o644); err != nil {
		return err
	}
	return tarDir(dir, path, created)
}

// dockerManifest is manifest.json of `docker save` for dockerPlatform's image.
func dockerManifest(idx v1.ImageIndex, ref string) ([]byte, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		if d.Platform == nil || d.Platform.OS != dockerPlatform.OS || d.Platform.Architecture != dockerPlatform.Arch {
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, err
		}
		cfg, err := img.ConfigName()
		if err != nil {
			return nil, err
		}
		m, err := img.Manifest()
		if err != nil {
			return nil, err
		}
		entry := struct {
			Config   string
			RepoTags []string
			Layers   []string
		}{Config: blobPath(cfg), RepoTags: []string{ref}}
		for _, l := range m.Layers {
			entry.Layers = append(entry.Layers, blobPath(l.Digest))
		}
		return json.Marshal([]any{entry})
	}
	return nil, fmt.Errorf("no %s image for manifest.json", dockerPlatform)
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// dockerNormalize spells ref as Docker and containerd store it:
// "herald-controller:v1" is "docker.io/library/herald-controller:v1".
func dockerNormalize(ref string) string {
	first, rest, ok := strings.Cut(ref, "/")
	if ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return ref
	}
	if !ok {
		return "docker.io/library/" + ref
	}
	return "docker.io/" + first + "/" + rest
}

// tarDir writes the files under dir to the tar file path, reproducibly.
func tarDir(dir, path string, created time.Time) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: filepath.ToSlash(rel), ModTime: created, Format: tar.FormatPAX}
		if d.IsDir() {
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, hdr.Name+"/", 0o755
			return tw.WriteHeader(hdr)
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file", p)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, info.Size()
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// readArchive unpacks an archive written by writeArchive into a temporary
// directory and returns its image index and name; cleanup removes the
// directory, after which the index can no longer be read.
func readArchive(path string) (idx v1.ImageIndex, ref string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "herald-layout-")
	if err != nil {
		return nil, "", nil, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	if err := untar(path, dir); err != nil {
		return nil, "", nil, err
	}
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, "", nil, err
	}
	im, err := top.IndexManifest()
	if err != nil {
		return nil, "", nil, err
	}
	if len(im.Manifests) != 1 || !im.Manifests[0].MediaType.IsIndex() {
		return nil, "", nil, fmt.Errorf("%s: index.json should name one image index, has %d entries", path, len(im.Manifests))
	}
	d := im.Manifests[0]
	idx, err = top.ImageIndex(d.Digest)
	if err != nil {
		return nil, "", nil, err
	}
	return idx, d.Annotations[refNameKey], cleanup, nil
}

// untar extracts the regular files and directories of a tar into dir.
func untar(path, dir string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if !filepath.IsLocal(hdr.Name) {
			return fmt.Errorf("%s: entry %q leaves the archive", path, hdr.Name)
		}
		target := filepath.Join(dir, hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			out, err := os.Create(target)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: entry %q is neither file nor directory", path, hdr.Name)
		}
	}
}

// verifyArchive reads an archive back as the image tools will: the OCI
// layout must hold want, complete and with every digest right, and
// manifest.json must be a valid `docker save` image.
func verifyArchive(path string, want v1.ImageIndex) error {
	idx, _, cleanup, err := readArchive(path)
	if err != nil {
		return err
	}
	defer cleanup()
	if err := validate.Index(idx); err != nil {
		return fmt.Errorf("OCI layout: %w", err)
	}
	got, err := idx.Digest()
	if err != nil {
		return err
	}
	if w, err := want.Digest(); err != nil || got != w {
		return fmt.Errorf("OCI layout holds %s, want %s (%v)", got, w, err)
	}
	img, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		return fmt.Errorf("manifest.json: %w", err)
	}
	if err := validate.Image(img); err != nil {
		return fmt.Errorf("manifest.json: %w", err)
	}
	return nil
}
