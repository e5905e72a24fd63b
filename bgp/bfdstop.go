package bgp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"go.uber.org/zap"
)

// A planned stop takes every BFD session administratively down (RFC 5880
// 6.8.16) before the process exits: GoBGP's BFD just falls silent, which a
// router reads as a forwarding failure (RFC 5882 3.2: AdminDown is not one)
// and then drops the routes that graceful restart was meant to keep.

const (
	bfdVersion      = 1
	bfdDiagAdmin    = 7 // Administratively Down
	bfdStateAdmin   = 0 // AdminDown
	bfdPacketLen    = 24
	bfdSourceLow    = 49152 // RFC 5881 4: the source port range
	bfdSourceHigh   = 65535
	bfdTTL          = 255 // RFC 5881 5 (GTSM)
	bfdAdminDownFor = time.Second
)

// bfdSession is one Up BFD session as GoBGP holds it.
type bfdSession struct {
	peer, local    netip.Addr
	myDisc, yours  uint32
	tx, rx         time.Duration
	detectMultiple uint8
}

// adminDown encodes an AdminDown control packet of s (RFC 5880 4.1): no
// Poll, Final, Control Plane Independent (GoBGP's BFD lives and dies with
// BGP, as RFC 5882 4.3.1 expects a restarting router to be told),
// Authentication, Demand or Multipoint bit.
func (s bfdSession) adminDown() []byte {
	b := make([]byte, bfdPacketLen)
	b[0] = bfdVersion<<5 | bfdDiagAdmin
	b[1] = bfdStateAdmin << 6
	b[2] = s.detectMultiple
	b[3] = bfdPacketLen
	binary.BigEndian.PutUint32(b[4:], s.myDisc)
	binary.BigEndian.PutUint32(b[8:], s.yours)
	binary.BigEndian.PutUint32(b[12:], uint32(s.tx/time.Microsecond))
	binary.BigEndian.PutUint32(b[16:], uint32(s.rx/time.Microsecond))
	return b // Required Min Echo RX Interval: 0, no echo
}

// upBFDSessions lists the BFD sessions that are Up, with what an AdminDown
// needs. Called with setMu held, before GoBGP stops.
func (s *Server) upBFDSessions(ctx context.Context) []bfdSession {
	var out []bfdSession
	byAddr := map[netip.Addr]*BFD{}
	for _, p := range s.applied.Peers {
		if b := s.bfdOn[p.Name]; b != nil {
			byAddr[p.Address] = b
		}
	}
	if len(byAddr) == 0 {
		return nil
	}
	err := s.bs.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		st := p.GetState().GetBfdState()
		addr, err := netip.ParseAddr(p.GetConf().GetNeighborAddress())
		if err != nil || st == nil || st.GetSessionState() != api.BfdSessionState_BFD_SESSION_STATE_UP {
			return
		}
		local, err := netip.ParseAddr(p.GetTransport().GetLocalAddress())
		if err != nil {
			return
		}
		b := byAddr[addr]
		if b == nil {
			return
		}
		out = append(out, bfdSession{
			peer: addr, local: local, myDisc: st.GetLocalDiscriminator(), yours: st.GetRemoteDiscriminator(),
			tx: b.TransmitInterval, rx: b.ReceiveInterval, detectMultiple: b.DetectMultiplier,
		})
	})
	if err != nil {
		s.log.Warn("cannot list BFD sessions: stopping without AdminDown", zap.Error(err))
	}
	return out
}

// sendAdminDown sends each session's AdminDown every transmit interval for
// a detection time (at most bfdAdminDownFor), so that a router that misses
// one still hears it before it would time the session out. first is
// closed once every session's first AdminDown is out (or could not be
// sent): the BGP sessions close after it. It returns when all are sent.
func sendAdminDown(ctx context.Context, sessions []bfdSession, first chan<- struct{}, log *zap.Logger) {
	var wg, firsts sync.WaitGroup
	for _, bs := range sessions {
		firsts.Add(1)
		wg.Go(func() {
			if err := bs.sendAdminDown(ctx, firsts.Done); err != nil {
				log.Warn("BFD AdminDown not sent", zap.Stringer("peer", bs.peer), zap.Error(err))
				return
			}
			log.Info("BFD session taken administratively down", zap.Stringer("peer", bs.peer))
		})
	}
	firsts.Wait()
	close(first)
	wg.Wait()
}

// sendAdminDown sends s's AdminDowns; sent is called once, after the
// first (or on failure).
func (s bfdSession) sendAdminDown(ctx context.Context, sent func()) error {
	once := sync.OnceFunc(sent)
	defer once()
	c, err := dialBFD(ctx, s.local, s.peer)
	if err != nil {
		return err
	}
	defer c.Close()
	every := max(s.tx, 10*time.Millisecond)
	n := min(int(s.detectMultiple)+1, int(bfdAdminDownFor/every)+1)
	pkt := s.adminDown()
	for i := range n {
		if i > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(every):
			}
		}
		if _, err := c.Write(pkt); err != nil {
			return fmt.Errorf("send to %s: %w", s.peer, err)
		}
		once()
	}
	return nil
}

// dialBFD opens a UDP socket from local, with a source port in RFC 5881's
// range and TTL 255, to the peer's BFD port.
func dialBFD(ctx context.Context, local, peer netip.Addr) (net.Conn, error) {
	d := net.Dialer{Control: func(network, address string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if local.Is4() {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_TTL, bfdTTL)
			} else {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IPV6, syscall.IPV6_UNICAST_HOPS, bfdTTL)
			}
		})
		return errors.Join(err, serr)
	}}
	var err error
	for range 16 { // a port in use: try another
		port := bfdSourceLow + rand.IntN(bfdSourceHigh-bfdSourceLow+1)
		d.LocalAddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, uint16(port)))
		var c net.Conn
		c, err = d.DialContext(ctx, "udp", netip.AddrPortFrom(peer, bfdPort).String())
		if err == nil {
			return c, nil
		}
	}
	return nil, fmt.Errorf("BFD socket %s -> %s: %w", local, peer, err)
}

// silenceBFD stops GoBGP's own BFD for the sessions about to be taken
// down, so that no Up follows their AdminDown (changing only BFD keeps the
// BGP session, see syncBFD).
func (s *Server) silenceBFD(ctx context.Context, sessions []bfdSession) {
	for _, bs := range sessions {
		for _, p := range s.applied.Peers {
			if p.Address != bs.peer {
				continue
			}
			q := p
			q.BFD = nil
			if _, err := s.bs.UpdatePeer(ctx, &api.UpdatePeerRequest{Peer: apiPeer(q, false, false)}); err != nil {
				s.log.Warn("BFD not stopped before its AdminDown", zap.String("peer", p.Name), zap.Error(err))
			}
		}
	}
}
