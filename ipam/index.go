package ipam

import (
	"math/bits"
	"net/netip"
	"slices"
)

// addrIndex maps every held address to one of its holders. Pools are filled
// lowest address first, so held addresses cluster: the index groups them in
// blocks of 64 consecutive addresses, each a bitmap and the holders of its
// set bits in address order. A dense block costs about 9 bytes per address
// where a map entry per address would cost 40 to 80 (keys, pointer, empty
// slots); an address alone in its block costs about 100. Lookups are one map
// access and a popcount.
type addrIndex struct {
	v4 map[uint32]*block // by address >> 6
	v6 map[u128]*block   // by address >> 6
}

type block struct {
	bits    uint64   // bit i: address (key << 6 | i) is held
	holders []*owner // one per set bit, in bit order
}

func newAddrIndex() addrIndex {
	return addrIndex{v4: make(map[uint32]*block), v6: make(map[u128]*block)}
}

// find returns x's block, if any, and x's bit in it.
func (ix *addrIndex) find(x netip.Addr) (*block, uint64) {
	v := toU128(x)
	bit := uint64(1) << (v.lo & 63)
	if x.Is4() {
		return ix.v4[uint32(v.lo>>6)], bit
	}
	return ix.v6[u128{hi: v.hi >> 6, lo: v.lo>>6 | v.hi<<58}], bit
}

// get returns x's holder, or nil.
func (ix *addrIndex) get(x netip.Addr) *owner {
	b, bit := ix.find(x)
	if b == nil || b.bits&bit == 0 {
		return nil
	}
	return b.holders[bits.OnesCount64(b.bits&(bit-1))]
}

// set makes o x's holder, or forgets x when o is nil.
func (ix *addrIndex) set(x netip.Addr, o *owner) {
	b, bit := ix.find(x)
	if b == nil {
		if o == nil {
			return
		}
		b = &block{}
		v := toU128(x)
		if x.Is4() {
			ix.v4[uint32(v.lo>>6)] = b
		} else {
			ix.v6[u128{hi: v.hi >> 6, lo: v.lo>>6 | v.hi<<58}] = b
		}
	}
	i := bits.OnesCount64(b.bits & (bit - 1))
	switch {
	case b.bits&bit != 0 && o != nil:
		b.holders[i] = o
	case o != nil:
		b.bits |= bit
		b.holders = slices.Insert(b.holders, i, o)
	case b.bits&bit != 0:
		b.bits &^= bit
		b.holders = slices.Delete(b.holders, i, i+1)
		if b.bits == 0 {
			v := toU128(x)
			if x.Is4() {
				delete(ix.v4, uint32(v.lo>>6))
			} else {
				delete(ix.v6, u128{hi: v.hi >> 6, lo: v.lo>>6 | v.hi<<58})
			}
		}
	}
}

// all calls fn for every indexed address, in no particular order.
func (ix *addrIndex) all(fn func(netip.Addr)) {
	for k, b := range ix.v4 {
		for w := b.bits; w != 0; w &= w - 1 {
			fn(fromU128(u128{lo: uint64(k)<<6 | uint64(bits.TrailingZeros64(w))}, IPv4))
		}
	}
	for k, b := range ix.v6 {
		for w := b.bits; w != 0; w &= w - 1 {
			fn(fromU128(u128{hi: k.hi<<6 | k.lo>>58, lo: k.lo<<6 | uint64(bits.TrailingZeros64(w))}, IPv6))
		}
	}
}
