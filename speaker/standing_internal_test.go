package speaker

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestMetaRoundTrip(t *testing.T) {
	joined := time.UnixMilli(1_700_000_000_123)
	macs := []net.HardwareAddr{{0x02, 0, 0, 0, 0, 1}, {0x02, 0, 0, 0, 0, 2}}
	for _, tc := range []struct {
		name  string
		in    nodeMeta
		limit int
		want  nodeMeta
	}{
		{"everything", nodeMeta{joined: joined, dataPathDown: true, macs: macs}, 512, nodeMeta{joined: joined, dataPathDown: true, macs: macs}},
		{"no MACs", nodeMeta{joined: joined}, 512, nodeMeta{joined: joined}},
		{"MACs beyond the limit are left out", nodeMeta{joined: joined, macs: macs}, 9 + 6, nodeMeta{joined: joined, macs: macs[:1]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := encodeMeta(tc.in, tc.limit)
			if len(b) > tc.limit {
				t.Fatalf("%d bytes, limit %d", len(b), tc.limit)
			}
			got, ok := decodeMeta(b)
			if !ok {
				t.Fatal("not decoded")
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(nodeMeta{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	// The format before: 8 bytes of joined time, read as such.
	old := encodeMeta(nodeMeta{joined: joined}, 512)[:8]
	if got, ok := decodeMeta(old); !ok || !got.joined.Equal(joined) || got.dataPathDown || got.macs != nil {
		t.Errorf("8-byte metadata read as %+v, %v", got, ok)
	}
	if _, ok := decodeMeta([]byte{1, 2, 3}); ok {
		t.Error("3 bytes decoded")
	}
}

func TestMajority(t *testing.T) {
	nodes := func(alive ...bool) []NodeInfo {
		var out []NodeInfo
		for i, a := range alive {
			out = append(out, NodeInfo{Name: fmt.Sprint("n", i), Alive: a})
		}
		return out
	}
	known := map[string]bool{"n0": true, "n1": true, "n2": true}
	for _, tc := range []struct {
		name  string
		nodes []NodeInfo
		known map[string]bool
		want  bool
	}{
		{"all alive", nodes(true, true, true), known, true},
		{"two of three", nodes(true, true, false), known, true},
		{"one of three", nodes(true, false, false), known, false},
		{"one of two is no majority", nodes(true, false), map[string]bool{"n0": true, "n1": true}, false},
		{"alone, the only one known", nodes(true), map[string]bool{"n0": true}, true},
		{"a node never a member does not count", nodes(true, true, false, false), known, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := majority(tc.nodes, tc.known); got != tc.want {
				t.Errorf("majority = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestSplitBrainOneLoser: when two nodes that do not see each other each see
// the other answer for an address, exactly one steps back, never the one
// with the majority; nodes that see each other alive leave it to the
// election, unless one was just suspected (it stalled and was taken over).
func TestSplitBrainOneLoser(t *testing.T) {
	for i := range 200 {
		addr := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		a, b := "node-a", "node-b"
		for _, tc := range []struct {
			name                string
			aLive, bLive, total int
		}{
			{"partition, a has the majority", 2, 1, 3},
			{"partition, b has the majority", 1, 2, 3},
			{"two-node partition", 1, 1, 2},
			{"four nodes split two and two", 2, 2, 4},
		} {
			la := splitBrainLoser(a, b, addr, false, false, tc.aLive, tc.total)
			lb := splitBrainLoser(b, a, addr, false, false, tc.bLive, tc.total)
			if la == lb {
				t.Fatalf("%s, %s: a steps back %v, b steps back %v; want exactly one", tc.name, addr, la, lb)
			}
			if tc.aLive*2 > tc.total && la {
				t.Errorf("%s: the majority side stepped back", tc.name)
			}
		}
		if splitBrainLoser(a, b, addr, true, false, 3, 3) || splitBrainLoser(b, a, addr, true, false, 3, 3) {
			t.Errorf("%s: nodes that see each other alive stepped back", addr)
		}
		if !splitBrainLoser(a, b, addr, true, true, 3, 3) {
			t.Errorf("%s: a node back from a stall, taken over, did not step back", addr)
		}
	}
}
