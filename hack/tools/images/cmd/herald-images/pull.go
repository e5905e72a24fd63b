package main

import (
	"context"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// pulled is what pull prints: where ref led and how the image runs, as a
// kubelet would read it from the image config.
type pulled struct {
	Ref        string   `json:"ref"`
	Digest     string   `json:"digest"`  // of what ref names: the index, for a multi-platform image
	ImageID    string   `json:"imageID"` // of the platform's image manifest
	Entrypoint []string `json:"entrypoint"`
	Cmd        []string `json:"cmd"`
	Env        []string `json:"env"`
	User       string   `json:"user"`
	WorkingDir string   `json:"workingDir"`
}

// pull fetches ref (a tag or a digest), resolves an index to the image for
// platform, and unpacks that image's filesystem into dir, which must be
// empty or missing. Credentials come from the Docker config, as for push.
func pull(ctx context.Context, ref string, platform v1.Platform, dir string, insecure bool) (pulled, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return pulled{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	if err := emptyDir(dir); err != nil {
		return pulled{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	desc, err := remote.Get(r, remote.WithContext(ctx), remote.WithPlatform(platform), remote.WithAuthFromKeychain(authn.DefaultKeychain))
	if err != nil {
		return pulled{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	img, err := desc.Image()
	if err != nil {
		return pulled{}, fmt.Errorf("pull %s for %s: %w", ref, platform, err)
	}
	id, err := img.Digest()
	if err != nil {
		return pulled{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return pulled{}, fmt.Errorf("pull %s: config: %w", ref, err)
	}
	if err := unpack(img, dir); err != nil {
		return pulled{}, fmt.Errorf("pull %s: unpack into %s: %w", ref, dir, err)
	}
	c := cf.Config
	return pulled{
		Ref:        ref,
		Digest:     desc.Digest.String(),
		ImageID:    id.String(),
		Entrypoint: orEmpty(c.Entrypoint),
		Cmd:        orEmpty(c.Cmd),
		Env:        orEmpty(c.Env),
		User:       c.User,
		WorkingDir: c.WorkingDir,
	}, nil
}

// orEmpty makes an absent list print as [] rather than null.
func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// emptyDir creates dir, or checks that it holds nothing: unpacking over
// another filesystem would mix the two.
func emptyDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("%s is not empty", dir)
	}
	return nil
}
