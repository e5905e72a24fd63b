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

	"github.com/heraldlb/herald/controller/report"
)

func status(args []string, out io.Writer) error {
	fs := pflag.NewFlagSet("status", pflag.ContinueOnError)
	format := fs.StringP("output", "o", "table", "output format: table, json or yaml")
	herald := fs.String("herald-namespace", "herald-system", "the namespace Herald runs in")
	conn := cluster(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.New("status: takes no arguments")
	}
	c, err := readCluster(conn(), *herald, "")
	if err != nil {
		return err
	}
	return report.Write(out, *format, report.BuildStatus(c))
}

// readCluster reads what status and explain need (explain: the Service's
// namespace/name, or "").
func readCluster(cc clientcmd.ClientConfig, heraldNamespace, explain string) (*report.Cluster, error) {
	rc, err := cc.ClientConfig()
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return report.ReadCluster(ctx, kube, dyn, heraldNamespace, explain)
}
