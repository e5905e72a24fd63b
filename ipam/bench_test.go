package ipam_test

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/ipam"
)

// BenchmarkAssignRelease measures one Assign of a new owner plus its
// Release in a pool that already has many addresses in use. It also reports
// the heap the pre-filled allocator holds (heap-MiB, and bytes per
// allocation), owner names included. "fragmented" fills twice as many
// addresses and releases every other one: the worst case for the free set,
// one free interval per allocation.
func BenchmarkAssignRelease(b *testing.B) {
	for _, bc := range []struct {
		name       string
		pool       config.Pool
		req        ipam.Request
		inUse      int
		fragmented bool
	}{
		{name: "v4-slash16-60000-in-use", pool: pool("lan", "10.0.0.0/16"), req: req(inNamespace("bench")), inUse: 60_000},
		{name: "v6-slash64-1M-in-use", pool: pool("big", "2001:db8::/64"), req: req(v6, inNamespace("bench")), inUse: 1_000_000},
		{name: "v6-slash64-1M-in-use-fragmented", pool: pool("big", "2001:db8::/64"), req: req(v6, inNamespace("bench")), inUse: 1_000_000, fragmented: true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			before := heapAlloc()
			a := ipam.New(pools(bc.pool))
			fill := bc.inUse
			if bc.fragmented {
				fill *= 2
			}
			owners := make([]ipam.Owner, fill)
			for i := range owners {
				owners[i] = ipam.Owner(fmt.Sprintf("bench/svc-%07d", i))
				if _, err := a.Assign(owners[i], bc.req); err != nil {
					b.Fatal(err)
				}
			}
			if bc.fragmented {
				for i := 0; i < fill; i += 2 {
					a.Release(owners[i])
				}
			}
			owners = nil
			held := heapAlloc() - before
			if got := a.Stats()[0].InUse; got != uint64(bc.inUse) {
				b.Fatalf("%d in use, want %d", got, bc.inUse)
			}

			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Assign("bench/new", bc.req); err != nil {
					b.Fatal(err)
				}
				a.Release("bench/new")
			}
			b.ReportMetric(float64(held)/(1<<20), "heap-MiB")
			b.ReportMetric(float64(held)/float64(bc.inUse), "heap-B/alloc")
			runtime.KeepAlive(a)
		})
	}
}

// heapAlloc returns the live heap after a full collection.
func heapAlloc() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
