package ipam

import (
	"encoding/binary"
	"math/big"
	"net/netip"
)

// u128 is an address as a number, for interval arithmetic without big.Int.
// IPv4 addresses use the low 32 bits.
type u128 struct{ hi, lo uint64 }

func toU128(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{lo: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:])}
}

func fromU128(x u128, f Family) netip.Addr {
	if f == IPv4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(x.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], x.hi)
	binary.BigEndian.PutUint64(b[8:], x.lo)
	return netip.AddrFrom16(b)
}

func (x u128) less(y u128) bool {
	return x.hi < y.hi || (x.hi == y.hi && x.lo < y.lo)
}

func (x u128) cmp(y u128) int {
	switch {
	case x.less(y):
		return -1
	case y.less(x):
		return 1
	}
	return 0
}

// add1 and sub1 wrap around; callers check the bounds first.
func (x u128) add1() u128 {
	if x.lo++; x.lo == 0 {
		x.hi++
	}
	return x
}

func (x u128) sub1() u128 {
	if x.lo == 0 {
		x.hi--
	}
	x.lo--
	return x
}

// sub returns x-y for y <= x.
func (x u128) sub(y u128) u128 {
	lo := x.lo - y.lo
	hi := x.hi - y.hi
	if x.lo < y.lo {
		hi--
	}
	return u128{hi: hi, lo: lo}
}

func (x u128) big() *big.Int {
	b := new(big.Int).SetUint64(x.hi)
	b.Lsh(b, 64)
	return b.Or(b, new(big.Int).SetUint64(x.lo))
}

// maxU128 is the highest address of family f.
func maxU128(f Family) u128 {
	if f == IPv4 {
		return u128{lo: 1<<32 - 1}
	}
	return u128{hi: ^uint64(0), lo: ^uint64(0)}
}
