// Command kubectl-herald is the operator's CLI, run as a kubectl plugin
// (`kubectl herald …`, once the binary is on PATH).
//
//	kubectl herald validate -f FILE [-o table|json|yaml]
//
// validate reads a configuration document with the controller's own parser
// and prints every problem with its place; it exits 1 when there is any.
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
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	return io.ReadAll(io.LimitReader(r, int64(config.MaxDocumentSize)+1))
}
