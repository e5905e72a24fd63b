package l2

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
)

// interfacePrefixes returns the prefixes of every interface, by index, from
// one netlink dump of the addresses: net.Interface.Addrs makes a dump of
// all of them per interface.
func interfacePrefixes([]net.Interface) (map[int][]netip.Prefix, error) {
	rib, err := syscall.NetlinkRIB(syscall.RTM_GETADDR, syscall.AF_UNSPEC)
	if err != nil {
		return nil, err
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return nil, err
	}
	return parseAddrMessages(msgs)
}

// parseAddrMessages reads the RTM_NEWADDR messages of an address dump. As
// the standard library does, an IPv4 address is IFA_LOCAL when present (on
// a point-to-point link IFA_ADDRESS is the peer's).
func parseAddrMessages(msgs []syscall.NetlinkMessage) (map[int][]netip.Prefix, error) {
	out := map[int][]netip.Prefix{}
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Type == syscall.NLMSG_DONE {
			break
		}
		if m.Header.Type != syscall.RTM_NEWADDR || len(m.Data) < syscall.SizeofIfAddrmsg {
			continue
		}
		family, bits := m.Data[0], int(m.Data[1])
		index := int(binary.NativeEndian.Uint32(m.Data[4:8]))
		attrs, err := syscall.ParseNetlinkRouteAttr(m)
		if err != nil {
			return nil, err
		}
		var addr netip.Addr
		for _, a := range attrs {
			switch {
			case a.Attr.Type == syscall.IFA_LOCAL && family == syscall.AF_INET:
				addr, _ = netip.AddrFromSlice(a.Value)
			case a.Attr.Type == syscall.IFA_ADDRESS && !addr.IsValid():
				addr, _ = netip.AddrFromSlice(a.Value)
			}
		}
		if p, err := addr.Unmap().Prefix(bits); addr.IsValid() && err == nil {
			out[index] = append(out[index], p)
		}
	}
	return out, nil
}
