package l2

import (
	"bytes"
	"encoding/binary"
	"maps"
	"net"
	"net/netip"
	"slices"

	"github.com/mdlayher/ndp"
	"go.uber.org/zap"
	"golang.org/x/net/bpf"
)

const (
	ethHeaderLen  = 14
	ipv6HeaderLen = 40
	nsLen         = 24 // ICMPv6 header, reserved, target
	naLen         = 24 // ICMPv6 header, flags and reserved, target
	protoICMPv6   = 58
	typeNS        = 135
	typeNA        = 136
)

// allNodes is the destination of unsolicited advertisements (RFC 4861 §7.2.6).
var allNodes = netip.MustParseAddr("ff02::1")

// ndFilter keeps only ICMPv6 neighbour solicitations and advertisements
// (no extension headers) in the NDP packet socket, which would otherwise
// get a copy of every IPv6 frame on the link. Solicitations are answered;
// advertisements only tell of conflicts.
var ndFilter = func() []bpf.RawInstruction {
	raw, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2}, // EtherType
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: etherTypeIPv6, SkipTrue: 6},
		bpf.LoadAbsolute{Off: ethHeaderLen + 6, Size: 1}, // IPv6 next header
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protoICMPv6, SkipTrue: 4},
		bpf.LoadAbsolute{Off: ethHeaderLen + ipv6HeaderLen, Size: 1}, // ICMPv6 type
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: typeNS, SkipTrue: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: typeNA, SkipTrue: 1},
		bpf.RetConstant{Val: maxFrame - 1},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		panic("l2: assemble the neighbour discovery filter: " + err.Error())
	}
	return raw
}()

// handleND handles one frame of the NDP socket.
func (r *responder) handleND(frame []byte) {
	if len(frame) > ethHeaderLen+ipv6HeaderLen && frame[ethHeaderLen+ipv6HeaderLen] == typeNA {
		r.handleNA(frame)
		return
	}
	r.handleNS(frame)
}

// handleNS answers a neighbour solicitation for an answered address with a
// solicited, overriding advertisement carrying this interface's MAC
// (RFC 4861 §7.2.4), sent from the target address itself, as a host
// answering for its own address does: Linux takes an advertisement from
// any source, but some tools (ndisc6) refuse one whose source is not the
// target. A solicitation from the unspecified
// address (duplicate address detection) gets an unsolicited advertisement
// to all nodes, which defends the address; it is also another device's
// claim to the address, reported as a conflict.
func (r *responder) handleNS(frame []byte) {
	ns, ok := parseNS(frame, r.mac)
	if !ok {
		return
	}
	if ns.src.IsUnspecified() {
		r.claimed(ns.target, ns.from, "", true)
	}
	r.answer(ns.target, bytes.Equal(ns.to, r.mac), func() ([]byte, net.HardwareAddr, error) {
		if ns.src.IsUnspecified() {
			return neighborAdvertisement(r.mac, ns.target, allNodes, nil, false)
		}
		return neighborAdvertisement(r.mac, ns.target, ns.src, ns.from, true)
	})
}

// handleNA reports an advertisement from another device for an address
// answered or probed here. Advertisements are never answered.
func (r *responder) handleNA(frame []byte) {
	na, ok := parseNA(frame)
	if !ok || bytes.Equal(na.from, r.mac) || r.a.isOwnMAC(na.from) {
		return
	}
	mac := na.lla
	if mac == nil {
		mac = na.from
	}
	r.claimed(na.target, mac, KindNeighborAdvertisement, false)
}

// ndMessage is an ICMPv6 message in an Ethernet frame; its slices are views
// into the frame.
type ndMessage struct {
	ethDst, ethSrc net.HardwareAddr
	src, dst       netip.Addr
	msg            []byte // the ICMPv6 message, Ethernet padding dropped
	opts           []byte // its options, each checked to have a non-zero length that fits
}

// parseND validates a frame as an IPv6 neighbour discovery message of
// type typ, per what RFC 4861 §7.1.1 and §7.1.2 ask of every one: hop limit
// 255 (it was not routed), valid checksum, code 0, at least fixed bytes
// long, options of non-zero length.
func parseND(frame []byte, typ byte, fixed int) (ndMessage, bool) {
	if len(frame) < ethHeaderLen+ipv6HeaderLen+fixed || binary.BigEndian.Uint16(frame[12:14]) != etherTypeIPv6 {
		return ndMessage{}, false
	}
	ip := frame[ethHeaderLen:]
	plen := int(binary.BigEndian.Uint16(ip[4:6]))
	if ip[0]>>4 != 6 || ip[6] != protoICMPv6 || ip[7] != ndp.HopLimit || ipv6HeaderLen+plen > len(ip) {
		return ndMessage{}, false
	}
	m := ndMessage{
		ethDst: net.HardwareAddr(frame[0:6]), ethSrc: net.HardwareAddr(frame[6:12]),
		src: netip.AddrFrom16([16]byte(ip[8:24])), dst: netip.AddrFrom16([16]byte(ip[24:40])),
		msg: ip[ipv6HeaderLen : ipv6HeaderLen+plen],
	}
	if len(m.msg) < fixed || m.msg[0] != typ || m.msg[1] != 0 || !checksumValid(m.src, m.dst, m.msg) {
		return ndMessage{}, false
	}
	m.opts = m.msg[fixed:]
	for opts := m.opts; len(opts) > 0; opts = opts[int(opts[1])*8:] {
		if len(opts) < 2 || opts[1] == 0 || int(opts[1])*8 > len(opts) {
			return ndMessage{}, false
		}
	}
	return m, true
}

// solicitation is a validated neighbour solicitation.
type solicitation struct {
	from   net.HardwareAddr // Ethernet source
	to     net.HardwareAddr // Ethernet destination
	src    netip.Addr       // IPv6 source; unspecified for duplicate address detection
	target netip.Addr
}

// parseNS validates a frame as a neighbour solicitation addressed to this
// interface, per RFC 4861 §7.1.1 (hop limit 255, checksum, code 0, length,
// options of non-zero length, target not multicast, the unspecified source
// only towards a solicited-node group and without a source link-layer
// address) and §4.3 (destination: the target or its solicited-node group).
// Frames for another host's MAC and frames sent by this MAC are refused.
func parseNS(frame []byte, mac net.HardwareAddr) (solicitation, bool) {
	m, ok := parseND(frame, typeNS, nsLen)
	if !ok {
		return solicitation{}, false
	}
	toUs := bytes.Equal(m.ethDst, mac) || (m.ethDst[0] == 0x33 && m.ethDst[1] == 0x33) // unicast to us, or IPv6 multicast
	if !toUs || bytes.Equal(m.ethSrc, mac) {
		return solicitation{}, false
	}
	sourceLLA := false
	for opts := m.opts; len(opts) > 0; opts = opts[int(opts[1])*8:] {
		sourceLLA = sourceLLA || opts[0] == byte(ndp.Source)
	}
	msg, err := ndp.ParseMessage(m.msg)
	if err != nil {
		return solicitation{}, false
	}
	ns, ok := msg.(*ndp.NeighborSolicitation)
	if !ok || ns.TargetAddress.IsMulticast() {
		return solicitation{}, false
	}
	target := ns.TargetAddress.WithZone("")
	group, err := ndp.SolicitedNodeMulticast(target)
	if err != nil || (m.dst != target && m.dst != group) {
		return solicitation{}, false
	}
	if m.src.IsUnspecified() && (m.dst != group || sourceLLA) {
		return solicitation{}, false
	}
	return solicitation{from: bytes.Clone(m.ethSrc), to: bytes.Clone(m.ethDst), src: m.src, target: target}, true
}

// advertisement is a validated neighbour advertisement; its MACs are views
// into the frame.
type advertisement struct {
	from      net.HardwareAddr // Ethernet source
	lla       net.HardwareAddr // target link-layer address option; nil without one
	target    netip.Addr
	solicited bool
}

// parseNA validates a frame as a neighbour advertisement per RFC 4861
// §7.1.2 (hop limit 255, checksum, code 0, length, options of non-zero
// length, target not multicast, the solicited flag clear towards a
// multicast destination), whoever it is addressed to. It allocates
// nothing: every advertisement on the link passes through it.
func parseNA(frame []byte) (advertisement, bool) {
	m, ok := parseND(frame, typeNA, naLen)
	if !ok {
		return advertisement{}, false
	}
	na := advertisement{
		from:      m.ethSrc,
		target:    netip.AddrFrom16([16]byte(m.msg[8:24])),
		solicited: m.msg[4]&0x40 != 0,
	}
	if na.target.IsMulticast() || (na.solicited && m.dst.IsMulticast()) {
		return advertisement{}, false
	}
	for opts := m.opts; len(opts) > 0; opts = opts[int(opts[1])*8:] {
		if opts[0] == byte(ndp.Target) && opts[1] == 1 && na.lla == nil { // an Ethernet address fills one 8-byte unit
			na.lla = net.HardwareAddr(opts[2:8])
		}
	}
	return na, true
}

// dadSolicitation builds a duplicate address detection probe (RFC 4862
// §5.4.2): a neighbour solicitation for addr from the unspecified address
// to addr's solicited-node group, without a source link-layer address.
func dadSolicitation(mac net.HardwareAddr, addr netip.Addr) ([]byte, net.HardwareAddr, error) {
	group, err := ndp.SolicitedNodeMulticast(addr)
	if err != nil {
		return nil, nil, err
	}
	src := netip.IPv6Unspecified()
	body, err := ndp.MarshalMessageChecksum(&ndp.NeighborSolicitation{TargetAddress: addr}, src, group)
	if err != nil {
		return nil, nil, err
	}
	dstMAC := multicastMAC(group)
	return ipv6Frame(mac, dstMAC, src, group, body), dstMAC, nil
}

// neighborAdvertisement builds an Ethernet frame carrying a neighbour
// advertisement for target with this MAC as its target link-layer address
// and the override flag set, sent from target to dst (to dstMAC, or to
// dst's multicast MAC when dstMAC is nil).
func neighborAdvertisement(mac net.HardwareAddr, target, dst netip.Addr, dstMAC net.HardwareAddr, solicited bool) ([]byte, net.HardwareAddr, error) {
	na := &ndp.NeighborAdvertisement{
		Solicited:     solicited,
		Override:      true,
		TargetAddress: target,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}},
	}
	body, err := ndp.MarshalMessageChecksum(na, target, dst)
	if err != nil {
		return nil, nil, err
	}
	if dstMAC == nil {
		dstMAC = multicastMAC(dst)
	}
	return ipv6Frame(mac, dstMAC, target, dst, body), dstMAC, nil
}

// multicastMAC is the Ethernet group address of an IPv6 multicast group
// (RFC 2464 §7).
func multicastMAC(group netip.Addr) net.HardwareAddr {
	g := group.As16()
	return net.HardwareAddr{0x33, 0x33, g[12], g[13], g[14], g[15]}
}

// ipv6Frame wraps an ICMPv6 message in IPv6 (hop limit 255) and Ethernet.
func ipv6Frame(mac, dstMAC net.HardwareAddr, src, dst netip.Addr, body []byte) []byte {
	b := make([]byte, ethHeaderLen+ipv6HeaderLen, ethHeaderLen+ipv6HeaderLen+len(body))
	copy(b[0:6], dstMAC)
	copy(b[6:12], mac)
	binary.BigEndian.PutUint16(b[12:14], etherTypeIPv6)
	ip := b[ethHeaderLen:]
	ip[0] = 6 << 4
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(body)))
	ip[6], ip[7] = protoICMPv6, ndp.HopLimit
	s, d := src.As16(), dst.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	return append(b, body...)
}

// checksumValid checks an ICMPv6 message's checksum over the IPv6
// pseudo-header (RFC 8200 §8.1).
func checksumValid(src, dst netip.Addr, msg []byte) bool {
	var sum uint32
	add := func(b []byte) {
		for len(b) >= 2 {
			sum += uint32(binary.BigEndian.Uint16(b))
			b = b[2:]
		}
		if len(b) == 1 {
			sum += uint32(b[0]) << 8
		}
	}
	s, d := src.As16(), dst.As16()
	add(s[:])
	add(d[:])
	sum += uint32(len(msg)>>16) + uint32(len(msg)&0xffff) + protoICMPv6
	add(msg)
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return sum == 0xffff
}

// joinGroups joins the solicited-node group of each of ls's addresses, so
// that multicast solicitations for them reach this host: the NIC accepts
// the group's MAC and MLD-snooping switches forward it. A failed join is
// retried at the next refresh; unicast solicitations and announcements
// work meanwhile.
func (l *loop) joinGroups(ls *listener) {
	if ls.groups == nil {
		return
	}
	for addr := range ls.addrs {
		l.joinGroup(ls, addr)
	}
}

// joinGroup joins addr's solicited-node group on ls. For an address being
// probed, it is where another device's duplicate address detection for it
// goes (RFC 4862 §5.4.2).
func (l *loop) joinGroup(ls *listener, addr netip.Addr) {
	if ls.groups == nil {
		return
	}
	group, err := ndp.SolicitedNodeMulticast(addr)
	if err != nil || has(ls.joined, group) {
		return
	}
	if err := ls.groups.JoinGroup(group); err != nil {
		l.a.m.errors.WithLabelValues(string(ls.key.proto), ls.key.iface, "join").Inc()
		l.logOnce(ls, "cannot join solicited-node group", err, zap.Stringer("ip", addr), zap.Stringer("group", group))
		return
	}
	ls.joined[group] = struct{}{}
}

// leaveGroups leaves the groups neither an address of ls nor one probed
// on it needs any more (addresses that share their last 24 bits share a
// group).
func (l *loop) leaveGroups(ls *listener, probed []netip.Addr) {
	if ls.groups == nil {
		return
	}
	need := map[netip.Addr]struct{}{}
	for _, addr := range slices.Concat(slices.Collect(maps.Keys(ls.addrs)), probed) {
		if group, err := ndp.SolicitedNodeMulticast(addr); err == nil {
			need[group] = struct{}{}
		}
	}
	for group := range ls.joined {
		if has(need, group) {
			continue
		}
		delete(ls.joined, group)
		if err := ls.groups.LeaveGroup(group); err != nil {
			l.a.m.errors.WithLabelValues(string(ls.key.proto), ls.key.iface, "join").Inc()
			l.log.Debug("cannot leave solicited-node group", zap.String("iface", ls.key.iface), zap.Stringer("group", group), zap.Error(err))
		}
	}
}
