package config

import (
	"cmp"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"strings"
)

// ParseRange reads one entry of a pool's addresses: a CIDR prefix
// ("198.51.100.0/24"), an inclusive range ("198.51.100.10-198.51.100.20",
// spaces around the dash allowed) or a single address. A prefix must be
// written as its network address: "198.51.100.5/24" is an error rather than
// silently meaning 198.51.100.0/24, because a pool is a promise of exactly
// which addresses Herald may hand out. Zones and IPv4-mapped IPv6 addresses
// are rejected where written (a prefix such as ::/80 still spans the mapped
// block; Parse refuses that in a pool); both ends of a range are of one
// family and in order.
func ParseRange(s string) (Range, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return Range{}, fmt.Errorf("%q: empty; want an address, a CIDR or a range a-b", s)
	}
	if from, to, ok := strings.Cut(t, "-"); ok {
		a, err := parseAddr(strings.TrimSpace(from))
		if err != nil {
			return Range{}, fmt.Errorf("%q: range start: %w", s, err)
		}
		b, err := parseAddr(strings.TrimSpace(to))
		if err != nil {
			return Range{}, fmt.Errorf("%q: range end: %w", s, err)
		}
		if a.Is4() != b.Is4() {
			return Range{}, fmt.Errorf("%q: range start and end are of different families", s)
		}
		if a.Compare(b) > 0 {
			return Range{}, fmt.Errorf("%q: range start after end", s)
		}
		return Range{From: a, To: b}, nil
	}
	if strings.Contains(t, "/") {
		p, err := netip.ParsePrefix(t)
		if err != nil {
			return Range{}, fmt.Errorf("%q: %w", s, err)
		}
		if p.Addr().Is4In6() {
			return Range{}, fmt.Errorf("%q: %w", s, errMapped)
		}
		if m := p.Masked(); m != p {
			return Range{}, fmt.Errorf("%q: not a network address; write %s", s, m)
		}
		return prefixRange(p), nil
	}
	a, err := parseAddr(t)
	if err != nil {
		return Range{}, fmt.Errorf("%q: %w", s, err)
	}
	return Range{From: a, To: a}, nil
}

var (
	errZone   = errors.New("zones are not allowed")
	errMapped = errors.New("IPv4-mapped IPv6 addresses are not allowed; write the IPv4 address")
)

// parseAddr is netip.ParseAddr without the forms a configuration never
// means: zones and IPv4-mapped IPv6.
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if a.Zone() != "" {
		return netip.Addr{}, errZone
	}
	if a.Is4In6() {
		return netip.Addr{}, errMapped
	}
	return a, nil
}

// prefixRange returns the addresses of a masked prefix as a Range.
func prefixRange(p netip.Prefix) Range {
	from := p.Addr()
	host := ones(from.BitLen() - p.Bits())
	return Range{From: from, To: fromU128(toU128(from).or(host), from.Is4())}
}

// Contains reports whether a lies within r. An address with a zone is never
// contained, since ranges carry none.
func (r Range) Contains(a netip.Addr) bool {
	if !r.From.IsValid() || a.Zone() != "" {
		return false
	}
	return r.From.Compare(a) <= 0 && a.Compare(r.To) <= 0
}

// Is4 reports whether r is a range of IPv4 addresses.
func (r Range) Is4() bool { return r.From.Is4() }

// String writes r the shortest way ParseRange reads back: a single address,
// a CIDR when r is exactly one prefix, else "from-to".
func (r Range) String() string {
	if r.From == r.To {
		return r.From.String()
	}
	if l, ok := r.prefixLen(); ok {
		return netip.PrefixFrom(r.From, l).String()
	}
	return r.From.String() + "-" + r.To.String()
}

// prefixLen reports whether r is exactly one CIDR prefix, and its length.
func (r Range) prefixLen() (int, bool) {
	from, diff := toU128(r.From), toU128(r.To).sub(toU128(r.From))
	// diff is 2^k-1 and from has k trailing zero bits.
	if !diff.and(diff.addOne()).isZero() || !from.and(diff).isZero() {
		return 0, false
	}
	return r.From.BitLen() - diff.onesCount(), true
}

// overlaps reports whether r and o share an address.
func (r Range) overlaps(o Range) bool {
	return r.Contains(o.From) || o.Contains(r.From)
}

// tooWide reports whether r holds more addresses than one /8 (IPv4) or one
// /32 (IPv6): such a pool is almost certainly a typo, and would let the
// controller hand out addresses nobody routes to this cluster.
func (r Range) tooWide() bool {
	diff := toU128(r.To).sub(toU128(r.From))
	if r.Is4() {
		return diff.lo>>24 != 0
	}
	return diff.hi>>32 != 0
}

// minAggregation returns the shortest prefix length L such that r is a
// whole number of /L blocks, so that aggregating any address of r to /L
// never covers an address outside r.
func (r Range) minAggregation() int {
	n := r.From.BitLen()
	host := min(toU128(r.From).trailingZeros(), toU128(r.To).not().trailingZeros(), n)
	return n - host
}

// mergeRanges sorts rs and joins ranges that overlap or touch.
func mergeRanges(rs []Range) []Range {
	if len(rs) == 0 {
		return nil
	}
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b Range) int {
		return cmp.Or(a.From.Compare(b.From), a.To.Compare(b.To))
	})
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		next := last.To.Next()
		if r.From.Is4() == last.From.Is4() && (r.From.Compare(last.To) <= 0 || r.From == next) {
			if r.To.Compare(last.To) > 0 {
				last.To = r.To
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// reserved lists the blocks no pool may touch: addresses that cannot be a
// Service's destination on any network.
var reserved = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "“this network” addresses (0.0.0.0/8, with the unspecified address)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback addresses (127.0.0.0/8)"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local addresses (169.254.0.0/16)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast addresses (224.0.0.0/4)"},
	{netip.MustParsePrefix("255.255.255.255/32"), "the broadcast address 255.255.255.255"},
	{netip.MustParsePrefix("::/128"), "the unspecified address ::"},
	{netip.MustParsePrefix("::1/128"), "the loopback address ::1"},
	{netip.MustParsePrefix("::ffff:0:0/96"), "IPv4-mapped addresses (::ffff:0:0/96)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local addresses (fe80::/10)"},
	{netip.MustParsePrefix("ff00::/8"), "multicast addresses (ff00::/8)"},
}

// checkUsable reports why r cannot be part of a pool, if it cannot.
func checkUsable(r Range) error {
	if r.tooWide() {
		if r.Is4() {
			return errors.New("wider than a /8; Herald refuses IPv4 pools this large")
		}
		return errors.New("wider than a /32; Herald refuses IPv6 pools this large")
	}
	for _, b := range reserved {
		if r.overlaps(prefixRange(b.prefix)) {
			return fmt.Errorf("includes %s", b.what)
		}
	}
	return nil
}

// u128 is an address as a number, for the arithmetic netip leaves out. An
// IPv4 address is its 32-bit value.
type u128 struct{ hi, lo uint64 }

func toU128(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{lo: uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])}
	}
	b := a.As16()
	var u u128
	for i := range 8 {
		u.hi = u.hi<<8 | uint64(b[i])
		u.lo = u.lo<<8 | uint64(b[8+i])
	}
	return u
}

func fromU128(u u128, is4 bool) netip.Addr {
	if is4 {
		return netip.AddrFrom4([4]byte{byte(u.lo >> 24), byte(u.lo >> 16), byte(u.lo >> 8), byte(u.lo)})
	}
	var b [16]byte
	for i := range 8 {
		b[7-i] = byte(u.hi >> (8 * i))
		b[15-i] = byte(u.lo >> (8 * i))
	}
	return netip.AddrFrom16(b)
}

// ones returns the number with the low n bits set.
func ones(n int) u128 {
	switch {
	case n <= 0:
		return u128{}
	case n < 64:
		return u128{lo: 1<<n - 1}
	case n < 128:
		return u128{hi: 1<<(n-64) - 1, lo: ^uint64(0)}
	default:
		return u128{hi: ^uint64(0), lo: ^uint64(0)}
	}
}

func (u u128) sub(v u128) u128 {
	lo, borrow := bits.Sub64(u.lo, v.lo, 0)
	hi, _ := bits.Sub64(u.hi, v.hi, borrow)
	return u128{hi, lo}
}

func (u u128) addOne() u128 {
	lo, carry := bits.Add64(u.lo, 1, 0)
	return u128{u.hi + carry, lo}
}

func (u u128) and(v u128) u128 { return u128{u.hi & v.hi, u.lo & v.lo} }
func (u u128) or(v u128) u128  { return u128{u.hi | v.hi, u.lo | v.lo} }
func (u u128) not() u128       { return u128{^u.hi, ^u.lo} }
func (u u128) isZero() bool    { return u == u128{} }
func (u u128) onesCount() int  { return bits.OnesCount64(u.hi) + bits.OnesCount64(u.lo) }

func (u u128) trailingZeros() int {
	if u.lo != 0 {
		return bits.TrailingZeros64(u.lo)
	}
	return 64 + bits.TrailingZeros64(u.hi)
}
