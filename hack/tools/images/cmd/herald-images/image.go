package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// labels are the OCI annotations every image carries, in its config's labels,
// its manifest and its index.
func labels(o buildOptions, b binary) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":    b.Name,
		"org.opencontainers.image.source":   o.Source,
		"org.opencontainers.image.version":  o.Version,
		"org.opencontainers.image.revision": o.Revision,
		"org.opencontainers.image.created":  o.Created.Format("2006-01-02T15:04:05Z"),
	}
}

// imageIndex packages one binary for every platform into an OCI image index.
func imageIndex(o buildOptions, b binary) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range o.Platforms {
		img, err := image(o, b, p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        notArtifact{img},
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: p.OS, Architecture: p.Arch}},
		})
	}
	return mutate.Annotations(idx, labels(o, b)).(v1.ImageIndex), nil
}

// notArtifact keeps go-containerregistry from copying the config's media
// type into the index entry's artifactType: these are images, and the
// image-spec reserves artifactType for artifacts.
type notArtifact struct{ v1.Image }

func (notArtifact) ArtifactType() (string, error) { return "", nil }

// image is one platform's image: an empty base, one layer holding the binary,
// and a config that runs it.
func image(o buildOptions, b binary, p platform) (v1.Image, error) {
	layer, err := binaryLayer(filepath.Join(o.Work, p.dir(), b.Name), b.Name, o)
	if err != nil {
		return nil, err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: o.Created},
			CreatedBy: "herald-images: /" + b.Name,
			Comment:   "static binary, built with CGO_ENABLED=0 -trimpath",
		},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = p.OS, p.Arch
	cf.Created = v1.Time{Time: o.Created}
	cf.Config = v1.Config{
		Entrypoint: []string{"/" + b.Name},
		User:       b.User,
		WorkingDir: "/",
		Labels:     labels(o, b),
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(img, labels(o, b)).(v1.Image), nil
}

// binaryLayer is a one-file layer: the binary at /<name>, owned by root,
// mode 0755, dated o.Created. Nothing of the build machine (owner names,
// mtimes, umask) reaches the tar, so the layer's digest depends only on the
// binary's bytes.
func binaryLayer(path, name string, o buildOptions) (v1.Layer, error) {
	bin, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Size:     int64(len(bin)),
		Mode:     0o755,
		ModTime:  o.Created,
		Format:   tar.FormatPAX,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	raw := buf.Bytes()
	return tarball.LayerFromOpener(
		func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil },
		tarball.WithMediaType(types.OCILayer),
		tarball.WithCompressionLevel(gzip.BestCompression),
		tarball.WithCompressedCaching,
	)
}
