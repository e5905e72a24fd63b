package l2

import (
	"bytes"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
)

// handleARP replies to an ARP request for an answered address, with this
// interface's MAC, to the requester's MAC.
func (r *responder) handleARP(frame []byte) {
	req, ok := parseARPRequest(frame, r.mac)
	if !ok {
		return
	}
	r.answer(req.TargetIP, func() ([]byte, net.HardwareAddr, error) {
		b, err := arpFrame(arp.OperationReply, r.mac, req.TargetIP, req.SenderHardwareAddr, req.SenderIP, req.SenderHardwareAddr)
		return b, req.SenderHardwareAddr, err
	})
}

// parseARPRequest returns the Ethernet/IPv4 ARP request (RFC 826) a frame
// carries, if this interface should consider it. Refused: frames for
// another host's MAC (a promiscuous interface sees them), requests sent from
// this MAC (the host's own kernel resolving), and gratuitous requests, which
// announce rather than ask. Probes (RFC 5227: sender IP 0.0.0.0) are kept:
// answering them is how the owner defends its address.
func parseARPRequest(frame []byte, mac net.HardwareAddr) (*arp.Packet, bool) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil || f.EtherType != ethernet.EtherTypeARP ||
		!(bytes.Equal(f.Destination, ethernet.Broadcast) || bytes.Equal(f.Destination, mac)) ||
		bytes.Equal(f.Source, mac) {
		return nil, false
	}
	var req arp.Packet
	switch err := req.UnmarshalBinary(f.Payload); {
	case err != nil,
		req.Operation != arp.OperationRequest,
		req.HardwareType != 1, // Ethernet
		req.ProtocolType != uint16(ethernet.EtherTypeIPv4),
		req.HardwareAddrLength != 6,
		req.IPLength != 4,
		bytes.Equal(req.SenderHardwareAddr, mac),
		req.SenderIP == req.TargetIP:
		return nil, false
	}
	return &req, true
}

// arpAnnouncement builds the gratuitous ARP sent on takeover and refresh:
// an ARP Announcement (RFC 5227 §2.3), a broadcast request whose sender and
// target IP are both the address, target MAC zero. Linux, and most hosts,
// update an existing neighbour entry from it (RFC 826's merge step: the
// sender's pair is recorded before the target is looked at), and a request
// is what RFC 5227 recommends over a reply.
func arpAnnouncement(mac net.HardwareAddr, addr netip.Addr) ([]byte, net.HardwareAddr, error) {
	b, err := arpFrame(arp.OperationRequest, mac, addr, make(net.HardwareAddr, 6), addr, ethernet.Broadcast)
	return b, ethernet.Broadcast, err
}

func arpFrame(op arp.Operation, mac net.HardwareAddr, ip netip.Addr, tha net.HardwareAddr, tpa netip.Addr, dst net.HardwareAddr) ([]byte, error) {
	p, err := arp.NewPacket(op, mac, ip, tha, tpa)
	if err != nil {
		return nil, err
	}
	pb, err := p.MarshalBinary()
	if err != nil {
		return nil, err
	}
	f := ethernet.Frame{Destination: dst, Source: mac, EtherType: ethernet.EtherTypeARP, Payload: pb}
	return f.MarshalBinary()
}
