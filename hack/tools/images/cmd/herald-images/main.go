// Command herald-images builds Herald's container images without a Docker
// engine and pushes them: `build` cross-compiles the static binaries and
// writes one reproducible OCI image layout archive per binary (both
// platforms in one image index); `push` copies such archives to a registry.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

const usage = `usage:
  herald-images build [flags]           compile and package bin/herald-{controller,speaker}.oci.tar
  herald-images push -registry R [flags] ARCHIVE...   push each archive's image index to R/<name>:<tag>
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

// envEpoch follows the reproducible-builds convention: SOURCE_DATE_EPOCH,
// when set, is the time every artefact claims.
func envEpoch() int64 {
	var n int64
	if _, err := fmt.Sscan(os.Getenv("SOURCE_DATE_EPOCH"), &n); err != nil {
		return 0
	}
	return n
}
