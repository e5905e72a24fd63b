// Command kubectl-herald is the operator's CLI, run as a kubectl plugin
// (`kubectl herald …`, once the binary is on PATH).
//
//	kubectl herald validate -f FILE [--cluster] [-o table|json|yaml]
//	kubectl herald status [-o table|json|yaml]
//	kubectl herald explain svc/NAME [-n NS] [-o table|json|yaml]
//	kubectl herald migrate metallb (-f FILE [-f FILE]... | --from-cluster) [-o table|json|yaml]
//
// validate reads a configuration document with the controller's own parser
// and prints every problem with its place; it exits 1 when there is any.
// With --cluster it also previews, writing nothing, what applying the
// document would do to the cluster's Services and announcements. status and
// explain read the cluster (Herald's ConfigMap, Lease, SpeakerStates,
// Services, EndpointSlices, Nodes) and only read.
// migrate reads MetalLB's configuration (its custom resources, as `kubectl
// get -n metallb-system ipaddresspools,l2advertisements,bgpadvertisements,
// bgppeers,bfdprofiles,communities -o yaml` prints them, and its legacy
// ConfigMap) and prints the equivalent config.yaml, with every setting it
// cannot carry over and why; it exits 1 when the result is not valid.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/heraldlb/herald/cmd/internal/version"
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
  validate -f FILE --cluster
                      and preview what applying it would do (writes nothing)
  status              config, controller, pools, speakers and Services at a glance
  explain svc/NAME    why a Service is, or is not, reachable
  migrate metallb -f FILE... | --from-cluster
                      print the Herald configuration equivalent to MetalLB's
  version             print the version

Commands that read the cluster take kubectl's flags (--kubeconfig, --context,
-n, ...; for validate, kubectl's --cluster is --kube-cluster).

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
	case "status":
		return status(args[1:], out)
	case "explain":
		return explain(args[1:], out)
	case "version", "--version":
		fmt.Fprintln(out, version.String("kubectl-herald"))
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
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
