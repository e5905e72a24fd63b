package l2

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/mdlayher/ndp"
	"go.uber.org/zap"
	"golang.org/x/net/bpf"
)

const (
	ethHeaderLen  = 14
	ipv6HeaderLen = 40
	nsLen         = 24 // ICMPv6 header, reserved, target
	protoICMPv6   = 58
	typeNS        = 135
)

// allNodes is the destination of unsolicited advertisements (RFC 4861 §7.2.6).
var allNodes = netip.MustParseAddr("ff02::1")

// nsFilter keeps only ICMPv6 neighbour solicitations (no extension
// headers) in the NDP packet socket, which would otherwise get a copy of
// every IPv6 frame on the link.
var nsFilter = func() []bpf.RawInstruction {
	raw, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 12, Size: 2}, // EtherType
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: etherTypeIPv6, SkipTrue: 5},
		bpf.LoadAbsolute{Off: ethHeaderLen + 6, Size: 1}, // IPv6 next header
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protoICMPv6, SkipTrue: 3},
		bpf.LoadAbsolute{Off: ethHeaderLen + ipv6HeaderLen, Size: 1}, // ICMPv6 type
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: typeNS, SkipTrue: 1},
		bpf.RetConstant{Val: maxFrame - 1},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		panic("l2: assemble the NS filter: " + err.Error())
	}
	return raw
}()

// handleNS answers a neighbour solicitation for an answered address with a
// solicited, overriding advertisement carrying this interface's MAC
// (RFC 4861 §7.2.4), sent from the target address itself, as a host
// answering for its own address does: Linux takes an advertisement from
// any source, but some tools (ndisc6) refuse one whose source is not the
// target. A solicitation from the unspecified
// address (duplicate address detection) gets an unsolicited advertisement
// to all nodes, which defends the address.
func (r *responder) handleNS(frame []byte) {
	ns, ok := parseNS(frame, r.mac)
	if !ok {
		return
	}
	r.answer(ns.target, func() ([]byte, net.HardwareAddr, error) {
		if ns.src.IsUnspecified() {
			return neighborAdvertisement(r.mac, ns.target, allNodes, nil, false)
		}
		return neighborAdvertisement(r.mac, ns.target, ns.src, ns.from, true)
	})
}

// solicitation is a validated neighbour solicitation.
type solicitation struct {
	from   net.HardwareAddr // Ethernet source
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
	if len(frame) < ethHeaderLen+ipv6HeaderLen+nsLen {
		return solicitation{}, false
	}
	ethDst, ethSrc := net.HardwareAddr(frame[0:6]), net.HardwareAddr(frame[6:12])
	toUs := bytes.Equal(ethDst, mac) || (ethDst[0] == 0x33 && ethDst[1] == 0x33) // unicast to us, or IPv6 multicast
	if !toUs || bytes.Equal(ethSrc, mac) || binary.BigEndian.Uint16(frame[12:14]) != etherTypeIPv6 {
		return solicitation{}, false
	}

	ip := frame[ethHeaderLen:]
	plen := int(binary.BigEndian.Uint16(ip[4:6]))
	if ip[0]>>4 != 6 || ip[6] != protoICMPv6 || ip[7] != ndp.HopLimit || ipv6HeaderLen+plen > len(ip) {
		return solicitation{}, false
	}
	src := netip.AddrFrom16([16]byte(ip[8:24]))
	dst := netip.AddrFrom16([16]byte(ip[24:40]))
	icmp := ip[ipv6HeaderLen : ipv6HeaderLen+plen] // drops Ethernet padding
	if len(icmp) < nsLen || icmp[0] != typeNS || icmp[1] != 0 || !checksumValid(src, dst, icmp) {
		return solicitation{}, false
	}
	sourceLLA := false
	for opts := icmp[nsLen:]; len(opts) > 0; {
		if len(opts) < 2 || opts[1] == 0 || int(opts[1])*8 > len(opts) {
			return solicitation{}, false
		}
		sourceLLA = sourceLLA || opts[0] == byte(ndp.Source)
		opts = opts[int(opts[1])*8:]
	}
	m, err := ndp.ParseMessage(icmp)
	if err != nil {
		return solicitation{}, false
	}
	ns, ok := m.(*ndp.NeighborSolicitation)
	if !ok || ns.TargetAddress.IsMulticast() {
		return solicitation{}, false
	}
	target := ns.TargetAddress.WithZone("")
	group, err := ndp.SolicitedNodeMulticast(target)
	if err != nil || (dst != target && dst != group) {
		return solicitation{}, false
	}
	if src.IsUnspecified() && (dst != group || sourceLLA) {
		return solicitation{}, false
	}
	return solicitation{from: bytes.Clone(ethSrc), src: src, target: target}, true
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
		d := dst.As16()
		dstMAC = net.HardwareAddr{0x33, 0x33, d[12], d[13], d[14], d[15]} // RFC 2464 §7
	}
	b := make([]byte, ethHeaderLen+ipv6HeaderLen, ethHeaderLen+ipv6HeaderLen+len(body))
	copy(b[0:6], dstMAC)
	copy(b[6:12], mac)
	binary.BigEndian.PutUint16(b[12:14], etherTypeIPv6)
	ip := b[ethHeaderLen:]
	ip[0] = 6 << 4
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(body)))
	ip[6], ip[7] = protoICMPv6, ndp.HopLimit
	s, d := target.As16(), dst.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	return append(b, body...), dstMAC, nil
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
		group, err := ndp.SolicitedNodeMulticast(addr)
		if err != nil || has(ls.joined, group) {
			continue
		}
		if err := ls.groups.JoinGroup(group); err != nil {
			l.a.m.errors.WithLabelValues(string(ls.key.proto), ls.key.iface, "join").Inc()
			l.logOnce(ls, "cannot join solicited-node group", err, zap.Stringer("ip", addr), zap.Stringer("group", group))
			continue
		}
		ls.joined[group] = struct{}{}
	}
}

// leaveGroups leaves the groups no address of ls needs any more (addresses
// that share their last 24 bits share a group).
func (l *loop) leaveGroups(ls *listener) {
	if ls.groups == nil {
		return
	}
	need := map[netip.Addr]struct{}{}
	for addr := range ls.addrs {
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
