// Command kubectl-herald is the operator's CLI, run as a kubectl plugin
// (`kubectl herald …`, once the binary is on PATH).
//
//	kubectl herald validate -f FILE [-o table|json|yaml]
//	kubectl herald migrate metallb (-f FILE [-f FILE]... | --from-cluster) [-o table|json|yaml]
//
// validate reads a configuration document with the controller's own parser
// and prints every problem with its place; it exits 1 when there is any.
// migrate reads MetalLB's configuration (its custom resources, as `kubectl
// get -n metallb-system ipaddresspools,l2advertisements,bgpadvertisements,
// bgppeers,bfdprofiles,communities -o yaml` prints them, and its legacy
// ConfigMap) and prints the equivalent config.yaml, with every setting it
// cannot carry over and why; it exits 1 when the result is not valid.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/heraldlb/herald/cmd/internal/version"
	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/controller/report"
)

// errInvalid makes the process exit 1 without another message.
var errInvalid = errors.New("invalid")

func main() {
	err := run(os.Args[1:], os.Stdout)
	switch {
	case errors.Is(err, errInvalid):
		os.Exit(1)
	case err != nil:
		fmt.Fprintln(os.Stderr, "kubectl herald:", err)
		os.Exit(2)
	}
}

const usage = `usage: kubectl herald COMMAND [flags]

Commands:
  validate -f FILE    check a configuration document (config.yaml) offline
  migrate metallb -f FILE... | --from-cluster
                      print the Herald configuration equivalent to MetalLB's

Commands that read the cluster take kubectl's flags (--kubeconfig, --context, -n, ...).
  version             print the version

Run "kubectl herald COMMAND -h" for a command's flags.
`

func run(args []string, out io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(out, usage)
		return nil
	}
	switch args[0] {
	case "validate":
		return validate(args[1:], out)
	case "migrate":
		if len(args) < 2 || args[1] != "metallb" {
			return errors.New("migrate: say what from: migrate metallb -f FILE")
		}
		return migrate(args[2:], out)
	case "version", "--version":
		fmt.Fprintln(out, version.String("kubectl-herald"))
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}

func validate(args []string, out io.Writer) error {
	fs := pflag.NewFlagSet("validate", pflag.ContinueOnError)
	file := fs.StringP("filename", "f", "", "the configuration document (config.yaml; - for standard input)")
	format := fs.StringP("output", "o", "table", "output format: table, json or yaml")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *file == "" || fs.NArg() > 0 {
		return errors.New("validate: give the document with -f FILE")
	}
	text, err := readDocument(*file)
	if err != nil {
		return err
	}
	v := report.Validate(*file, text)
	if err := report.Write(out, *format, v); err != nil {
		return err
	}
	if !v.Valid {
		return errInvalid
	}
	return nil
}

// readDocument reads at most one byte more than a configuration may hold,
// so that the parser reports the size instead of the CLI reading a huge file.
func readDocument(name string) ([]byte, error) {
	return readLimited(name, config.MaxDocumentSize)
}

// readLimited reads at most limit+1 bytes of a file (or standard input).
func readLimited(name string, limit int) ([]byte, error) {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	return io.ReadAll(io.LimitReader(r, int64(limit)+1))
}

// cluster binds kubectl's connection flags (--kubeconfig, --context, -n,
// --server, ...) and returns the client configuration they name.
func cluster(fs *pflag.FlagSet) func() clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	overrides := &clientcmd.ConfigOverrides{}
	fs.StringVar(&rules.ExplicitPath, "kubeconfig", "", "path to the kubeconfig file")
	clientcmd.BindOverrideFlags(overrides, fs, clientcmd.RecommendedConfigOverrideFlags(""))
	return func() clientcmd.ClientConfig {
		return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	}
}

func migrate(args []string, out io.Writer) error {
	fs := pflag.NewFlagSet("migrate metallb", pflag.ContinueOnError)
	in := fs.StringArrayP("filename", "f", nil, "a file of MetalLB resources or its ConfigMap (repeatable; - for standard input)")
	fromCluster := fs.Bool("from-cluster", false, "read MetalLB's resources and ConfigMap from the cluster (namespace metallb-system unless -n)")
	format := fs.StringP("output", "o", "table", "output format: table (the config.yaml, with comments), json or yaml")
	conn := cluster(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (len(*in) > 0) == *fromCluster || fs.NArg() > 0 {
		return errors.New("migrate metallb: give MetalLB's resources with -f FILE or --from-cluster")
	}
	var stream []byte
	var sources []string
	for _, name := range *in {
		b, err := readLimited(name, config.MaxMigrationSize)
		if err != nil {
			return err
		}
		stream = append(append(stream, b...), "\n---\n"...)
		sources = append(sources, name)
	}
	if *fromCluster {
		var err error
		if stream, sources, err = fromClusterStream(conn(), fs.Changed("namespace")); err != nil {
			return err
		}
	}
	m := report.Migrate(sources, stream)
	if err := report.Write(out, *format, m); err != nil {
		return err
	}
	if !m.Valid {
		return errInvalid
	}
	return nil
}

// fromClusterStream reads MetalLB's configuration from the cluster.
func fromClusterStream(cc clientcmd.ClientConfig, namespaceGiven bool) ([]byte, []string, error) {
	rc, err := cc.ClientConfig()
	if err != nil {
		return nil, nil, err
	}
	ns := "metallb-system"
	if namespaceGiven {
		if ns, _, err = cc.Namespace(); err != nil {
			return nil, nil, err
		}
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, nil, err
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return report.MetalLBFromCluster(ctx, dyn, kube, ns)
}
