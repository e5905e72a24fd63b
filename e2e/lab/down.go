package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Down removes the lab of that prefix whether or not it is healthy: every
// recorded process is ended by PID, then any process still inside one of the
// lab's namespaces, then the namespaces themselves (which removes every link
// the lab made) and the lab's directory. Removing nothing is not an error.
func Down(prefix, stateRoot string) error {
	if stateRoot == "" {
		stateRoot = Config{}.withDefaults().StateRoot
	}
	dir := filepath.Join(stateRoot, prefix)
	var procs []Proc
	if b, err := os.ReadFile(filepath.Join(dir, "lab.json")); err == nil {
		var st struct {
			Procs []Proc `json:"procs"`
		}
		if json.Unmarshal(b, &st) == nil {
			procs = st.Procs
		}
	}
	stopAll(procs)

	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, ns := range namespaces(prefix + "-") {
		killNamespacePIDs(ctx, ns)
		if _, err := run(ctx, "ip", "netns", "delete", ns); err != nil {
			errs = append(errs, err)
		}
	}
	if os.Getenv("HERALD_LAB_KEEP") == "" {
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func stopAll(procs []Proc) {
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { p.Stop(time.Second) }) // a lab keeps nothing worth a slow shutdown
	}
	wg.Wait()
}

// killNamespacePIDs ends processes that run inside a lab namespace but were
// not recorded (for example after a crash between start and save).
func killNamespacePIDs(ctx context.Context, ns string) {
	out, err := run(ctx, "ip", "netns", "pids", ns)
	if err != nil {
		return
	}
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Leftovers lists what remains of a lab of that prefix: namespaces, and
// recorded processes still alive. Empty after a clean Down.
func Leftovers(prefix string, procs []Proc) []string {
	var out []string
	for _, ns := range namespaces(prefix + "-") {
		out = append(out, "namespace "+ns)
	}
	for _, p := range procs {
		if p.Alive() {
			out = append(out, fmt.Sprintf("process %s (pid %d)", p.Name, p.PID))
		}
	}
	return out
}

// Labs lists the prefixes of labs that have a state directory under
// stateRoot, or both a "-net" and a "-cp" namespace (a lab whose state is gone).
func Labs(stateRoot string) []string {
	if stateRoot == "" {
		stateRoot = Config{}.withDefaults().StateRoot
	}
	seen := map[string]bool{}
	entries, _ := os.ReadDir(stateRoot)
	for _, e := range entries {
		if e.IsDir() {
			seen[e.Name()] = true
		}
	}
	for _, ns := range namespaces("") {
		if p, ok := strings.CutSuffix(ns, "-net"); ok && len(namespaces(p+"-cp")) > 0 {
			seen[p] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}
