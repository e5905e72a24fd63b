package main

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/controller/report"
)

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
