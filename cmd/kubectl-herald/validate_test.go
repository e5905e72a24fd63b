package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// validate --cluster judges the document before it reads the cluster: an
// invalid one exits 1 without a connection, a valid one needs the cluster.
func TestValidateClusterNeedsAValidDocumentFirst(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(good, []byte("pools:\n- name: lan\n  addresses: [198.51.100.0/28]\n"), 0o644)
	_ = os.WriteFile(bad, []byte("pools:\n- name: lan\n  addresses: [nonsense]\n"), 0o644)
	nowhere := "--kubeconfig=" + filepath.Join(dir, "missing.kubeconfig")

	var out bytes.Buffer
	if err := run([]string{"validate", "-f", bad, "--cluster", nowhere}, &out); !errors.Is(err, errInvalid) {
		t.Errorf("invalid document: got %v, want exit 1", err)
	}
	if !strings.Contains(out.String(), "pools[0].addresses[0]") {
		t.Errorf("the problem is not printed:\n%s", out.String())
	}
	out.Reset()
	err := run([]string{"validate", "-f", good, "--cluster", nowhere, "--server=http://127.0.0.1:1"}, &out)
	if err == nil || errors.Is(err, errInvalid) {
		t.Errorf("valid document, no cluster: got %v, want a connection error (exit 2)", err)
	}
}
