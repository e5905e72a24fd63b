package main

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The OCI image-spec's whiteouts: ".wh.NAME" deletes NAME of the layers
// below; ".wh..wh..opq" in a directory hides everything the layers below put
// in it.
const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
)

// unpack applies img's layers in order to dir, as a container runtime lays
// out a root filesystem. Every file operation goes through an os.Root, so
// neither a name with ".." nor a symlink from an earlier entry can write
// outside dir. Owners are kept only when running as root; device nodes and
// FIFOs are skipped (nothing run from an unpacked image here needs them, and
// an unprivileged process could not create them).
func unpack(img v1.Image, dir string) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	u := &unpacker{root: root, chown: os.Geteuid() == 0, dirModes: map[string]fs.FileMode{}}
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		err = u.apply(tar.NewReader(rc))
		if cerr := rc.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
	}
	return u.chmodDirs()
}

type unpacker struct {
	root  *os.Root
	chown bool
	// dirModes are set once every layer is in: a read-only directory must
	// stay writable while later entries land in it.
	dirModes map[string]fs.FileMode
}

// apply writes one layer. Whiteouts hide only what the layers below put
// there, wherever in the layer they come, so the paths this layer wrote
// (and their parents) are kept from them.
func (u *unpacker) apply(tr *tar.Reader) error {
	written := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		// A leading "/" names the image's root, as tar itself reads it.
		p := filepath.Clean(filepath.FromSlash(strings.TrimLeft(hdr.Name, "/")))
		if !filepath.IsLocal(p) {
			return fmt.Errorf("entry %q leaves the image's root", hdr.Name)
		}
		parent, base := filepath.Dir(p), filepath.Base(p)
		switch {
		case base == opaqueMarker:
			if err := u.clearBelow(parent, written); err != nil {
				return fmt.Errorf("opaque %s: %w", parent, err)
			}
			continue
		case strings.HasPrefix(base, whiteoutPrefix+whiteoutPrefix):
			continue // other aufs bookkeeping (.wh..wh.plnk and such)
		case strings.HasPrefix(base, whiteoutPrefix):
			hidden := filepath.Join(parent, strings.TrimPrefix(base, whiteoutPrefix))
			if !written[hidden] {
				if err := u.remove(hidden); err != nil {
					return fmt.Errorf("whiteout %s: %w", hidden, err)
				}
			}
			continue
		}
		if p == "." {
			continue // the root is dir itself
		}
		for q := p; q != "."; q = filepath.Dir(q) {
			written[q] = true
		}
		if err := u.root.MkdirAll(parent, 0o755); err != nil {
			return err
		}
		if err := u.write(hdr, p, tr); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
	}
}

// write creates the entry hdr describes at p, replacing what a lower layer
// had there (a directory only by something that is not one).
func (u *unpacker) write(hdr *tar.Header, p string, r io.Reader) error {
	mode := hdr.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	old, err := u.root.Lstat(p)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if hdr.Typeflag == tar.TypeDir && exists && old.IsDir() {
		u.dirModes[p] = mode
		return u.lchown(hdr, p)
	}
	switch hdr.Typeflag {
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return nil
	case tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink:
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
	if exists {
		// Removed, not truncated: the old file may be a hard link whose
		// other names must keep their content.
		if err := u.remove(p); err != nil {
			return err
		}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := u.root.Mkdir(p, 0o755); err != nil {
			return err
		}
		u.dirModes[p] = mode
		return u.lchown(hdr, p)
	case tar.TypeSymlink:
		if err := u.root.Symlink(hdr.Linkname, p); err != nil {
			return err
		}
		return u.lchown(hdr, p)
	case tar.TypeLink:
		target := filepath.Clean(filepath.FromSlash(strings.TrimLeft(hdr.Linkname, "/")))
		if !filepath.IsLocal(target) {
			return fmt.Errorf("hard link to %q leaves the image's root", hdr.Linkname)
		}
		return u.root.Link(target, p)
	}
	f, err := u.root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// Chown clears the set-id bits, so it comes before Chmod.
	if err := u.lchown(hdr, p); err != nil {
		return err
	}
	return u.root.Chmod(p, mode)
}

func (u *unpacker) lchown(hdr *tar.Header, p string) error {
	if !u.chown {
		return nil
	}
	return u.root.Lchown(p, hdr.Uid, hdr.Gid)
}

// remove deletes p and all under it, and forgets the modes of the
// directories that went with it.
func (u *unpacker) remove(p string) error {
	for d := range u.dirModes {
		if d == p || strings.HasPrefix(d, p+string(filepath.Separator)) {
			delete(u.dirModes, d)
		}
	}
	return u.root.RemoveAll(p)
}

// clearBelow removes everything under dir that this layer did not write.
func (u *unpacker) clearBelow(dir string, written map[string]bool) error {
	f, err := u.root.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	entries, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		switch {
		case !written[p]:
			if err := u.remove(p); err != nil {
				return err
			}
		case e.IsDir():
			if err := u.clearBelow(p, written); err != nil {
				return err
			}
		}
	}
	return nil
}

// chmodDirs gives every directory the mode its last entry named.
func (u *unpacker) chmodDirs() error {
	for d, mode := range u.dirModes {
		if err := u.root.Chmod(d, mode); err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
	}
	return nil
}
