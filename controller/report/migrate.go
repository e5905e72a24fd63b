package report

import (
	"fmt"
	"io"
	"strings"

	"github.com/heraldlb/herald/config"
)

// Migration is the result of `kubectl herald migrate metallb`.
type Migration struct {
	Sources    []string  `json:"sources"`
	Config     string    `json:"config"` // Herald's config.yaml
	Valid      bool      `json:"valid"`
	Problems   []Problem `json:"problems,omitempty"`
	NotCarried []string  `json:"notCarried"`
}

// Migrate converts MetalLB's configuration (custom resources and the
// legacy ConfigMap, as one YAML stream) read from sources.
func Migrate(sources []string, stream []byte) Migration {
	out := Migration{Sources: sources, NotCarried: []string{}}
	m, err := config.MigrateMetalLB(stream)
	for _, p := range config.Problems(err) {
		out.Problems = append(out.Problems, Problem{Path: p.Path, Message: p.Err.Error()})
	}
	if m != nil {
		out.Config, out.Valid = string(m.Text), err == nil
		out.NotCarried = append(out.NotCarried, m.NotCarried...)
	}
	return out
}

// Table prints the configuration ready to apply, with what was not carried
// over as comments above it, so the output can go straight to a file.
func (m Migration) Table(w io.Writer) error {
	fmt.Fprintf(w, "# Herald configuration migrated from MetalLB (%s).\n", strings.Join(m.Sources, ", "))
	if len(m.NotCarried) == 0 {
		fmt.Fprintln(w, "# Every setting was carried over.")
	} else {
		fmt.Fprintf(w, "# Not carried over (%d):\n", len(m.NotCarried))
		for _, n := range m.NotCarried {
			fmt.Fprintf(w, "# - %s\n", n)
		}
	}
	for _, p := range m.Problems {
		fmt.Fprintf(w, "# PROBLEM %s: %s\n", p.Path, p.Message)
	}
	_, err := io.WriteString(w, m.Config)
	return err
}
