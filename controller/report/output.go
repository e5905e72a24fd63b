package report

import (
	"encoding/json"
	"fmt"
	"io"

	"sigs.k8s.io/yaml"
)

// Tabler is a result that renders itself as a table.
type Tabler interface{ Table(io.Writer) error }

// Write renders a result in format table, json or yaml (kubectl's -o).
func Write(w io.Writer, format string, v Tabler) error {
	switch format {
	case "", "table":
		return v.Table(w)
	case "json":
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	return fmt.Errorf("output format %q: want table, json or yaml", format)
}
