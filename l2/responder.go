package l2

import (
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/packet"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// responder answers the requests read from one socket, with the MAC its
// interface had when the socket was opened.
type responder struct {
	a    *Announcer
	key  lkey
	conn net.PacketConn
	mac  net.HardwareAddr

	requests, replies, errors, conflicts prometheus.Counter
}

func (a *Announcer) newResponder(k lkey, conn net.PacketConn, mac net.HardwareAddr) *responder {
	p, i := string(k.proto), k.iface
	return &responder{
		a: a, key: k, conn: conn, mac: mac,
		requests:  a.m.requests.WithLabelValues(p, i),
		replies:   a.m.replies.WithLabelValues(p, i),
		errors:    a.m.errors.WithLabelValues(p, i, "write"),
		conflicts: a.m.conflicts.WithLabelValues(p, i),
	}
}

// answer replies to a request for target if target is answered on this
// listener right now. The check and the reply happen under the read lock
// that Set's publication waits for.
// A request sent to the group (broadcast ARP, multicast NS) is not answered
// for a quiet address (SetQuiet): only a neighbour checking its cached
// entry, directly to this MAC, still gets an answer.
func (r *responder) answer(target netip.Addr, direct bool, reply func() ([]byte, net.HardwareAddr, error)) {
	r.a.answerMu.RLock()
	defer r.a.answerMu.RUnlock()
	if !has(r.a.answer[r.key], target) || (!direct && r.a.quiet[target]) {
		return
	}
	r.requests.Inc()
	frame, dst, err := reply()
	if err == nil {
		err = send(r.conn, frame, dst)
	}
	if err != nil {
		r.errors.Inc()
		r.a.log.Debug("cannot reply", zap.String("iface", r.key.iface), zap.String("proto", string(r.key.proto)),
			zap.Stringer("ip", target), zap.Error(err))
		return
	}
	r.replies.Inc()
}

// send writes one Ethernet frame to dst, within writeTimeout.
func send(conn net.PacketConn, frame []byte, dst net.HardwareAddr) error {
	if err := conn.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	_, err := conn.WriteTo(frame, &packet.Addr{HardwareAddr: dst})
	return err
}
