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

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/controller/report"
)

func validate(args []string, out io.Writer) error {
	fs := pflag.NewFlagSet("validate", pflag.ContinueOnError)
	file := fs.StringP("filename", "f", "", "the configuration document (config.yaml; - for standard input)")
	format := fs.StringP("output", "o", "table", "output format: table, json or yaml")
	inCluster := fs.Bool("cluster", false, "also preview, without writing anything, what applying the document would do to the cluster (Herald's namespace herald-system unless -n)")
	lbClass := fs.String("lb-class", "", "with --cluster: the spec.loadBalancerClass the controller serves (default: what its --lb-class says)")
	conn := clusterBesides(fs)
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
	var result report.Tabler = v
	if *inCluster && v.Valid {
		var class *string
		if fs.Changed("lb-class") {
			class = lbClass
		}
		if result, err = previewInCluster(conn(), fs.Changed("namespace"), class, *file, text); err != nil {
			return err
		}
	}
	if err := report.Write(out, *format, result); err != nil {
		return err
	}
	if !v.Valid {
		return errInvalid
	}
	return nil
}

// clusterBesides binds kubectl's connection flags as cluster does, but
// kubectl's --cluster (the kubeconfig cluster to use) as --kube-cluster:
// here --cluster asks for the preview.
func clusterBesides(fs *pflag.FlagSet) func() clientcmd.ClientConfig {
	kube := pflag.NewFlagSet("kubectl", pflag.ContinueOnError)
	conn := cluster(kube)
	kube.VisitAll(func(f *pflag.Flag) {
		if f.Name == "cluster" {
			f.Name = "kube-cluster"
		}
		fs.AddFlag(f)
	})
	return conn
}

// previewInCluster validates the document and previews it against the
// cluster the kubeconfig names; it only reads.
func previewInCluster(cc clientcmd.ClientConfig, namespaceGiven bool, class *string, file string, text []byte) (report.Impact, error) {
	rc, err := cc.ClientConfig()
	if err != nil {
		return report.Impact{}, err
	}
	ns := "herald-system"
	if namespaceGiven {
		if ns, _, err = cc.Namespace(); err != nil {
			return report.Impact{}, err
		}
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return report.Impact{}, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return report.Impact{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	im, err := report.ValidateInCluster(ctx, kube, dyn, ns, class, file, text)
	if err != nil {
		return report.Impact{}, fmt.Errorf("validate --cluster: %w", err)
	}
	return im, nil
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
