package install_test

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/speaker"
)

// TestNamesMatchBinaries checks that the names the manifests grant access
// to (the namespace, the record ConfigMap, the Lease, the memberlist
// Secret) are the ones the binaries use, as their -h output says. The lab
// runs the binaries with their defaults, so a default that drifted from
// the manifests would pass every lab test and fail only on a cluster.
func TestNamesMatchBinaries(t *testing.T) {
	stream := render(t, manifests) // skips without kubectl, before the slow build
	t.Parallel()                   // mostly linking
	dir := t.TempDir()
	build := exec.Command("go", "build", "-ldflags=-s -w", "-o", dir+"/",
		"github.com/heraldlb/herald/cmd/herald-controller", "github.com/heraldlb/herald/cmd/herald-speaker")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	help := map[string]string{}
	for _, cmd := range []string{"herald-controller", "herald-speaker"} {
		var out bytes.Buffer
		run := exec.Command(filepath.Join(dir, cmd), "-h")
		run.Stdout, run.Stderr = &out, &out
		_ = run.Run() // -h exits 0 or 2 depending on the flag package's mood; the text is what counts
		help[cmd] = out.String()
	}
	controllerDefaults, speakerDefaults := flagDefaults(help["herald-controller"]), flagDefaults(help["herald-speaker"])
	lease := regexp.MustCompile(`Lease (\S+) in --namespace`).FindStringSubmatch(help["herald-controller"])
	if lease == nil {
		t.Fatalf("herald-controller -h no longer names its Lease (\"Lease <name> in --namespace\"); update this test:\n%s", help["herald-controller"])
	}

	docs, err := decode(stream)
	if err != nil {
		t.Fatal(err)
	}
	var namespace string
	args := map[string][]string{}
	names := map[string][]string{} // "<role>/<resource>" → resourceNames
	for _, d := range docs {
		switch o := d.obj.(type) {
		case *corev1.Namespace:
			namespace = o.Name
		case *appsv1.Deployment:
			args[o.Name] = o.Spec.Template.Spec.Containers[0].Args
		case *appsv1.DaemonSet:
			args[o.Name] = o.Spec.Template.Spec.Containers[0].Args
		case *rbacv1.Role:
			for _, r := range o.Rules {
				for _, res := range r.Resources {
					names[o.Name+"/"+res] = append(names[o.Name+"/"+res], r.ResourceNames...)
				}
			}
		}
	}
	configName := argValue(args["herald-controller"], "--config-name")
	t.Logf("binaries: namespace %q/%q, config %q/%q, memberlist Secret %q/%q, Lease %q; manifests: namespace %q, config %q",
		controllerDefaults["namespace"], speakerDefaults["namespace"], controllerDefaults["config-name"], speakerDefaults["config-name"],
		controllerDefaults["memberlist-secret"], speakerDefaults["memberlist-secret"], lease[1], namespace, configName)
	for _, c := range []struct{ what, got, want string }{
		{"herald-controller --namespace default", controllerDefaults["namespace"], namespace},
		{"herald-speaker --namespace default", speakerDefaults["namespace"], namespace},
		{"herald-controller --config-name default", controllerDefaults["config-name"], configName},
		{"herald-speaker --config-name in the DaemonSet", argValue(args["herald-speaker"], "--config-name"), configName},
		{"herald-speaker --config-name default", speakerDefaults["config-name"], configName},
		{"herald-controller --memberlist-secret default", controllerDefaults["memberlist-secret"], speakerDefaults["memberlist-secret"]},
	} {
		if c.got != c.want {
			t.Errorf("%s is %q, the manifests use %q", c.what, c.got, c.want)
		}
	}
	for _, c := range []struct {
		rule string
		want []string
	}{
		{"herald-controller/configmaps", []string{config.RecordName(configName)}},
		{"herald-controller/leases", []string{lease[1]}},
		{"herald-speaker/secrets", []string{speaker.PasswordSecret, speakerDefaults["memberlist-secret"]}},
	} {
		if got := slices.Sorted(slices.Values(names[c.rule])); !slices.Equal(got, c.want) {
			t.Errorf("Role %s names %q, the binaries use %q", c.rule, got, c.want)
		}
	}
}

// flagDefaults reads `-name type\n\tusage (default "value")` from a Go
// flag package's help text.
func flagDefaults(help string) map[string]string {
	out := map[string]string{}
	re := regexp.MustCompile(`(?m)^\s+-(\S+)[^\n]*\n[^\n]*\(default "([^"]*)"\)`)
	for _, m := range re.FindAllStringSubmatch(help, -1) {
		out[m[1]] = m[2]
	}
	return out
}

// argValue is the value of --name=value in args, or "" (the default).
func argValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}
