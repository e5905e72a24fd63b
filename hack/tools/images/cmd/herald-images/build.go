package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// versionPkg is where the binaries keep what they were built from (--version).
const versionPkg = "github.com/heraldlb/herald/cmd/internal/version"

// binary is one of Herald's commands and how its image runs it.
type binary struct {
	Name string // the package under cmd/, the file in the image and the image name
	User string // the config's User: numeric, so the image needs no /etc/passwd
}

var binaries = []binary{
	// The controller only talks to the API server: any unprivileged uid will do
	// (65532 is the customary "nonroot" of distroless images).
	{Name: "herald-controller", User: "65532:65532"},
	// The speaker runs as root: it answers ARP/NDP on raw sockets (CAP_NET_RAW)
	// and binds BGP's port 179, and Kubernetes makes added capabilities
	// effective only for uid 0.
	{Name: "herald-speaker", User: "0:0"},
}

type platform struct{ OS, Arch string }

func (p platform) String() string { return p.OS + "/" + p.Arch }

// dir is the platform's subdirectory of the work directory.
func (p platform) dir() string { return p.OS + "_" + p.Arch }

type buildOptions struct {
	Module     string // Herald's module root
	Out        string // where the archives go
	Work       string // where the binaries are compiled to
	NoCompile  bool   // package the binaries already in Work
	Version    string
	Revision   string
	Source     string
	Repository string // prefix of the image names, may be empty
	Created    time.Time
	Platforms  []platform
}

// built is one archive written by build.
type built struct {
	Archive string
	Ref     string  // the image name and tag recorded in the archive
	Digest  v1.Hash // of the image index
}

// A tag as registries accept it; the version becomes one.
var tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// revisionRE: a git commit, or nothing when built outside git.
var revisionRE = regexp.MustCompile(`^[0-9a-f]{0,64}$`)

// build compiles every binary for every platform, then packages each binary
// into one image index (one image per platform) and writes it as an archive.
func build(ctx context.Context, o buildOptions) ([]built, error) {
	if !tagRE.MatchString(o.Version) {
		return nil, fmt.Errorf("version %q is not a valid image tag", o.Version)
	}
	if !revisionRE.MatchString(o.Revision) {
		return nil, fmt.Errorf("revision %q is not a git commit", o.Revision)
	}
	if len(o.Platforms) == 0 {
		return nil, fmt.Errorf("no platforms")
	}
	if o.Work == "" {
		if o.NoCompile {
			return nil, fmt.Errorf("-no-compile needs -work")
		}
		dir, err := os.MkdirTemp("", "herald-images-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		o.Work = dir
	}
	if !o.NoCompile {
		for _, p := range o.Platforms {
			if err := compile(ctx, o, p); err != nil {
				return nil, err
			}
		}
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	var out []built
	for _, b := range binaries {
		idx, err := imageIndex(o, b)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", b.Name, err)
		}
		ref := b.Name + ":" + o.Version
		if o.Repository != "" {
			ref = o.Repository + "/" + ref
		}
		archive := filepath.Join(o.Out, b.Name+".oci.tar")
		if err := writeArchive(archive, idx, ref, o.Created); err != nil {
			return nil, fmt.Errorf("write %s: %w", archive, err)
		}
		if err := verifyArchive(archive, idx); err != nil {
			return nil, fmt.Errorf("verify %s: %w", archive, err)
		}
		d, err := idx.Digest()
		if err != nil {
			return nil, err
		}
		out = append(out, built{Archive: archive, Ref: ref, Digest: d})
	}
	return out, nil
}

// compile builds static binaries for one platform into Work/<os>_<arch>/.
// Every input that could vary between machines is pinned, so that the same
// commit and toolchain give the same bytes.
func compile(ctx context.Context, o buildOptions, p platform) error {
	// -buildid= drops the Go build ID: its first part hashes the link's
	// inputs as the go command saw them, which differed between two builds
	// of the same tree whose binaries were otherwise byte for byte equal.
	ldflags := fmt.Sprintf("-s -w -buildid= -X %s.Version=%s -X %s.Commit=%s", versionPkg, o.Version, versionPkg, o.Revision)
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", filepath.Join(o.Work, p.dir()) + string(filepath.Separator)}
	for _, b := range binaries {
		args = append(args, "./cmd/"+b.Name)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = o.Module
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Arch, "GOAMD64=v1", "GOARM64=v8.0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	fmt.Fprintf(os.Stderr, "compiling for %s\n", p)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("compile for %s: %w", p, err)
	}
	return nil
}
