package bgp

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"
)

// GoBGP does not tell its BFD discriminators (its API leaves them zero),
// and a router discards an AdminDown that does not name its session (FRR:
// "'remote discriminator' is zero"). The router's own packets carry both:
// its discriminator, and ours as Your Discriminator. learnDiscriminators
// reads them off the wire through a raw UDP socket (the speaker has
// CAP_NET_RAW for ARP already), which sees a copy of every datagram.

// learnDiscriminators fills in the discriminators of the sessions that lack
// them from the next packet each router sends, waiting up to wait. It
// returns the sessions it could complete.
func learnDiscriminators(ctx context.Context, sessions []bfdSession, wait time.Duration, log *zap.Logger) []bfdSession {
	var missing []int
	for i, s := range sessions {
		if s.myDisc == 0 || s.yours == 0 {
			missing = append(missing, i)
		}
	}
	if len(missing) == 0 {
		return sessions
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var mu sync.Mutex
	learned := map[netip.Addr][2]uint32{} // peer → its discriminator, ours
	var wg sync.WaitGroup
	for _, v6 := range []bool{false, true} {
		want := map[netip.Addr]bool{}
		for _, i := range missing {
			if sessions[i].peer.Is6() == v6 {
				want[sessions[i].peer] = true
			}
		}
		if len(want) == 0 {
			continue
		}
		network := "ip4:udp"
		if v6 {
			network = "ip6:udp"
		}
		c, err := net.ListenPacket(network, "")
		if err != nil {
			log.Warn("cannot read BFD discriminators: no AdminDown", zap.Error(err))
			continue
		}
		stop := context.AfterFunc(ctx, func() { c.Close() })
		wg.Go(func() {
			defer stop()
			defer c.Close()
			buf := make([]byte, 256)
			for len(want) > 0 {
				n, from, err := c.ReadFrom(buf)
				if err != nil {
					return
				}
				peer, theirs, ours, ok := parseBFDDatagram(from, buf[:n])
				if !ok || !want[peer] {
					continue
				}
				delete(want, peer)
				mu.Lock()
				learned[peer] = [2]uint32{theirs, ours}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	var out []bfdSession
	for _, s := range sessions {
		if d, ok := learned[s.peer]; ok {
			s.yours, s.myDisc = d[0], d[1]
		}
		if s.myDisc != 0 && s.yours != 0 {
			out = append(out, s)
		} else {
			log.Warn("no BFD packet from the router in time: stopping without AdminDown", zap.Stringer("peer", s.peer))
		}
	}
	return out
}

// parseBFDDatagram reads a UDP datagram (header and payload, as a raw
// socket returns it) carrying a BFD control packet to the BFD port (RFC
// 5881): the sender, its discriminator, and the one it has for us.
func parseBFDDatagram(from net.Addr, b []byte) (peer netip.Addr, theirs, ours uint32, ok bool) {
	ip, isIP := from.(*net.IPAddr)
	if !isIP || len(b) < 8+bfdPacketLen || binary.BigEndian.Uint16(b[2:]) != bfdPort {
		return netip.Addr{}, 0, 0, false
	}
	peer, ok = netip.AddrFromSlice(ip.IP)
	bfd := b[8:]
	if !ok || bfd[0]>>5 != bfdVersion || int(bfd[3]) < bfdPacketLen {
		return netip.Addr{}, 0, 0, false
	}
	return peer.Unmap(), binary.BigEndian.Uint32(bfd[4:]), binary.BigEndian.Uint32(bfd[8:]), true
}
