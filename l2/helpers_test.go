package l2_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/heraldlb/herald/l2"
)

// Addresses and MACs of the fake link: interfaces eth0, eth1, ... with MAC
// 02:00:00:00:01:0N, and a peer on it.
var (
	peerMAC = mustMAC("02:00:00:00:00:99")
	peer4   = netip.MustParseAddr("198.51.100.2")
	peer6   = netip.MustParseAddr("2001:db8:1::2")
	vip4    = netip.MustParseAddr("198.51.100.10")
	vip4b   = netip.MustParseAddr("198.51.100.11")
	vip6    = netip.MustParseAddr("2001:db8:1::10")
	vip6b   = netip.MustParseAddr("2001:db8:1::11")
)

func mustMAC(s string) net.HardwareAddr {
	mac, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return mac
}

func ifMAC(name string) net.HardwareAddr {
	var n int
	fmt.Sscanf(name, "eth%d", &n)
	return net.HardwareAddr{0x02, 0, 0, 0, 0x01, byte(n)}
}

// fakeNet is a set of fake interfaces whose sockets the tests drive.
type fakeNet struct {
	mu      sync.Mutex
	ifaces  map[string]*net.Interface
	openErr map[string]error
	conns   map[string][]*fakeConn // "eth0/arp" → every socket opened, latest last
	groups  map[string]*fakeGroups // "eth0" → memberships of the latest NDP socket
}

func newFakeNet(names ...string) *fakeNet {
	n := &fakeNet{ifaces: map[string]*net.Interface{}, openErr: map[string]error{}, conns: map[string][]*fakeConn{}, groups: map[string]*fakeGroups{}}
	for i, name := range names {
		n.ifaces[name] = &net.Interface{Index: i + 2, Name: name, MTU: 1500, HardwareAddr: ifMAC(name),
			Flags: net.FlagUp | net.FlagBroadcast | net.FlagMulticast}
	}
	return n
}

// failOpen makes opening sockets on name fail (err nil: succeed again).
func (n *fakeNet) failOpen(name string, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.openErr[name] = err
}

func (n *fakeNet) sockets() l2.Sockets {
	return l2.Sockets{
		InterfaceByName: func(name string) (*net.Interface, error) {
			n.mu.Lock()
			defer n.mu.Unlock()
			ifi, ok := n.ifaces[name]
			if !ok {
				return nil, fmt.Errorf("route ip+net: no such network interface")
			}
			c := *ifi
			return &c, nil
		},
		ListenARP: func(ifi *net.Interface) (net.PacketConn, error) {
			return n.listen(ifi.Name, "arp")
		},
		ListenNDP: func(ifi *net.Interface) (net.PacketConn, l2.Groups, error) {
			c, err := n.listen(ifi.Name, "ndp")
			if err != nil {
				return nil, nil, err
			}
			g := &fakeGroups{joined: map[netip.Addr]bool{}}
			n.mu.Lock()
			n.groups[ifi.Name] = g
			n.mu.Unlock()
			return c, g, nil
		},
	}
}

func (n *fakeNet) listen(name, proto string) (*fakeConn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.openErr[name]; err != nil {
		return nil, err
	}
	c := &fakeConn{in: make(chan []byte), readErr: make(chan error), closed: make(chan struct{})}
	n.conns[name+"/"+proto] = append(n.conns[name+"/"+proto], c)
	return c, nil
}

// conn returns the latest socket of proto ("arp" or "ndp") on name.
func (n *fakeNet) conn(t *testing.T, name, proto string) *fakeConn {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	cs := n.conns[name+"/"+proto]
	if len(cs) == 0 {
		t.Fatalf("no %s socket was opened on %s", proto, name)
	}
	return cs[len(cs)-1]
}

// opened counts the sockets of proto opened on name.
func (n *fakeNet) opened(name, proto string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.conns[name+"/"+proto])
}

// joined lists the groups the latest NDP socket on name is in.
func (n *fakeNet) joined(name string) []string {
	n.mu.Lock()
	g := n.groups[name]
	n.mu.Unlock()
	if g == nil {
		return nil
	}
	return g.list()
}

// fakeConn is a packet socket: frames pushed into in are read by the
// Announcer, frames it writes are kept in sent.
type fakeConn struct {
	in      chan []byte
	readErr chan error
	closed  chan struct{}
	once    sync.Once

	mu   sync.Mutex
	sent []sentFrame
}

type sentFrame struct {
	at    time.Time
	dst   net.HardwareAddr
	frame []byte
}

func (c *fakeConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case f := <-c.in:
		return copy(b, f), &packet.Addr{HardwareAddr: net.HardwareAddr(f[6:12])}, nil
	case err := <-c.readErr:
		return 0, nil, err
	case <-c.closed:
		return 0, nil, net.ErrClosed
	}
}

func (c *fakeConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.isClosed() {
		return 0, net.ErrClosed
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent = append(c.sent, sentFrame{at: time.Now(), dst: addr.(*packet.Addr).HardwareAddr, frame: bytes.Clone(b)})
	return len(b), nil
}

func (c *fakeConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *fakeConn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

func (c *fakeConn) LocalAddr() net.Addr              { return &packet.Addr{} }
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }
func (c *fakeConn) failRead(err error)               { c.readErr <- err }

// push hands frame to the Announcer's reader and waits until it has been
// handled.
func (c *fakeConn) push(t *testing.T, frame []byte) {
	t.Helper()
	select {
	case c.in <- frame:
	case <-c.closed:
		t.Fatalf("push to a closed socket")
	}
	synctest.Wait() // the reader has handled it and waits for the next
}

// count is how many frames were written and not taken yet.
func (c *fakeConn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sent)
}

// take returns and forgets what was written so far.
func (c *fakeConn) take() []sentFrame {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sent
	c.sent = nil
	return s
}

type fakeGroups struct {
	mu     sync.Mutex
	joined map[netip.Addr]bool
}

func (g *fakeGroups) JoinGroup(group netip.Addr) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.joined[group] {
		return errors.New("address already in use") // as the kernel says
	}
	g.joined[group] = true
	return nil
}

func (g *fakeGroups) LeaveGroup(group netip.Addr) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.joined[group] {
		return errors.New("cannot assign requested address")
	}
	delete(g.joined, group)
	return nil
}

func (g *fakeGroups) Close() error { return nil }

func (g *fakeGroups) list() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for group := range g.joined {
		out = append(out, group.String())
	}
	slices.Sort(out)
	return out
}

// run starts a in the bubble and stops it when the test ends, failing the
// test if Run does not return nil.
func run(t *testing.T, a *l2.Announcer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	synctest.Wait()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// newAnnouncer builds an Announcer on n with a test logger and registry.
func newAnnouncer(t *testing.T, n *fakeNet, opts l2.Options) (*l2.Announcer, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	opts.Log = zaptest.NewLogger(t)
	opts.Registerer = reg
	return l2.NewWithSockets(opts, n.sockets()), reg
}

// set is a desired set in short: address → interfaces.
func set(pairs ...any) map[netip.Addr][]string {
	out := map[netip.Addr][]string{}
	for i := 0; i < len(pairs); i += 2 {
		out[pairs[i].(netip.Addr)] = pairs[i+1].([]string)
	}
	return out
}

// arpRequest builds an ARP request frame from the peer (or from).
type arpReq struct {
	ethDst, from net.HardwareAddr
	op           arp.Operation
	sender       netip.Addr
	target       netip.Addr
}

func (r arpReq) frame() []byte {
	if r.ethDst == nil {
		r.ethDst = ethernet.Broadcast
	}
	if r.from == nil {
		r.from = peerMAC
	}
	if r.op == 0 {
		r.op = arp.OperationRequest
	}
	if !r.sender.IsValid() {
		r.sender = peer4
	}
	p, err := arp.NewPacket(r.op, r.from, r.sender, ethernet.Broadcast, r.target)
	if err != nil {
		panic(err)
	}
	p.TargetHardwareAddr = make(net.HardwareAddr, 6)
	pb, _ := p.MarshalBinary()
	f := ethernet.Frame{Destination: r.ethDst, Source: r.from, EtherType: ethernet.EtherTypeARP, Payload: pb}
	b, err := f.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return b
}

// arpOut is a written ARP frame, decoded for comparison.
type arpOut struct {
	EthDst, EthSrc string
	Op             arp.Operation
	SHA, SPA       string
	THA, TPA       string
}

func decodeARP(t *testing.T, s sentFrame) arpOut {
	t.Helper()
	var f ethernet.Frame
	var p arp.Packet
	if err := f.UnmarshalBinary(s.frame); err != nil || f.EtherType != ethernet.EtherTypeARP {
		t.Fatalf("not an ARP frame: %x (%v)", s.frame, err)
	}
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		t.Fatalf("bad ARP packet: %v", err)
	}
	if !bytes.Equal(s.dst, f.Destination) {
		t.Errorf("frame to %s written to socket address %s", f.Destination, s.dst)
	}
	return arpOut{EthDst: f.Destination.String(), EthSrc: f.Source.String(), Op: p.Operation,
		SHA: p.SenderHardwareAddr.String(), SPA: p.SenderIP.String(), THA: p.TargetHardwareAddr.String(), TPA: p.TargetIP.String()}
}

// nsReq describes a neighbour solicitation frame; zero fields take the
// usual values of a multicast solicitation from the peer.
type nsReq struct {
	ethDst, from net.HardwareAddr
	src, dst     netip.Addr
	target       netip.Addr
	hopLimit     int // 0: 255
	code         byte
	noSLLA       bool
	zeroLenOpt   bool
	badChecksum  bool
	extraOpts    []byte
}

func (r nsReq) frame() []byte {
	if r.from == nil {
		r.from = peerMAC
	}
	if !r.src.IsValid() {
		r.src = peer6
	}
	group, _ := ndp.SolicitedNodeMulticast(r.target)
	if !r.dst.IsValid() {
		r.dst = group
	}
	if r.ethDst == nil {
		d := r.dst.As16()
		r.ethDst = net.HardwareAddr{0x33, 0x33, d[12], d[13], d[14], d[15]}
	}
	if r.hopLimit == 0 {
		r.hopLimit = 255
	}
	target := r.target.As16()
	icmp := append([]byte{135, r.code, 0, 0, 0, 0, 0, 0}, target[:]...)
	if !r.noSLLA {
		icmp = append(icmp, append([]byte{1, 1}, r.from...)...)
	}
	if r.zeroLenOpt {
		icmp = append(icmp, 14, 0, 0, 0, 0, 0, 0, 0)
	}
	icmp = append(icmp, r.extraOpts...)
	sum := checksum(r.src, r.dst, icmp)
	if r.badChecksum {
		sum ^= 0x0101
	}
	binary.BigEndian.PutUint16(icmp[2:4], sum)
	return ipv6Frame(r.ethDst, r.from, r.src, r.dst, byte(r.hopLimit), icmp)
}

func ipv6Frame(ethDst, ethSrc net.HardwareAddr, src, dst netip.Addr, hop byte, icmp []byte) []byte {
	b := slices.Concat([]byte(ethDst), []byte(ethSrc), []byte{0x86, 0xdd})
	hdr := make([]byte, 40)
	hdr[0] = 0x60
	binary.BigEndian.PutUint16(hdr[4:6], uint16(len(icmp)))
	hdr[6], hdr[7] = 58, hop
	s, d := src.As16(), dst.As16()
	copy(hdr[8:24], s[:])
	copy(hdr[24:40], d[:])
	return slices.Concat(b, hdr, icmp)
}

// checksum is the ICMPv6 checksum of msg (with a zero checksum field).
func checksum(src, dst netip.Addr, msg []byte) uint16 {
	s, d := src.As16(), dst.As16()
	pseudo := slices.Concat(s[:], d[:], binary.BigEndian.AppendUint32(nil, uint32(len(msg))), []byte{0, 0, 0, 58}, msg)
	if len(pseudo)%2 == 1 {
		pseudo = append(pseudo, 0)
	}
	var sum uint32
	for i := 0; i < len(pseudo); i += 2 {
		sum += uint32(pseudo[i])<<8 | uint32(pseudo[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// naOut is a written neighbour advertisement, decoded for comparison.
type naOut struct {
	EthDst, EthSrc              string
	Src, Dst                    string
	HopLimit                    int
	ChecksumOK                  bool
	Router, Solicited, Override bool
	Target                      string
	TLLA                        string
}

func decodeNA(t *testing.T, s sentFrame) naOut {
	t.Helper()
	b := s.frame
	if len(b) < 14+40 || binary.BigEndian.Uint16(b[12:14]) != 0x86dd || b[14+6] != 58 {
		t.Fatalf("not an ICMPv6 frame: %x", b)
	}
	ip := b[14:]
	src, dst := netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
	icmp := ip[40 : 40+int(binary.BigEndian.Uint16(ip[4:6]))]
	m, err := ndp.ParseMessage(icmp)
	if err != nil {
		t.Fatalf("parse NDP: %v", err)
	}
	na, ok := m.(*ndp.NeighborAdvertisement)
	if !ok {
		t.Fatalf("wrote %T, want a neighbour advertisement", m)
	}
	zeroed := slices.Clone(icmp)
	zeroed[2], zeroed[3] = 0, 0
	out := naOut{
		EthDst: net.HardwareAddr(b[0:6]).String(), EthSrc: net.HardwareAddr(b[6:12]).String(),
		Src: src.String(), Dst: dst.String(), HopLimit: int(ip[7]),
		ChecksumOK: checksum(src, dst, zeroed) == binary.BigEndian.Uint16(icmp[2:4]),
		Router:     na.Router, Solicited: na.Solicited, Override: na.Override, Target: na.TargetAddress.String(),
	}
	for _, o := range na.Options {
		if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
			out.TLLA = lla.Addr.String()
		}
	}
	if !bytes.Equal(s.dst, b[0:6]) {
		t.Errorf("frame to %s written to socket address %s", net.HardwareAddr(b[0:6]), s.dst)
	}
	return out
}

// naReq describes a neighbour advertisement frame; zero fields take the
// usual values of an unsolicited advertisement from the peer, carrying its
// MAC as target link-layer address.
type naReq struct {
	ethDst, from net.HardwareAddr
	src, dst     netip.Addr
	target       netip.Addr
	solicited    bool
	tlla         net.HardwareAddr // nil: from
	noTLLA       bool
	hopLimit     int // 0: 255
	badChecksum  bool
}

func (r naReq) frame() []byte {
	if r.from == nil {
		r.from = peerMAC
	}
	if !r.src.IsValid() {
		r.src = r.target
	}
	if !r.dst.IsValid() {
		r.dst = netip.MustParseAddr("ff02::1")
	}
	if r.ethDst == nil {
		d := r.dst.As16()
		r.ethDst = net.HardwareAddr{0x33, 0x33, d[12], d[13], d[14], d[15]}
	}
	if r.hopLimit == 0 {
		r.hopLimit = 255
	}
	if r.tlla == nil {
		r.tlla = r.from
	}
	flags := byte(0x20) // override
	if r.solicited {
		flags |= 0x40
	}
	target := r.target.As16()
	icmp := append([]byte{136, 0, 0, 0, flags, 0, 0, 0}, target[:]...)
	if !r.noTLLA {
		icmp = append(icmp, append([]byte{2, 1}, r.tlla...)...)
	}
	sum := checksum(r.src, r.dst, icmp)
	if r.badChecksum {
		sum ^= 0x0101
	}
	binary.BigEndian.PutUint16(icmp[2:4], sum)
	return ipv6Frame(r.ethDst, r.from, r.src, r.dst, byte(r.hopLimit), icmp)
}

// nsOut is a written neighbour solicitation, decoded for comparison.
type nsOut struct {
	EthDst, EthSrc string
	Src, Dst       string
	HopLimit       int
	ChecksumOK     bool
	Target         string
	SLLA           string
}

func decodeNS(t *testing.T, s sentFrame) nsOut {
	t.Helper()
	b := s.frame
	if len(b) < 14+40 || binary.BigEndian.Uint16(b[12:14]) != 0x86dd || b[14+6] != 58 {
		t.Fatalf("not an ICMPv6 frame: %x", b)
	}
	ip := b[14:]
	src, dst := netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
	icmp := ip[40 : 40+int(binary.BigEndian.Uint16(ip[4:6]))]
	m, err := ndp.ParseMessage(icmp)
	if err != nil {
		t.Fatalf("parse NDP: %v", err)
	}
	ns, ok := m.(*ndp.NeighborSolicitation)
	if !ok {
		t.Fatalf("wrote %T, want a neighbour solicitation", m)
	}
	zeroed := slices.Clone(icmp)
	zeroed[2], zeroed[3] = 0, 0
	out := nsOut{
		EthDst: net.HardwareAddr(b[0:6]).String(), EthSrc: net.HardwareAddr(b[6:12]).String(),
		Src: src.String(), Dst: dst.String(), HopLimit: int(ip[7]),
		ChecksumOK: checksum(src, dst, zeroed) == binary.BigEndian.Uint16(icmp[2:4]),
		Target:     ns.TargetAddress.String(),
	}
	for _, o := range ns.Options {
		if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Source {
			out.SLLA = lla.Addr.String()
		}
	}
	return out
}

// drain returns the conflicts reported so far.
func drain(a *l2.Announcer) []l2.Conflict {
	var out []l2.Conflict
	for {
		select {
		case c := <-a.Conflicts():
			out = append(out, c)
		default:
			return out
		}
	}
}

// metricSum adds up every series of a counter in reg.
func metricSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
