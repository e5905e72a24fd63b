package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateExitsOnProblems(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(good, []byte("pools:\n- name: lan\n  addresses: [198.51.100.0/28]\n"), 0o644)
	_ = os.WriteFile(bad, []byte("pools:\n- name: lan\n  addresses: [nonsense]\n"), 0o644)
	var out bytes.Buffer
	if err := run([]string{"validate", "-f", good}, &out); err != nil {
		t.Errorf("valid document: %v", err)
	}
	out.Reset()
	if err := run([]string{"validate", "-f", bad, "-o", "json"}, &out); !errors.Is(err, errInvalid) {
		t.Errorf("invalid document: got %v, want exit 1", err)
	}
	if !strings.Contains(out.String(), `"path": "pools[0].addresses[0]"`) {
		t.Errorf("json output lacks the problem's path:\n%s", out.String())
	}
	if err := run([]string{"validate", "-f", good, "-o", "xml"}, &out); err == nil || errors.Is(err, errInvalid) {
		t.Errorf("unknown format: got %v, want a usage error", err)
	}
}
