package main

import (
	"context"
	"fmt"
	"path"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// push copies an archive's image index, both platforms, to
// registry/<image name>:<tag>; tag defaults to the one the archive was built
// with (the version). Credentials come from the Docker config, as with
// `docker login`.
func push(ctx context.Context, archive, registry, tag string, insecure bool) (name.Tag, v1.Hash, error) {
	idx, built, cleanup, err := readArchive(archive)
	if err != nil {
		return name.Tag{}, v1.Hash{}, err
	}
	defer cleanup()
	src, err := name.NewTag(built, name.WeakValidation)
	if err != nil {
		return name.Tag{}, v1.Hash{}, fmt.Errorf("%s: image name %q: %w", archive, built, err)
	}
	if tag == "" {
		tag = src.TagStr()
	}
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	dst, err := name.NewTag(registry+"/"+path.Base(src.RepositoryStr())+":"+tag, opts...)
	if err != nil {
		return name.Tag{}, v1.Hash{}, fmt.Errorf("push %s: %w", archive, err)
	}
	if err := remote.WriteIndex(dst, idx, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return name.Tag{}, v1.Hash{}, fmt.Errorf("push %s to %s: %w", archive, dst, err)
	}
	d, err := idx.Digest()
	return dst, d, err
}
