package bgp_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// This file reads what tcpdump wrote: the classic libpcap file format,
// the IPv4/IPv6, TCP and UDP headers, each TCP connection's two byte streams
// reassembled by sequence number, and the BGP messages in them (RFC 4271
// section 4.1: a 16-byte marker, a length, a type).

// segment is one captured TCP segment or UDP datagram.
type segment struct {
	at       time.Time
	proto    uint8 // protoTCP or protoUDP
	src, dst netip.AddrPort
	seq      uint32 // TCP only
	flags    uint8  // TCP flags: FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10
	payload  []byte
}

const (
	protoTCP = 6
	protoUDP = 17
	tcpFIN   = 0x01
	tcpSYN   = 0x02
	tcpRST   = 0x04
	tcpACK   = 0x10
)

// Link types of the pcap file header (tcpdump -i any writes one of the
// "cooked" Linux types).
const (
	linkEthernet = 1
	linkRaw      = 101
	linkSLL      = 113
	linkSLL2     = 276
)

// readPcap returns the TCP segments and UDP datagrams of a pcap file, in
// capture order. Other packets are skipped.
func readPcap(b []byte) ([]segment, error) {
	if len(b) < 24 {
		return nil, errors.New("pcap: short file header")
	}
	var order binary.ByteOrder
	var nano bool
	for _, o := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		switch o.Uint32(b) {
		case 0xa1b2c3d4:
			order = o
		case 0xa1b23c4d:
			order, nano = o, true
		}
	}
	if order == nil {
		return nil, fmt.Errorf("pcap: magic %x: not a pcap file", b[:4])
	}
	link := order.Uint32(b[20:24]) & 0xffff
	var out []segment
	for off := 24; off < len(b); {
		if len(b)-off < 16 {
			return out, fmt.Errorf("pcap: short record header at %d", off)
		}
		sec, frac, n := order.Uint32(b[off:]), order.Uint32(b[off+4:]), int(order.Uint32(b[off+8:]))
		off += 16
		if len(b)-off < n {
			return out, fmt.Errorf("pcap: record at %d: %d bytes, %d left", off-16, n, len(b)-off)
		}
		pkt := b[off : off+n]
		off += n
		if !nano {
			frac *= 1000
		}
		ip, ok := linkPayload(link, pkt)
		if !ok {
			continue
		}
		if s, ok := parseIP(ip); ok {
			s.at = time.Unix(int64(sec), int64(frac))
			out = append(out, s)
		}
	}
	return out, nil
}

// linkPayload strips the link-layer header and returns the IP packet.
func linkPayload(link uint32, p []byte) ([]byte, bool) {
	var proto uint16
	switch link {
	case linkEthernet:
		if len(p) < 14 {
			return nil, false
		}
		proto, p = binary.BigEndian.Uint16(p[12:]), p[14:]
	case linkSLL:
		if len(p) < 16 {
			return nil, false
		}
		proto, p = binary.BigEndian.Uint16(p[14:]), p[16:]
	case linkSLL2:
		if len(p) < 20 {
			return nil, false
		}
		proto, p = binary.BigEndian.Uint16(p[0:]), p[20:]
	case linkRaw:
		return p, true
	default:
		return nil, false
	}
	return p, proto == 0x0800 || proto == 0x86dd
}

// parseIP reads an IP packet carrying a TCP segment or a UDP datagram.
func parseIP(p []byte) (segment, bool) {
	var s segment
	var src, dst netip.Addr
	var l4 []byte
	switch {
	case len(p) >= 20 && p[0]>>4 == 4:
		hl, total := int(p[0]&0x0f)*4, int(binary.BigEndian.Uint16(p[2:]))
		if hl < 20 || total < hl || total > len(p) || binary.BigEndian.Uint16(p[6:])&0x3fff != 0 {
			return s, false // malformed, or a fragment
		}
		s.proto = p[9]
		src, dst = netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20]))
		l4 = p[hl:total]
	case len(p) >= 40 && p[0]>>4 == 6:
		n := int(binary.BigEndian.Uint16(p[4:]))
		if 40+n > len(p) {
			return s, false // truncated
		}
		s.proto = p[6] // extension headers are not followed
		src, dst = netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40]))
		l4 = p[40 : 40+n]
	default:
		return s, false
	}
	switch s.proto {
	case protoUDP:
		if len(l4) < 8 {
			return s, false
		}
		s.src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(l4[0:]))
		s.dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(l4[2:]))
		s.payload = l4[8:]
		return s, true
	case protoTCP:
	default:
		return s, false
	}
	tcp := l4
	if len(tcp) < 20 {
		return s, false
	}
	hl := int(tcp[12]>>4) * 4
	if hl < 20 || hl > len(tcp) {
		return s, false
	}
	s.src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(tcp[0:]))
	s.dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(tcp[2:]))
	s.seq = binary.BigEndian.Uint32(tcp[4:])
	s.flags = tcp[13]
	s.payload = tcp[hl:]
	return s, true
}

// stream is one direction of a TCP connection, reassembled.
type stream struct {
	src, dst netip.AddrPort
	isn      uint32 // the SYN's sequence number, if seen
	synSeen  bool
	segs     []segment
	// Set by assemble:
	data  []byte
	times []byteTime // when the bytes from each offset on arrived
	gap   bool       // bytes missing: data ends before the last segment's
}

type byteTime struct {
	off int
	at  time.Time
}

// conn is one TCP connection: the stream from the side that opened it
// (its SYN) and the stream back.
type conn struct{ out, back *stream }

// connections groups segments into connections, in the order they were
// opened. A SYN on a 4-tuple already seen starts a new connection.
func connections(segs []segment) []*conn {
	var all []*conn
	current := map[[2]netip.AddrPort]*stream{}
	for _, s := range segs {
		if s.proto != protoTCP {
			continue
		}
		key := [2]netip.AddrPort{s.src, s.dst}
		st := current[key]
		if s.flags&tcpSYN != 0 && s.flags&tcpACK == 0 && (st == nil || !st.synSeen || st.isn != s.seq) {
			c := &conn{out: &stream{src: s.src, dst: s.dst}, back: &stream{src: s.dst, dst: s.src}}
			all = append(all, c)
			current[key], current[[2]netip.AddrPort{s.dst, s.src}] = c.out, c.back
			st = c.out
		}
		if st == nil { // opened before the capture began
			c := &conn{out: &stream{src: s.src, dst: s.dst}, back: &stream{src: s.dst, dst: s.src}}
			all = append(all, c)
			current[key], current[[2]netip.AddrPort{s.dst, s.src}] = c.out, c.back
			st = c.out
		}
		if s.flags&tcpSYN != 0 {
			st.isn, st.synSeen = s.seq, true
		}
		st.segs = append(st.segs, s)
	}
	for _, c := range all {
		c.out.assemble()
		c.back.assemble()
	}
	return all
}

// assemble orders the stream's payloads by sequence number and joins
// them, dropping what was sent twice; it stops at the first hole.
func (st *stream) assemble() {
	if len(st.segs) == 0 {
		return
	}
	base := st.isn + 1 // the SYN takes one sequence number
	if !st.synSeen {
		base = st.segs[0].seq
		for _, s := range st.segs {
			if int32(s.seq-base) < 0 {
				base = s.seq
			}
		}
	}
	type piece struct {
		off int
		s   segment
	}
	var pieces []piece
	for _, s := range st.segs {
		if len(s.payload) > 0 {
			pieces = append(pieces, piece{int(int32(s.seq - base)), s})
		}
	}
	slices.SortStableFunc(pieces, func(a, b piece) int { return a.off - b.off })
	for _, p := range pieces {
		end := p.off + len(p.s.payload)
		switch {
		case p.off > len(st.data):
			st.gap = true
			return
		case end <= len(st.data):
			continue // a retransmission of bytes we have
		}
		st.times = append(st.times, byteTime{len(st.data), p.s.at})
		st.data = append(st.data, p.s.payload[len(st.data)-p.off:]...)
	}
}

// timeAt is when the byte at off arrived.
func (st *stream) timeAt(off int) time.Time {
	var at time.Time
	for _, t := range st.times {
		if t.off > off {
			break
		}
		at = t.at
	}
	return at
}

// message is one BGP message read from a stream.
type message struct {
	at  time.Time
	msg *bgp.BGPMessage
	err error // the message could not be decoded
}

// messages splits the stream into BGP messages by the header's length
// and decodes each; it stops at bytes that are no BGP header.
func (st *stream) messages() ([]message, error) {
	var out []message
	data := st.data
	for off := 0; off < len(data); {
		if len(data)-off < bgp.BGP_HEADER_LENGTH {
			return out, fmt.Errorf("%d bytes after the last whole message", len(data)-off)
		}
		for _, b := range data[off : off+16] {
			if b != 0xff {
				return out, fmt.Errorf("no BGP marker at stream offset %d", off)
			}
		}
		n := int(binary.BigEndian.Uint16(data[off+16:]))
		if n < bgp.BGP_HEADER_LENGTH {
			return out, fmt.Errorf("BGP length %d at stream offset %d", n, off)
		}
		if len(data)-off < n {
			return out, fmt.Errorf("message of %d bytes at stream offset %d cut off at %d", n, off, len(data)-off)
		}
		m, err := bgp.ParseBGPMessage(data[off : off+n])
		out = append(out, message{at: st.timeAt(off), msg: m, err: err})
		off += n
	}
	return out, nil
}

func TestReadPcapFindsFamiliesOutsideTheOPENs(t *testing.T) {
	node := netip.MustParseAddrPort("198.51.100.11:40000")
	router := netip.MustParseAddrPort("198.51.100.4:179")
	node6 := netip.MustParseAddrPort("[2001:db8:1::11]:40001")
	router6 := netip.MustParseAddrPort("[2001:db8:1::4]:179")
	both := mustSerialize(t, openWith(bgp.RF_IPv4_UC, bgp.RF_IPv6_UC))
	v4only := mustSerialize(t, openWith(bgp.RF_IPv4_UC))
	keepalive := mustSerialize(t, bgp.NewBGPKeepAliveMessage())
	eor4, eor6 := mustSerialize(t, bgp.NewEndOfRib(bgp.RF_IPv4_UC)), mustSerialize(t, bgp.NewEndOfRib(bgp.RF_IPv6_UC))
	for _, tc := range []struct {
		name         string
		link         uint32
		node, router netip.AddrPort
	}{
		{"sll2-ipv4", linkSLL2, node, router},
		{"sll-ipv6", linkSLL, node6, router6},
		{"ethernet-ipv4", linkEthernet, node, router},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := func(seq uint32, flags uint8, payload []byte) []byte {
				return frame(tc.link, tc.node, tc.router, seq, flags, payload)
			}
			back := func(seq uint32, flags uint8, payload []byte) []byte {
				return frame(tc.link, tc.router, tc.node, seq, flags, payload)
			}
			// The node's OPEN comes in two segments, the second first, then
			// the first twice; its two End-of-RIBs share a segment.
			tail := slices.Concat(eor6, eor4)
			file := pcapFile(tc.link,
				out(1000, tcpSYN, nil),
				back(5000, tcpSYN|tcpACK, nil),
				out(1001+10, tcpACK, both[10:]),
				out(1001, tcpACK, both[:10]),
				out(1001, tcpACK, both[:10]),
				back(5001, tcpACK, slices.Concat(v4only, keepalive)),
				out(1001+uint32(len(both)), tcpACK, keepalive),
				out(1001+uint32(len(both)+len(keepalive)), tcpACK|tcpFIN, tail),
			)
			segs, err := readPcap(file)
			if err != nil {
				t.Fatal(err)
			}
			conns := connections(segs)
			if len(conns) != 1 {
				t.Fatalf("%d connections, want 1", len(conns))
			}
			rep := checkFamilies(conns, func(a netip.Addr) string {
				if a == tc.node.Addr() {
					return "node1"
				}
				return "BIRD"
			})
			if len(rep.problems) != 1 || !strings.Contains(rep.problems[0], "node1 → BIRD message 3") ||
				!strings.Contains(rep.problems[0], "End-of-RIB for ipv6-unicast (AFI 2, SAFI 1)") {
				t.Errorf("problems %q, want one: node1's End-of-RIB for ipv6-unicast (message 3)", rep.problems)
			}
			if got := rep.opened[tc.node.Addr().String()]; len(got) != 1 || !got[0].Equal(time.Unix(1700000000, 3e6)) {
				t.Errorf("node1's sessions began at %v, want one when its OPEN's first bytes came (packet 4) (%v)", got, rep.sessions)
			}
		})
	}
}

func FuzzReadPcap(f *testing.F) {
	f.Add(pcapFile(linkSLL2, frame(linkSLL2, netip.MustParseAddrPort("198.51.100.11:1"), netip.MustParseAddrPort("198.51.100.4:179"), 7, tcpSYN, nil)))
	f.Fuzz(func(t *testing.T, b []byte) {
		segs, _ := readPcap(b)
		for _, c := range connections(segs) {
			_, _ = c.out.messages()
			_, _ = c.back.messages()
		}
	})
}

func openWith(fams ...bgp.Family) *bgp.BGPMessage {
	var caps []bgp.ParameterCapabilityInterface
	for _, f := range fams {
		caps = append(caps, bgp.NewCapMultiProtocol(f))
	}
	m, _ := bgp.NewBGPOpenMessage(64501, 9, netip.MustParseAddr("198.51.100.11"), []bgp.OptionParameterInterface{bgp.NewOptionParameterCapability(caps)})
	return m
}

func mustSerialize(t *testing.T, m *bgp.BGPMessage) []byte {
	t.Helper()
	b, err := m.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pcapFile writes a little-endian, microsecond pcap file, one packet a millisecond.
func pcapFile(link uint32, pkts ...[]byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0xa1b2c3d4)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = append(b, make([]byte, 8)...) // time zone, accuracy
	b = binary.LittleEndian.AppendUint32(b, 262144)
	b = binary.LittleEndian.AppendUint32(b, link)
	for i, p := range pkts {
		b = binary.LittleEndian.AppendUint32(b, 1700000000)
		b = binary.LittleEndian.AppendUint32(b, uint32(i*1000))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return b
}

// frame builds a TCP segment in an IP packet behind the link header.
func frame(link uint32, src, dst netip.AddrPort, seq uint32, flags uint8, payload []byte) []byte {
	tcp := binary.BigEndian.AppendUint16(nil, src.Port())
	tcp = binary.BigEndian.AppendUint16(tcp, dst.Port())
	tcp = binary.BigEndian.AppendUint32(tcp, seq)
	tcp = append(tcp, 0, 0, 0, 0, 5<<4, flags, 0xff, 0xff, 0, 0, 0, 0) // ack, offset, flags, window, sum, urgent
	tcp = append(tcp, payload...)
	var ip []byte
	ethertype := uint16(0x0800)
	if src.Addr().Is4() {
		ip = []byte{0x45, 0}
		ip = binary.BigEndian.AppendUint16(ip, uint16(20+len(tcp)))
		ip = append(ip, 0, 0, 0x40, 0, 64, 6, 0, 0) // id, don't fragment, ttl, TCP, sum
		ip = append(append(ip, src.Addr().AsSlice()...), dst.Addr().AsSlice()...)
	} else {
		ethertype = 0x86dd
		ip = []byte{0x60, 0, 0, 0}
		ip = binary.BigEndian.AppendUint16(ip, uint16(len(tcp)))
		ip = append(ip, 6, 64)
		ip = append(append(ip, src.Addr().AsSlice()...), dst.Addr().AsSlice()...)
	}
	ip = append(ip, tcp...)
	var hdr []byte
	switch link {
	case linkEthernet:
		hdr = binary.BigEndian.AppendUint16(make([]byte, 12), ethertype)
	case linkSLL:
		hdr = binary.BigEndian.AppendUint16(make([]byte, 14), ethertype)
	case linkSLL2:
		hdr = binary.BigEndian.AppendUint16(nil, ethertype)
		hdr = append(hdr, make([]byte, 18)...)
	}
	return append(hdr, ip...)
}
