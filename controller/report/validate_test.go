package report_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/heraldlb/herald/controller/report"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", name, diff)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct{ name, doc string }{
		{"valid", "pools:\n- name: lan\n  addresses: [198.51.100.0/28]\nl2Advertisements:\n- name: lan\n  pools: [lan]\n"},
		{"invalid", "pools:\n- name: a\n  addresses: [\"198.51.100.0/33\", x]\nbgpPeers:\n- name: p\n  address: 198.51.100.1\n"},
		{"configmap", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: herald, namespace: herald-system}\ndata:\n  config.yaml: |\n    pools:\n    - name: lan\n      addresses: [198.51.100.0/28]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := report.Validate(tc.name+".yaml", []byte(tc.doc))
			var table bytes.Buffer
			if err := report.Write(&table, "table", v); err != nil {
				t.Fatal(err)
			}
			golden(t, "validate-"+tc.name+".txt", table.Bytes())
			var js bytes.Buffer
			if err := report.Write(&js, "json", v); err != nil {
				t.Fatal(err)
			}
			var back report.Validation
			if err := json.Unmarshal(js.Bytes(), &back); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(v, back); diff != "" {
				t.Errorf("json does not read back (-printed +read):\n%s", diff)
			}
		})
	}
}

func TestMigrate(t *testing.T) {
	in, err := os.ReadFile("../../config/testdata/metallb-crs.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := report.Migrate([]string{"metallb-crs.yaml"}, in)
	if !m.Valid {
		t.Fatalf("not valid: %+v", m.Problems)
	}
	var table bytes.Buffer
	if err := report.Write(&table, "table", m); err != nil {
		t.Fatal(err)
	}
	golden(t, "migrate-metallb.txt", table.Bytes())
	var js bytes.Buffer
	if err := report.Write(&js, "json", m); err != nil {
		t.Fatal(err)
	}
	var back report.Migration
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m, back); diff != "" {
		t.Errorf("json does not read back (-printed +read):\n%s", diff)
	}
	// The table output is itself a configuration document.
	if v := report.Validate("out", table.Bytes()); !v.Valid {
		t.Errorf("the printed configuration is not valid: %+v", v.Problems)
	}
}
