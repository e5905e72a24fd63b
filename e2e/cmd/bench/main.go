// Command bench takes Herald's lab measurements and prints each as one
// name=value line (for example lab_up_s=4.1). `make bench` runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/heraldlb/herald/e2e/lab"
)

// measurement runs one lab measurement and prints its lines.
type measurement struct {
	name string
	run  func(ctx context.Context) error
}

var measurements = []measurement{
	{"config", benchConfig},
	{"images", benchImages},
	{"lab", benchLabUp},
	{"controller", benchController},
	{"l2", benchL2},
	{"l2stress", benchL2Stress},
	{"l2many", benchL2Many},
	{"bgp", benchBGP},
	{"bgpbird", benchBGPBIRD},
	{"install", benchInstall},
}

func main() {
	only := flag.String("only", "", "run only this measurement")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *only != "config" && *only != "images" { // these measurements need no lab
		if err := lab.Requirements(""); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
	failed := false
	for _, m := range measurements {
		if *only != "" && *only != m.name {
			continue
		}
		if err := m.run(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "bench %s: %v\n", m.name, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

// benchLabUp measures a 3-node lab's bring-up with cached binaries (median of 3).
func benchLabUp(ctx context.Context) error {
	var times []float64
	for range 3 {
		start := time.Now()
		l, err := lab.Up(ctx, lab.Config{Prefix: "hbench"})
		if err != nil {
			return err
		}
		times = append(times, time.Since(start).Seconds())
		if err := l.Down(); err != nil {
			return err
		}
	}
	slices.Sort(times)
	fmt.Printf("lab_up_s=%.1f\n", times[1])
	return nil
}
