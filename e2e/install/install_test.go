package install_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/heraldlb/herald/e2e/lab"
)

var update = flag.Bool("update", false, "rewrite manifests/herald.yaml from the kustomize render")

// The lab is a control plane only: a real etcd and kube-apiserver with RBAC
// and the default admission plugins (PodSecurity, Priority, ServiceAccount).
var (
	shared     *lab.Lab
	skipReason string
)

func TestMain(m *testing.M) {
	os.Exit(lab.TestMain(m, lab.Config{Prefix: "hin", ControlPlaneOnly: true}, installRBAC,
		func(l *lab.Lab, skip string) { shared, skipReason = l, skip }))
}

// manifests is the kustomize base, relative to this package.
const manifests = "../../manifests"

// heraldYAMLHeader heads manifests/herald.yaml, which kustomize cannot
// carry (it drops comments).
const heraldYAMLHeader = `# GENERATED: the kustomize base in this directory (kustomization.yaml)
# rendered into one file. Do not edit; change the base and run
#   go test ./e2e/install -run TestHeraldYAML -update
# (e2e/install fails while the two differ).
#
# Prefer ` + "`kubectl apply -k manifests/`" + ` with your registry set in
# kustomization.yaml. The images below are placeholders: if you apply this
# file instead, edit its two image: lines first. Then write the ConfigMap
# herald (see config-example.yaml).
`

// kubectl is the lab's kubectl (its kustomize is the one users run with
// `kubectl apply -k`); tests that need it skip when it is not built.
func kubectl(t *testing.T) string {
	t.Helper()
	p := filepath.Join(lab.DefaultBinDir(), "kubectl")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("no kubectl at %s (build it with `make tools`): %v", p, err)
	}
	return p
}

// kustomize renders dir with kubectl's kustomize.
func kustomize(kubectl, dir string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(kubectl, "kustomize", dir)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("kubectl kustomize %s: %w: %s", dir, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func render(t *testing.T, dir string) []byte {
	t.Helper()
	out, err := kustomize(kubectl(t), dir)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// doc is one document of a render: its text and the typed object.
type doc struct {
	raw []byte
	obj runtime.Object
}

func (d doc) kind() string { return d.obj.GetObjectKind().GroupVersionKind().Kind }

// decode splits a multi-document YAML stream into typed objects.
func decode(stream []byte) ([]doc, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	var docs []doc
	for {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(raw, nil, nil)
		if runtime.IsNotRegisteredError(err) { // Herald's CRD and the like
			u := &unstructured.Unstructured{}
			obj, _, err = unstructured.UnstructuredJSONScheme.Decode(mustJSON(raw), nil, u)
		}
		if err != nil {
			return nil, fmt.Errorf("decode %q: %w", firstLine(raw), err)
		}
		docs = append(docs, doc{raw: raw, obj: obj})
	}
}

// kubectlApply runs the lab's kubectl apply on docs, written to the file
// name in the lab's directory, and returns its output.
func kubectlApply(ctx context.Context, l *lab.Lab, name string, docs []doc) (string, error) {
	var b bytes.Buffer
	for _, d := range docs {
		b.WriteString("---\n")
		b.Write(d.raw)
	}
	file := filepath.Join(l.Dir, name)
	if err := os.WriteFile(file, b.Bytes(), 0o644); err != nil {
		return "", err
	}
	return l.Exec(ctx, l.ControlPlaneNS(), l.Bin("kubectl"), "--kubeconfig="+l.Kubeconfig(), "apply", "-f", file)
}

// mustJSON converts a YAML document to JSON (invalid YAML gives invalid
// JSON, which the decoder then reports).
func mustJSON(raw []byte) []byte {
	j, err := utilyaml.ToJSON(raw)
	if err != nil {
		return raw
	}
	return j
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

// TestHeraldYAML fails when manifests/herald.yaml is not the render of the
// base; -update rewrites it.
func TestHeraldYAML(t *testing.T) {
	want := heraldYAMLHeader + string(render(t, manifests))
	path := filepath.Join(manifests, "herald.yaml")
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := lineDiff(strings.Split(want, "\n"), strings.Split(string(got), "\n")); diff != "" {
		t.Errorf("manifests/herald.yaml is not `kubectl kustomize manifests/` (-render +herald.yaml); "+
			"regenerate it: go test ./e2e/install -run TestHeraldYAML -update\n%s", diff)
	}
}

// lineDiff shows where two texts first part: the lines around the first
// difference, as -want and +got, with line numbers. "" if they are equal.
func lineDiff(want, got []string) string {
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	if i == len(want) && i == len(got) {
		return ""
	}
	var b strings.Builder
	for j := max(0, i-3); j < i; j++ {
		fmt.Fprintf(&b, "  %4d  %s\n", j+1, want[j])
	}
	for j := i; j < min(len(want), i+5); j++ {
		fmt.Fprintf(&b, "- %4d  %s\n", j+1, want[j])
	}
	for j := i; j < min(len(got), i+5); j++ {
		fmt.Fprintf(&b, "+ %4d  %s\n", j+1, got[j])
	}
	fmt.Fprintf(&b, "(first difference at line %d; the render has %d lines, herald.yaml %d)", i+1, len(want), len(got))
	return b.String()
}

// installRBAC applies the namespace, the ServiceAccounts and their RBAC from
// the render, for real, before the tests run. The workloads are left out:
// no kubelet would run them.
func installRBAC(ctx context.Context, l *lab.Lab) error {
	stream, err := kustomize(l.Bin("kubectl"), manifests)
	if err != nil {
		return err
	}
	docs, err := decode(stream)
	if err != nil {
		return err
	}
	var keep []doc
	for _, d := range docs {
		switch d.kind() {
		case "Namespace", "ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding",
			"CustomResourceDefinition", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding":
			keep = append(keep, d)
		}
	}
	_, err = kubectlApply(ctx, l, "rbac.yaml", keep)
	return err
}
