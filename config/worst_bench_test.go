package config_test

import (
	"testing"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/config/configtest"
)

// BenchmarkParseWorst parses every pathological shape (see configtest) and
// fails when one takes longer than configtest.MaxTime (100 ms) or
// allocates more than configtest.MaxBytes (64 MiB). Limits live here, not
// in a unit test: a busy machine slows a parse down, and a benchmark is
// run on purpose, on a machine left alone.
func BenchmarkParseWorst(b *testing.B) {
	var rs []configtest.Result
	for b.Loop() {
		rs = configtest.MeasureAll(3)
	}
	for _, r := range rs {
		if r.Size > config.MaxDocumentSize {
			b.Errorf("%s: %d bytes, more than a document may hold", r.Shape, r.Size)
		}
		b.Logf("%-30s %7d bytes %7.1f ms (cpu %7.1f ms) %6.1f MiB", r.Shape, r.Size, configtest.Millis(r.Time), configtest.Millis(r.CPU), configtest.MiB(r.Bytes))
		if r.Over() {
			b.Errorf("%s: %.1f ms and %.1f MiB; the limits are %v and %d MiB", r.Shape,
				configtest.Millis(r.Time), configtest.MiB(r.Bytes), configtest.MaxTime, configtest.MaxBytes>>20)
		}
	}
	w := configtest.Worst(rs)
	b.ReportMetric(configtest.Millis(w.Time), "worst_ms")
	b.ReportMetric(configtest.MiB(w.Bytes), "worst_MiB")
}
