package l2

import (
	"bytes"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
)

// handleARP replies to an ARP request for an answered address, with this
// interface's MAC, to the requester's MAC. Every ARP frame from another
// device is also checked for a claim to an address answered or probed
// here: a request or reply with it as sender IP, or a probe for it.
func (r *responder) handleARP(frame []byte) {
	f, p, ok := parseARP(frame)
	if !ok {
		return
	}
	if !bytes.Equal(f.Source, r.mac) && !r.a.isOwnMAC(f.Source) {
		switch {
		case p.SenderIP.IsUnspecified():
			if p.Operation == arp.OperationRequest {
				r.claimed(p.TargetIP, p.SenderHardwareAddr, "", true)
			}
		case p.Operation == arp.OperationReply:
			r.claimed(p.SenderIP, p.SenderHardwareAddr, KindARPReply, false)
		case p.Operation == arp.OperationRequest:
			r.claimed(p.SenderIP, p.SenderHardwareAddr, KindARPRequest, false)
		}
	}
	if !isRequestFor(f, p, r.mac) {
		return
	}
	r.answer(p.TargetIP, bytes.Equal(f.Destination, r.mac), func() ([]byte, net.HardwareAddr, error) {
		b, err := arpFrame(arp.OperationReply, r.mac, p.TargetIP, p.SenderHardwareAddr, p.SenderIP, p.SenderHardwareAddr)
		return b, p.SenderHardwareAddr, err
	})
}

// parseARP returns the Ethernet/IPv4 ARP packet (RFC 826) a frame carries,
// request or reply, whoever it is for.
func parseARP(frame []byte) (*ethernet.Frame, *arp.Packet, bool) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil || f.EtherType != ethernet.EtherTypeARP {
		return nil, nil, false
	}
	var p arp.Packet
	switch err := p.UnmarshalBinary(f.Payload); {
	case err != nil,
		p.Operation != arp.OperationRequest && p.Operation != arp.OperationReply,
		p.HardwareType != 1, // Ethernet
		p.ProtocolType != uint16(ethernet.EtherTypeIPv4),
		p.HardwareAddrLength != 6,
		p.IPLength != 4:
		return nil, nil, false
	}
	return &f, &p, true
}

// isRequestFor tells whether this interface should answer an ARP packet.
// Refused: frames for another host's MAC (a promiscuous interface sees
// them), requests sent from this MAC (the host's own kernel resolving), and
// gratuitous requests, which announce rather than ask. Probes (RFC 5227:
// sender IP 0.0.0.0) are kept: answering them is how the owner defends its
// address.
func isRequestFor(f *ethernet.Frame, p *arp.Packet, mac net.HardwareAddr) bool {
	return p.Operation == arp.OperationRequest &&
		(bytes.Equal(f.Destination, ethernet.Broadcast) || bytes.Equal(f.Destination, mac)) &&
		!bytes.Equal(f.Source, mac) && !bytes.Equal(p.SenderHardwareAddr, mac) &&
		p.SenderIP != p.TargetIP
}

// parseARPRequest returns the ARP request a frame carries if this interface
// should answer it (see isRequestFor).
func parseARPRequest(frame []byte, mac net.HardwareAddr) (*arp.Packet, bool) {
	f, p, ok := parseARP(frame)
	if !ok || !isRequestFor(f, p, mac) {
		return nil, false
	}
	return p, true
}

// arpProbe builds an ARP probe (RFC 5227 §2.1.1): a broadcast request for
// addr with sender IP 0.0.0.0, so that no neighbour's cache changes, and
// target MAC zero.
func arpProbe(mac net.HardwareAddr, addr netip.Addr) ([]byte, net.HardwareAddr, error) {
	b, err := arpFrame(arp.OperationRequest, mac, netip.IPv4Unspecified(), make(net.HardwareAddr, 6), addr, ethernet.Broadcast)
	return b, ethernet.Broadcast, err
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
