package main

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/heraldlb/herald/e2e/lab"
)

// benchImages builds the linux/amd64 images with the image tool
// (hack/tools/images, as `make images` does) and prints what a node pulls for
// each: the compressed layers plus the config. It needs no lab.
func benchImages(ctx context.Context) error {
	tool := filepath.Join(lab.DefaultBinDir(), "herald-images")
	if _, err := os.Stat(tool); err != nil {
		return fmt.Errorf("%s is missing (run `make tools`): %w", tool, err)
	}
	out, err := os.MkdirTemp("", "herald-bench-images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(out)
	cmd := exec.CommandContext(ctx, tool, "build", "-out", out, "-platforms", "linux/amd64")
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("herald-images build: %w", err)
	}
	for _, name := range []string{"controller", "speaker"} {
		size, err := pulledBytes(filepath.Join(out, "herald-"+name+".oci.tar"), "linux", "amd64")
		if err != nil {
			return err
		}
		fmt.Printf("image_%s_mib=%.1f\n", name, float64(size)/(1<<20))
	}
	return nil
}

type ociDescriptor struct {
	Digest   string `json:"digest"`
	Size     int64  `json:"size"`
	Platform *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
	} `json:"platform"`
}

type ociManifest struct {
	Manifests []ociDescriptor `json:"manifests"`
	Config    ociDescriptor   `json:"config"`
	Layers    []ociDescriptor `json:"layers"`
}

// pulledBytes reads an OCI layout archive's image index and returns the size
// of the config plus the compressed layers of its os/arch image.
func pulledBytes(archive, goos, arch string) (int64, error) {
	files, err := readTar(archive)
	if err != nil {
		return 0, err
	}
	blob := func(d ociDescriptor) (ociManifest, error) {
		var m ociManifest
		err := json.Unmarshal(files["blobs/"+strings.Replace(d.Digest, ":", "/", 1)], &m)
		return m, err
	}
	var top ociManifest
	if err := json.Unmarshal(files["index.json"], &top); err != nil || len(top.Manifests) != 1 {
		return 0, fmt.Errorf("%s: index.json should name one image index (%v)", archive, err)
	}
	idx, err := blob(top.Manifests[0])
	if err != nil {
		return 0, fmt.Errorf("%s: %w", archive, err)
	}
	for _, d := range idx.Manifests {
		if d.Platform == nil || d.Platform.OS != goos || d.Platform.Architecture != arch {
			continue
		}
		img, err := blob(d)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", archive, err)
		}
		size := img.Config.Size
		for _, l := range img.Layers {
			size += l.Size
		}
		return size, nil
	}
	return 0, fmt.Errorf("%s: no %s/%s image", archive, goos, arch)
}

// readTar returns the small files of a tar (the JSON documents), by name.
func readTar(path string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Size < 1<<20 {
			if files[hdr.Name], err = io.ReadAll(tr); err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
		}
	}
}
