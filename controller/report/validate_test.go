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
