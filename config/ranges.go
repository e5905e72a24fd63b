package config

import (
	"cmp"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// ParseRange reads one entry of a pool's addresses: a CIDR prefix
// ("198.51.100.0/24"), an inclusive range ("198.51.100.10-198.51.100.20",
// spaces around the dash allowed) or a single address. A prefix must be
// written as its network address: "198.51.100.5/24" is an error rather than
// silently meaning 198.51.100.0/24, because a pool is a promise of exactly
// which addresses Herald may hand out. Zones and IPv4-mapped IPv6 addresses
// are rejected where written (a prefix such as ::/80 still spans the mapped
// block; Parse refuses that in a pool); both ends of a range are of one
// family and in order. A hostname is refused as such. An error starts with
// s, quoted and cut to 40 characters.
func ParseRange(s string) (Range, error) {
	r, err := parseRange(s)
	if err != nil {
		return Range{}, fmt.Errorf("%s: %w", quote(s), err)
	}
	return r, nil
}

func parseRange(s string) (Range, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return Range{}, errors.New("empty; want an address, a CIDR or a range a-b")
	}
	if from, to, ok := strings.Cut(t, "-"); ok && !isHostname(t) {
		a, err := parseAddr(strings.TrimSpace(from))
		if err != nil {
			return Range{}, fmt.Errorf("range start: %w", err)
		}
		b, err := parseAddr(strings.TrimSpace(to))
		if err != nil {
			return Range{}, fmt.Errorf("range end: %w", err)
		}
		if a.Is4() != b.Is4() {
			return Range{}, errors.New("range start and end are of different families")
		}
		if a.Compare(b) > 0 {
			return Range{}, errors.New("range start after end")
		}
		return Range{From: a, To: b}, nil
	}
	if addr, bits, ok := strings.Cut(t, "/"); ok {
		p, err := parsePrefix(addr, bits)
		if err != nil {
			return Range{}, err
		}
		if m := p.Masked(); m != p {
			return Range{}, fmt.Errorf("not a network address; write %s", m)
		}
		return prefixRange(p), nil
	}
	a, err := parseAddr(t)
	if err != nil {
		return Range{}, err
	}
	return Range{From: a, To: a}, nil
}

var (
	errZone     = errors.New("zones are not allowed")
	errMapped   = errors.New("IPv4-mapped IPv6 addresses are not allowed; write the IPv4 address")
	errNotIP    = errors.New("not an IP address")
	errHostname = errors.New("hostnames are not supported; write an IP address")
)

// maxAddrText is longer than any IP address; a longer text is refused
// without parsing it.
const maxAddrText = 64

// parseAddr is netip.ParseAddr without the forms a configuration never
// means (zones and IPv4-mapped IPv6), and with errors that name no Go code
// and do not echo s: callers say where s was written.
func parseAddr(s string) (netip.Addr, error) {
	if len(s) > maxAddrText {
		if isHostname(s) {
			return netip.Addr{}, errHostname
		}
		return netip.Addr{}, errNotIP
	}
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil && isHostname(s):
		return netip.Addr{}, errHostname
	case err != nil:
		return netip.Addr{}, errNotIP
	case a.Zone() != "":
		return netip.Addr{}, errZone
	case a.Is4In6():
		return netip.Addr{}, errMapped
	}
	return a, nil
}

// isHostname reports whether s reads as a DNS name (a letter in it, and
// only letters, digits, '-' and '.'), which someone may have written for an
// address.
func isHostname(s string) bool {
	letter := false
	for _, c := range []byte(s) {
		switch {
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
			letter = true
		case '0' <= c && c <= '9' || c == '-' || c == '.':
		default:
			return false
		}
	}
	return letter && len(s) <= validation.DNS1123SubdomainMaxLength && len(validation.IsDNS1123Subdomain(strings.ToLower(s))) == 0
}

// parsePrefix reads a CIDR prefix from its address and its length in bits.
func parsePrefix(addr, bits string) (netip.Prefix, error) {
	a, err := parseAddr(addr)
	if err != nil {
		return netip.Prefix{}, err
	}
	n, err := strconv.Atoi(bits)
	if len(bits) > 3 || err != nil || n < 0 || n > a.BitLen() || strconv.Itoa(n) != bits {
		return netip.Prefix{}, fmt.Errorf("prefix length %s: must be 0-%d", quote(bits), a.BitLen())
	}
	return netip.PrefixFrom(a, n), nil
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

// joinSorted joins, in place, the ranges of rs (sorted by From) that
// overlap or touch.
func joinSorted(rs []Range) []Range {
	if len(rs) == 0 {
		return nil
	}
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
	r    Range
	what string
}{
	{reservedBlock("0.0.0.0/8"), "“this network” addresses (0.0.0.0/8, with the unspecified address)"},
	{reservedBlock("127.0.0.0/8"), "loopback addresses (127.0.0.0/8)"},
	{reservedBlock("169.254.0.0/16"), "link-local addresses (169.254.0.0/16)"},
	{reservedBlock("224.0.0.0/4"), "multicast addresses (224.0.0.0/4)"},
	{reservedBlock("255.255.255.255/32"), "the broadcast address 255.255.255.255"},
	{reservedBlock("::/128"), "the unspecified address ::"},
	{reservedBlock("::1/128"), "the loopback address ::1"},
	{reservedBlock("::ffff:0:0/96"), "IPv4-mapped addresses (::ffff:0:0/96)"},
	{reservedBlock("fe80::/10"), "link-local addresses (fe80::/10)"},
	{reservedBlock("ff00::/8"), "multicast addresses (ff00::/8)"},
}

func reservedBlock(s string) Range { return prefixRange(netip.MustParsePrefix(s)) }

// checkUsable reports why r cannot be part of a pool, if it cannot.
func checkUsable(r Range) error {
	if r.tooWide() {
		if r.Is4() {
			return errors.New("wider than a /8; Herald refuses IPv4 pools this large")
		}
		return errors.New("wider than a /32; Herald refuses IPv6 pools this large")
	}
	for _, b := range reserved {
		if b.r.Is4() == r.Is4() && r.overlaps(b.r) {
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

func (u u128) compare(v u128) int {
	return cmp.Or(cmp.Compare(u.hi, v.hi), cmp.Compare(u.lo, v.lo))
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
