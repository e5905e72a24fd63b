// Command kubectl-herald is the operator's CLI, run as a kubectl plugin
// (`kubectl herald …`, once the binary is on PATH).
//
//	kubectl herald validate -f FILE [-o table|json|yaml]
//	kubectl herald migrate metallb -f FILE [-f FILE]... [-o table|json|yaml]
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
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

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
  migrate metallb -f FILE...
                      print the Herald configuration equivalent to MetalLB's
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
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	file := fs.String("f", "", "the configuration document (config.yaml; - for standard input)")
	format := fs.String("o", "table", "output format: table, json or yaml")
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

type files []string

func (f *files) String() string     { return fmt.Sprint(*f) }
func (f *files) Set(s string) error { *f = append(*f, s); return nil }

func migrate(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("migrate metallb", flag.ContinueOnError)
	var in files
	fs.Var(&in, "f", "a file of MetalLB resources or its ConfigMap (repeatable; - for standard input)")
	format := fs.String("o", "table", "output format: table (the config.yaml, with comments), json or yaml")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(in) == 0 || fs.NArg() > 0 {
		return errors.New("migrate metallb: give MetalLB's resources with -f FILE")
	}
	var stream []byte
	for _, name := range in {
		b, err := readLimited(name, config.MaxMigrationSize)
		if err != nil {
			return err
		}
		stream = append(append(stream, b...), "\n---\n"...)
	}
	m := report.Migrate(in, stream)
	if err := report.Write(out, *format, m); err != nil {
		return err
	}
	if !m.Valid {
		return errInvalid
	}
	return nil
}
