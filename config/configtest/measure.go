package configtest

import (
	"runtime"
	"syscall"
	"time"

	"github.com/heraldlb/herald/config"
)

// Limits every document up to config.MaxDocumentSize must parse within, on
// a 2-core machine: a controller and a speaker reparse on every ConfigMap
// edit, and a crafted document must not stall them or make them OOM.
const (
	MaxTime  = 100 * time.Millisecond
	MaxBytes = 64 << 20
)

// Cost is what one parse took.
type Cost struct {
	Time time.Duration
	// CPU is the process's CPU time (user and system, every thread: the
	// collector runs beside the parse). Unlike Time it barely moves when
	// other work shares the machine.
	CPU time.Duration
	// Bytes counts every byte allocated during the parse, garbage
	// included: an upper bound on the heap it needed, and unlike a
	// sampled peak it does not depend on when the collector ran.
	Bytes uint64
}

// Over reports whether c breaks MaxTime or MaxBytes.
func (c Cost) Over() bool { return c.Time > MaxTime || c.Bytes > MaxBytes }

// Measure runs parse once on b and returns what it cost. It collects
// garbage first, so that no earlier work is paid for during the parse.
func Measure(parse func([]byte), b []byte) Cost {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu, start := cpuTime(), time.Now()
	parse(b)
	elapsed, cpu := time.Since(start), cpuTime()-cpu
	runtime.ReadMemStats(&after)
	return Cost{Time: elapsed, CPU: cpu, Bytes: after.TotalAlloc - before.TotalAlloc}
}

func cpuTime() time.Duration {
	var u syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &u) != nil {
		return 0
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

// Parser returns the parse function for s: config.ParseMetalLB for a
// MetalLB document, else config.Parse.
func Parser(s Shape) func([]byte) {
	if s.MetalLB {
		return func(b []byte) { _, _, _ = config.ParseMetalLB(b) }
	}
	return func(b []byte) { _, _ = config.Parse(b) }
}

// Result is what parsing one shape cost.
type Result struct {
	Shape string
	Size  int
	Cost
}

// MeasureAll parses every shape runs times and returns, for each, the
// fastest parse (other work on the machine only ever slows one down) and
// the most bytes allocated.
func MeasureAll(runs int) []Result {
	var out []Result
	for _, s := range Shapes() {
		b := s.Doc()
		r := Result{Shape: s.Name, Size: len(b)}
		for i := range max(runs, 1) {
			c := Measure(Parser(s), b)
			if i == 0 || c.Time < r.Time {
				r.Time, r.CPU = c.Time, c.CPU
			}
			r.Bytes = max(r.Bytes, c.Bytes)
		}
		out = append(out, r)
	}
	return out
}

// Worst returns the slowest time and the most bytes over rs.
func Worst(rs []Result) Cost {
	var w Cost
	for _, r := range rs {
		w.Time, w.CPU, w.Bytes = max(w.Time, r.Time), max(w.CPU, r.CPU), max(w.Bytes, r.Bytes)
	}
	return w
}

// Millis and MiB write a cost in the units of the limits.
func Millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
func MiB(n uint64) float64           { return float64(n) / (1 << 20) }
