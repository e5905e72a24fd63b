package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/heraldlb/herald/controller/report"
)

func explain(args []string, out io.Writer) error {
	fs := pflag.NewFlagSet("explain", pflag.ContinueOnError)
	format := fs.StringP("output", "o", "table", "output format: table, json or yaml")
	herald := fs.String("herald-namespace", "herald-system", "the namespace Herald runs in")
	conn := cluster(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("explain: name one Service: explain svc/NAME [-n NAMESPACE]")
	}
	name, err := serviceName(fs.Arg(0))
	if err != nil {
		return err
	}
	cc := conn()
	ns, _, err := cc.Namespace()
	if err != nil {
		return err
	}
	c, err := readCluster(cc, *herald, ns+"/"+name)
	if err != nil {
		return err
	}
	x, err := report.Explain(c, ns, name)
	if err != nil {
		return err
	}
	return report.Write(out, *format, x)
}

// serviceName reads kubectl's ways of naming a Service: svc/NAME,
// service/NAME, services/NAME or NAME.
func serviceName(arg string) (string, error) {
	kind, name, found := strings.Cut(arg, "/")
	if !found {
		name, kind = kind, "svc"
	}
	switch strings.ToLower(kind) {
	case "svc", "service", "services":
	default:
		return "", fmt.Errorf("explain: %q is not a Service: name it svc/NAME", arg)
	}
	if name == "" {
		return "", fmt.Errorf("explain: %q names no Service", arg)
	}
	return name, nil
}
