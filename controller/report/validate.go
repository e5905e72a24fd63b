// Package report builds what `kubectl herald` prints: each command's result
// as plain data (for -o json and -o yaml) with a table rendering.
package report

import (
	"fmt"
	"io"
	"text/tabwriter"

	"go.yaml.in/yaml/v3"

	"github.com/heraldlb/herald/config"
)

// Validation is the result of `kubectl herald validate -f FILE`.
type Validation struct {
	File     string    `json:"file"`
	Valid    bool      `json:"valid"`
	Hash     string    `json:"hash"` // what herald.dev/confirm takes for this document
	Problems []Problem `json:"problems,omitempty"`
	Warnings []string  `json:"warnings,omitempty"`
	Counts   Counts    `json:"counts"`
}

// Problem is one problem of a document, at its place.
type Problem struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// Counts summarises a valid document.
type Counts struct {
	Pools             int `json:"pools"`
	L2Advertisements  int `json:"l2Advertisements"`
	BGPPeers          int `json:"bgpPeers"`
	BGPAdvertisements int `json:"bgpAdvertisements"`
}

// Validate parses text with the controller's own parser. text is the
// document itself or a ConfigMap manifest holding it under config.yaml (as
// manifests/config-example.yaml does).
func Validate(file string, text []byte) Validation {
	if doc, ok := fromConfigMap(text); ok {
		file, text = file+" (data."+config.Key+")", doc
	}
	v := Validation{File: file, Hash: config.Hash(string(text))}
	cfg, err := config.Parse(text)
	for _, p := range config.Problems(err) {
		v.Problems = append(v.Problems, Problem{Path: p.Path, Message: p.Err.Error()})
	}
	if cfg != nil {
		v.Valid, v.Warnings = true, cfg.Warnings
		v.Counts = Counts{Pools: len(cfg.Pools), L2Advertisements: len(cfg.L2Advertisements),
			BGPPeers: len(cfg.BGPPeers), BGPAdvertisements: len(cfg.BGPAdvertisements)}
	}
	return v
}

// Table writes the validation for a terminal: a verdict, then one line per
// problem and warning.
func (v Validation) Table(w io.Writer) error {
	if v.Valid {
		fmt.Fprintf(w, "%s: valid (hash %s): %d pools, %d L2 advertisements, %d BGP peers, %d BGP advertisements\n",
			v.File, v.Hash, v.Counts.Pools, v.Counts.L2Advertisements, v.Counts.BGPPeers, v.Counts.BGPAdvertisements)
	} else {
		fmt.Fprintf(w, "%s: invalid: %d problems\n", v.File, len(v.Problems))
	}
	if len(v.Problems) == 0 && len(v.Warnings) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nKIND\tPATH\tMESSAGE")
	for _, p := range v.Problems {
		fmt.Fprintf(tw, "problem\t%s\t%s\n", p.Path, p.Message)
	}
	for _, wn := range v.Warnings {
		fmt.Fprintf(tw, "warning\t\t%s\n", wn)
	}
	return tw.Flush()
}

// fromConfigMap returns the configuration a ConfigMap manifest holds. The
// input is at most config.MaxDocumentSize+1 bytes (the caller's limit) and
// the YAML decoder bounds alias expansion.
func fromConfigMap(text []byte) ([]byte, bool) {
	var cm struct {
		Kind string            `yaml:"kind"`
		Data map[string]string `yaml:"data"`
	}
	if yaml.Unmarshal(text, &cm) != nil || cm.Kind != "ConfigMap" {
		return nil, false
	}
	doc, ok := cm.Data[config.Key]
	return []byte(doc), ok
}
