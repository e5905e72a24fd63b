// Command herald-images builds Herald's container images without a Docker
// engine and pushes them: `build` cross-compiles the static binaries and
// writes one reproducible OCI image layout archive per binary (both
// platforms in one image index); `push` copies such archives to a registry.
// For the test lab, which plays kubelet without a container runtime,
// `registry` serves a throwaway registry and `pull` unpacks an image into a
// directory and says how to run it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

const usage = `usage:
  herald-images build [flags]           compile and package bin/herald-{controller,speaker}.oci.tar
  herald-images push -registry R [flags] ARCHIVE...   push each archive's image index to R/<name>:<tag>
  herald-images registry -addr HOST:PORT              serve an in-memory registry until SIGTERM
  herald-images pull -dir DIR [flags] REF             unpack REF's filesystem into DIR, print its config as JSON
Run a subcommand with -h for its flags.`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "build":
		err = runBuild(ctx, os.Args[2:])
	case "push":
		err = runPush(ctx, os.Args[2:])
	case "registry":
		err = runRegistry(ctx, os.Args[2:])
	case "pull":
		err = runPull(ctx, os.Args[2:])
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "herald-images:", err)
		os.Exit(1)
	}
}

func runBuild(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("build", flag.ExitOnError)
	var o buildOptions
	var platforms string
	var epoch int64
	fs.StringVar(&o.Module, "C", ".", "Herald's module root (where go.mod is)")
	fs.StringVar(&o.Out, "out", "bin", "directory for the <binary>.oci.tar archives")
	fs.StringVar(&o.Work, "work", "", "directory for the compiled binaries (default: a temporary directory, removed afterwards)")
	fs.BoolVar(&o.NoCompile, "no-compile", false, "package the binaries already in -work instead of compiling them")
	fs.StringVar(&o.Version, "version", "dev", "version stamped into the binaries, the labels and the tag")
	fs.StringVar(&o.Revision, "revision", "", "commit stamped into the binaries and the labels")
	fs.StringVar(&o.Source, "source", "https://github.com/heraldlb/herald", "org.opencontainers.image.source")
	fs.StringVar(&o.Repository, "repository", "", "registry and path prefixed to each image name in the archive (herald-controller:<version> when empty)")
	fs.StringVar(&platforms, "platforms", "linux/amd64,linux/arm64", "comma-separated os/arch list")
	fs.Int64Var(&epoch, "epoch", envEpoch(), "timestamp of every file and of the image configs, in seconds since 1970 (default $SOURCE_DATE_EPOCH, else 0)")
	fs.Parse(args)
	if fs.NArg() > 0 {
		return fmt.Errorf("build: unexpected arguments %q", fs.Args())
	}
	o.Created = time.Unix(epoch, 0).UTC()
	for p := range strings.SplitSeq(platforms, ",") {
		goos, arch, ok := strings.Cut(strings.TrimSpace(p), "/")
		if !ok || goos == "" || arch == "" {
			return fmt.Errorf("build: platform %q is not os/arch", p)
		}
		o.Platforms = append(o.Platforms, platform{OS: goos, Arch: arch})
	}
	built, err := build(ctx, o)
	if err != nil {
		return err
	}
	for _, b := range built {
		fmt.Printf("%s %s %s\n", b.Archive, b.Ref, b.Digest)
	}
	return nil
}

func runPush(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("push", flag.ExitOnError)
	registry := fs.String("registry", "", "registry and path to push to, e.g. registry.example.com/herald (required)")
	tag := fs.String("tag", "", "tag to push (default: the version the archive was built with)")
	insecure := fs.Bool("insecure", false, "talk plain HTTP to the registry (localhost is always plain HTTP)")
	fs.Parse(args)
	if *registry == "" || fs.NArg() == 0 {
		return fmt.Errorf("push: need -registry and at least one archive")
	}
	for _, archive := range fs.Args() {
		ref, digest, err := push(ctx, archive, *registry, *tag, *insecure)
		if err != nil {
			return err
		}
		fmt.Printf("%s@%s\n", ref, digest)
	}
	return nil
}

func runRegistry(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("registry", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:5000", "address to listen on; port 0 picks a free one (printed)")
	verbose := fs.Bool("v", false, "log every request to stderr")
	fs.Parse(args)
	if fs.NArg() > 0 {
		return fmt.Errorf("registry: unexpected arguments %q", fs.Args())
	}
	return serveRegistry(ctx, *addr, *verbose)
}

func runPull(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("pull", flag.ExitOnError)
	dir := fs.String("dir", "", "directory to unpack the image's filesystem into; must be empty or missing (required)")
	platform := fs.String("platform", runtime.GOOS+"/"+runtime.GOARCH, "os/arch[/variant] of the image to take from an index")
	insecure := fs.Bool("insecure", false, "talk plain HTTP to the registry (localhost is always plain HTTP)")
	fs.Parse(args)
	if *dir == "" || fs.NArg() != 1 {
		return fmt.Errorf("pull: need -dir and one image reference")
	}
	p, err := v1.ParsePlatform(*platform)
	if err != nil || p.OS == "" || p.Architecture == "" {
		return fmt.Errorf("pull: -platform %q is not os/arch[/variant]", *platform)
	}
	got, err := pull(ctx, fs.Arg(0), *p, *dir, *insecure)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(got)
}

// envEpoch follows the reproducible-builds convention: SOURCE_DATE_EPOCH,
// when set, is the time every artefact claims.
func envEpoch() int64 {
	var n int64
	if _, err := fmt.Sscan(os.Getenv("SOURCE_DATE_EPOCH"), &n); err != nil {
		return 0
	}
	return n
}
