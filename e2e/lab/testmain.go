package lab

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestMain brings up one lab for a test package and runs its tests on it:
// cfg.Prefix is passed through TestPrefix; setup (may be nil) runs once the
// lab is up; use receives the lab, or nil and the reason the tests must skip
// (no root, missing tools, or a fuzzer process, which needs no lab). The lab
// is removed afterwards, also on SIGINT/SIGTERM, and a leftover fails the run.
func TestMain(m *testing.M, cfg Config, setup func(context.Context, *Lab) error, use func(l *Lab, skip string)) int {
	flag.Parse()
	if fuzzing() {
		use(nil, "fuzzing: only pure tests run")
		return m.Run()
	}
	if err := Requirements(cfg.BinDir); err != nil {
		use(nil, err.Error())
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg.Prefix = TestPrefix(cfg.Prefix)
	start := time.Now()
	l, err := Up(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab up:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "lab %s up in %.1fs\n", l.Prefix, time.Since(start).Seconds())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		_ = l.Down()
		os.Exit(1)
	}()
	code := 1
	if setup == nil || report(setup(ctx, l)) {
		use(l, "")
		code = m.Run()
	}
	if l.stopKubelet != nil {
		l.stopKubelet()
	}
	l.mu.Lock()
	procs := slices.Clone(l.Procs)
	l.mu.Unlock()
	if err := l.Down(); err != nil {
		fmt.Fprintln(os.Stderr, "lab down:", err)
		return 1
	}
	if left := Leftovers(l.Prefix, procs); len(left) > 0 {
		fmt.Fprintln(os.Stderr, "lab down left:", left)
		return 1
	}
	return code
}

func report(err error) bool {
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab setup:", err)
	}
	return err == nil
}

// fuzzing reports whether this process runs a fuzzer or is one of its
// workers: each worker would otherwise build its own lab.
func fuzzing() bool {
	f := flag.Lookup("test.fuzz")
	w := flag.Lookup("test.fuzzworker")
	return (f != nil && f.Value.String() != "") || (w != nil && w.Value.String() == "true")
}
