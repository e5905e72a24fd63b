package speaker

import (
	"cmp"
	"hash/fnv"
	"net/netip"
	"slices"
)

// Winner picks the node that owns addr among candidates by rendezvous
// hashing: every node scores hash(node, addr) and the highest score wins.
// Every speaker computes the same answer from the same inputs; owners spread
// evenly over nodes; and a node joining or leaving moves only the addresses
// it wins or held, never the others. "" when there is no candidate.
func Winner(candidates []string, addr netip.Addr) string {
	best, bestScore := "", uint64(0)
	for _, n := range candidates {
		s := score(n, addr)
		if best == "" || s > bestScore || (s == bestScore && n < best) {
			best, bestScore = n, s
		}
	}
	return best
}

func score(node string, addr netip.Addr) uint64 {
	h := fnv.New64a()
	b := addr.As16()
	h.Write(b[:])
	h.Write([]byte{0})
	h.Write([]byte(node))
	// FNV's last bytes barely reach its high bits: finish with a mixer
	// (splitmix64) so nearby addresses spread over nodes.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Ranked returns the candidates in the order they would win addr (the
// winner first): the next in line is who takes over when the owner goes.
func Ranked(candidates []string, addr netip.Addr) []string {
	out := slices.Clone(candidates)
	slices.SortFunc(out, func(a, b string) int {
		if c := cmp.Compare(score(b, addr), score(a, addr)); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	return out
}
