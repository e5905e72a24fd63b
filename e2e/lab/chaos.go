package lab

// Faults for the lab: a frozen speaker, a dead kube-proxy, partitions
// between nodes, a foreign device that answers for an address, and a watch
// on the wire of who answers for an address.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// SpeakerPIDs returns the process IDs of node's speaker: the entrypoint
// the lab started (installed from the manifests: the container of
// ContainerProcName, SpeakerName(node)) and any process it forked.
func (l *Lab) SpeakerPIDs(node string) ([]int, error) {
	p, ok := l.Proc(SpeakerName(node))
	if !ok || !p.Alive() {
		return nil, fmt.Errorf("the speaker of %s is not running", node)
	}
	return append([]int{p.PID}, descendants(p.PID)...), nil
}

// descendants lists the processes below pid, children first.
func descendants(pid int) []int {
	var out []int
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
				out = append(out, descendants(c)...)
			}
		}
	}
	return out
}

// FreezeSpeaker stops node's speaker with SIGSTOP, as a node that hangs
// (a long GC pause, a VM paused by its host) would: it sends nothing and
// answers nothing, its sockets stay open. It returns once the kernel has
// stopped the process. The kubelet's liveness probe (10 s × 3) lets a
// short freeze pass.
func (l *Lab) FreezeSpeaker(node string) error {
	pids, err := l.SpeakerPIDs(node)
	if err != nil {
		return fmt.Errorf("freeze: %w", err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			return fmt.Errorf("freeze %s's speaker (pid %d): %w", node, pid, err)
		}
	}
	for deadline := time.Now().Add(time.Second); ; time.Sleep(time.Millisecond) {
		if procState(pids[0]) == "T" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("freeze %s's speaker (pid %d): still in state %q after 1 s", node, pids[0], procState(pids[0]))
		}
	}
}

// ThawSpeaker lets a frozen speaker run again (SIGCONT).
func (l *Lab) ThawSpeaker(node string) error {
	pids, err := l.SpeakerPIDs(node)
	if err != nil {
		return fmt.Errorf("thaw: %w", err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			return fmt.Errorf("thaw %s's speaker (pid %d): %w", node, pid, err)
		}
	}
	return nil
}

// procState is the state letter of /proc/<pid>/stat ("R", "S", "T", ...).
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

// kubeProxyName is the lab process name of node's kube-proxy.
func kubeProxyName(node string) string { return "kube-proxy-" + node }

// kubeProxyArgv is the command line of n's kube-proxy (startProxies could
// build its argv here too).
func (l *Lab) kubeProxyArgv(n Node) []string {
	return []string{l.Bin("kube-proxy"),
		"--kubeconfig=" + l.nodeKubeconfig(n), "--hostname-override=" + n.Name,
		"--proxy-mode=" + l.ProxyMode, "--nodeport-addresses=primary", "--cluster-cidr=" + strings.Join(ClusterCIDRs, ","),
		"--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0",
		"--healthz-bind-address=0.0.0.0:10256", "--metrics-bind-address=127.0.0.1:10249"}
}

// StopKubeProxy kills node's kube-proxy (SIGKILL) and returns once it is
// gone. The rules it programmed stay, as when the process dies; its
// /healthz stops answering.
func (l *Lab) StopKubeProxy(ctx context.Context, node string) error {
	name := kubeProxyName(node)
	p, ok := l.Proc(name)
	if !ok || !p.Alive() {
		return fmt.Errorf("stop %s: not running", name)
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	for p.Alive() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("stop %s: %w", name, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	l.ForgetProcess(p)
	return nil
}

// StartKubeProxy starts node's kube-proxy again, with the flags the lab
// started it with, and waits until its /healthz answers 200. A running
// kube-proxy is left alone (and waited for).
func (l *Lab) StartKubeProxy(ctx context.Context, node string) error {
	n, ok := l.Node(node)
	if !ok {
		return fmt.Errorf("start kube-proxy: no node %q", node)
	}
	name := kubeProxyName(n.Name)
	if p, ok := l.Proc(name); !ok || !p.Alive() {
		if ok {
			l.ForgetProcess(p)
		}
		if _, err := l.start(name, n.NS, nil, l.kubeProxyArgv(n)...); err != nil {
			return err
		}
	}
	return l.waitHTTP(ctx, n.NS, "http://127.0.0.1:10256/healthz", name)
}

// Direction says which packets of a partition are dropped, seen from the
// partitioned node.
type Direction int

const (
	Both Direction = iota // nothing passes between the node and the others
	Out                   // the node's packets to the others are dropped; theirs reach it
	In                    // the others' packets to the node are dropped; its reach them
)

func (d Direction) String() string {
	switch d {
	case Both:
		return "both"
	case Out:
		return "out"
	case In:
		return "in"
	}
	return "Direction(" + strconv.Itoa(int(d)) + ")"
}

// chaosTable is the nftables table of Partition, in the node's namespace.
const chaosTable = "herald_chaos"

// Partition cuts IP traffic between node and the others' lab addresses
// (IPv4 and IPv6) in direction dir, with an nftables table in node's
// namespace that replaces any earlier partition of node. It cuts what the
// node's own processes send and receive (memberlist, the speakers' gossip,
// kube-proxy health checks between nodes); the link layer stays up: ARP
// and neighbour discovery pass, so every node still sees who answers for
// an address on the wire, and traffic the node forwards (to and from pods)
// passes too. The client, the router and the API server are unaffected.
func (l *Lab) Partition(ctx context.Context, node string, others []string, dir Direction) error {
	n, ok := l.Node(node)
	if !ok {
		return fmt.Errorf("partition: no node %q", node)
	}
	if dir != Both && dir != Out && dir != In {
		return fmt.Errorf("partition %s: %v", node, dir)
	}
	var v4, v6 []string
	for _, name := range others {
		o, ok := l.Node(name)
		if !ok {
			return fmt.Errorf("partition %s: no node %q", node, name)
		}
		if o.Name == n.Name {
			return fmt.Errorf("partition %s from itself", node)
		}
		v4, v6 = append(v4, o.IPv4.String()), append(v6, o.IPv6.String())
	}
	if len(others) == 0 {
		return fmt.Errorf("partition %s: from no node", node)
	}
	return nft(ctx, n.NS, partitionRules(v4, v6, dir))
}

// partitionRules is the nftables script of a partition from the peers
// v4 and v6 in direction dir. It first removes an earlier table (the
// "table" line makes the delete safe when there is none), atomically.
func partitionRules(v4, v6 []string, dir Direction) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\n", chaosTable, chaosTable)
	fmt.Fprintf(&b, "table inet %s {\n", chaosTable)
	fmt.Fprintf(&b, "  set peers4 { type ipv4_addr; elements = { %s } }\n", strings.Join(v4, ", "))
	fmt.Fprintf(&b, "  set peers6 { type ipv6_addr; elements = { %s } }\n", strings.Join(v6, ", "))
	chain := func(name, hook, match string) {
		fmt.Fprintf(&b, "  chain %s {\n    type filter hook %s priority raw; policy accept;\n", name, hook)
		b.WriteString("    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert, nd-redirect } accept\n")
		fmt.Fprintf(&b, "    ip %s @peers4 drop\n    ip6 %s @peers6 drop\n  }\n", match, match)
	}
	if dir == Both || dir == In {
		chain("input", "input", "saddr")
	}
	if dir == Both || dir == Out {
		chain("output", "output", "daddr")
	}
	b.WriteString("}\n")
	return b.String()
}

// Heal removes node's partition, if any.
func (l *Lab) Heal(ctx context.Context, node string) error {
	n, ok := l.Node(node)
	if !ok {
		return fmt.Errorf("heal: no node %q", node)
	}
	return nft(ctx, n.NS, fmt.Sprintf("table inet %s\ndelete table inet %s\n", chaosTable, chaosTable))
}

// nft runs an nftables script inside ns.
func nft(ctx context.Context, ns, script string) error {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %w: %s", ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Foreign is a host on the lab bridge that runs no speaker: a device
// that may claim an address of a pool by mistake.
type Foreign struct {
	NS  string // its network namespace
	Dev string // its interface on the bridge, inside NS
	MAC string // Dev's hardware address
}

// AddForeignHost puts a namespace <prefix>-<name> on the lab bridge, like
// the client but with no address of its own (ForeignClaim gives it one).
// A leftover host of that name is replaced; Down removes it with the lab,
// RemoveForeignHost before.
func (l *Lab) AddForeignHost(ctx context.Context, name string) (Foreign, error) {
	if len(name) > 15 || name == "" || strings.ContainsAny(name, "/ ") {
		return Foreign{}, fmt.Errorf("foreign host %q: want a name of 1 to 15 characters (it names the bridge port)", name)
	}
	if slices.Contains([]string{"net", "cp", "client", "router", "ext", "br0"}, name) || strings.HasPrefix(name, "node") {
		return Foreign{}, fmt.Errorf("foreign host %q: the lab uses that name", name)
	}
	f := Foreign{NS: l.nsName(name), Dev: "eth0"}
	_ = l.RemoveForeignHost(ctx, f)
	if _, err := run(ctx, "ip", "netns", "add", f.NS); err != nil {
		return Foreign{}, err
	}
	// No DAD: a claimed IPv6 address is usable at once, as the nodes' are.
	if _, err := inNS(ctx, f.NS, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
		"net.ipv6.conf.default.accept_ra=0"); err != nil {
		_ = l.RemoveForeignHost(ctx, f)
		return Foreign{}, err
	}
	if err := ipBatch(ctx, l.NetNS(), []string{
		fmt.Sprintf("link add %s type veth peer name %s netns %s", name, f.Dev, f.NS),
		fmt.Sprintf("link set %s master br0 up", name),
	}); err != nil {
		_ = l.RemoveForeignHost(ctx, f)
		return Foreign{}, err
	}
	if err := ipBatch(ctx, f.NS, []string{"link set lo up", "link set " + f.Dev + " up"}); err != nil {
		_ = l.RemoveForeignHost(ctx, f)
		return Foreign{}, err
	}
	mac, err := l.MAC(ctx, f.NS, f.Dev)
	if err != nil {
		_ = l.RemoveForeignHost(ctx, f)
		return Foreign{}, err
	}
	f.MAC = strings.ToLower(mac)
	return f, nil
}

// RemoveForeignHost deletes the host's namespace (and so its bridge port).
func (l *Lab) RemoveForeignHost(ctx context.Context, f Foreign) error {
	if _, err := os.Stat(filepath.Join(netnsDir, f.NS)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	_, err := run(ctx, "ip", "netns", "delete", f.NS)
	return err
}

// ForeignClaim puts addr on the foreign host (a /32, or a /128 without
// DAD), so its kernel answers ARP or neighbour solicitations for addr
// from f.MAC, and announces it as a device taking an address does: two
// gratuitous ARP requests (IPv4) or two unsolicited neighbour
// advertisements with the override flag to all nodes (IPv6), 100 ms apart.
func (l *Lab) ForeignClaim(ctx context.Context, f Foreign, addr netip.Addr) error {
	addr = addr.Unmap()
	if _, err := inNS(ctx, f.NS, slices.Concat([]string{"ip", "addr", "add", hostPrefix(addr), "dev", f.Dev}, nodad(addr))...); err != nil {
		return fmt.Errorf("foreign claim %s: %w", addr, err)
	}
	mac, err := net.ParseMAC(f.MAC)
	if err != nil {
		return fmt.Errorf("foreign claim %s: %w", addr, err)
	}
	err = WithNS(f.NS, func() error {
		ifi, err := net.InterfaceByName(f.Dev)
		if err != nil {
			return err
		}
		if addr.Is4() {
			return gratuitousARP(ctx, ifi, mac, addr)
		}
		return unsolicitedNA(ctx, ifi, mac, addr)
	})
	if err != nil {
		return fmt.Errorf("foreign claim %s: announce: %w", addr, err)
	}
	return nil
}

// ForeignRelease takes addr off the foreign host: it stops answering for
// it (and announces nothing). Releasing an address it does not hold is
// not an error.
func (l *Lab) ForeignRelease(ctx context.Context, f Foreign, addr netip.Addr) error {
	addr = addr.Unmap()
	out, err := inNS(ctx, f.NS, "ip", "-o", "addr", "show", "dev", f.Dev)
	if err != nil {
		return fmt.Errorf("foreign release %s: %w", addr, err)
	}
	if !strings.Contains(out, " "+hostPrefix(addr)+" ") {
		return nil
	}
	if _, err := inNS(ctx, f.NS, "ip", "addr", "del", hostPrefix(addr), "dev", f.Dev); err != nil {
		return fmt.Errorf("foreign release %s: %w", addr, err)
	}
	return nil
}

func hostPrefix(a netip.Addr) string { return netip.PrefixFrom(a, a.BitLen()).String() }

func nodad(a netip.Addr) []string {
	if a.Is6() {
		return []string{"nodad"}
	}
	return nil
}

// announcements is how many announcements ForeignClaim sends, and how far apart.
const (
	announcements   = 2
	announceSpacing = 100 * time.Millisecond
)

// gratuitousARP broadcasts ARP requests whose sender and target are addr
// (RFC 5227's announcement) from mac.
func gratuitousARP(ctx context.Context, ifi *net.Interface, mac net.HardwareAddr, addr netip.Addr) error {
	c, err := arp.Dial(ifi)
	if err != nil {
		return err
	}
	defer c.Close()
	p, err := arp.NewPacket(arp.OperationRequest, mac, addr, make(net.HardwareAddr, 6), addr)
	if err != nil {
		return err
	}
	return repeat(ctx, func() error { return c.WriteTo(p, ethernet.Broadcast) })
}

// unsolicitedNA sends neighbour advertisements for addr with the override
// flag and mac as target link-layer address to all nodes (RFC 4861 §7.2.6).
func unsolicitedNA(ctx context.Context, ifi *net.Interface, mac net.HardwareAddr, addr netip.Addr) error {
	c, err := listenICMP6(ifi, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	na := &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: addr,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}},
	}
	return repeat(ctx, func() error { return c.send(na, netip.IPv6LinkLocalAllNodes()) })
}

// icmp6 is a raw ICMPv6 socket that sends neighbour discovery from src on
// one interface. Unlike ndp.Conn it names the interface by index in each
// packet's control message, never by a zone: Go caches zone names per
// process, and the lab's namespaces each have an eth0 of another index.
type icmp6 struct {
	*ipv6.PacketConn
	cm *ipv6.ControlMessage
}

func listenICMP6(ifi *net.Interface, src netip.Addr) (*icmp6, error) {
	ic, err := icmp.ListenPacket("ip6:ipv6-icmp", src.String())
	if err != nil {
		return nil, err
	}
	pc := ic.IPv6PacketConn()
	if err := errors.Join(pc.SetHopLimit(ndp.HopLimit), pc.SetMulticastHopLimit(ndp.HopLimit), pc.SetChecksum(true, 2)); err != nil {
		ic.Close()
		return nil, err
	}
	return &icmp6{PacketConn: pc, cm: &ipv6.ControlMessage{HopLimit: ndp.HopLimit, Src: src.AsSlice(), IfIndex: ifi.Index}}, nil
}

func (c *icmp6) send(m ndp.Message, dst netip.Addr) error {
	b, err := ndp.MarshalMessage(m)
	if err != nil {
		return err
	}
	_, err = c.WriteTo(b, c.cm, &net.IPAddr{IP: dst.AsSlice()})
	return err
}

// read returns the next ND message; nil for another ICMPv6 message.
func (c *icmp6) read(b []byte) (ndp.Message, error) {
	n, _, _, err := c.ReadFrom(b)
	if err != nil {
		return nil, err
	}
	m, err := ndp.ParseMessage(b[:n])
	if err != nil {
		return nil, nil
	}
	return m, nil
}

func repeat(ctx context.Context, send func() error) error {
	for i := range announcements {
		if i > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(announceSpacing):
			}
		}
		if err := send(); err != nil {
			return err
		}
	}
	return nil
}

// Round is one request of an AnswerWatch: when it was sent and the MACs
// (lower case, sorted) that answered it before the next one was sent.
type Round struct {
	At   time.Time
	MACs []string
}

// answer is one reply an AnswerWatch saw.
type answer struct {
	at  time.Time
	mac string
}

// AnswerWatch asks from the client who has an address at a steady pace and
// records who answers. See WatchAnswers.
type AnswerWatch struct {
	Addr  netip.Addr
	Every time.Duration

	cancel context.CancelFunc
	close  func() error // the socket
	wg     sync.WaitGroup

	mu      sync.Mutex
	rounds  []Round // completed
	current *Round  // collecting answers, nil before the first request
	answers []answer
	err     error // why the watch ended early
}

// WatchAnswers sends an ARP request (a neighbour solicitation for IPv6)
// for addr from the client's eth0 every `every`, and records which MACs
// answer each (the answers seen before the next request). Answers to the
// client's own requests in that time count too: they are answers on the
// wire all the same. The answers reach the client's kernel as any would:
// Linux lets an ARP reply or an override NA for addr replace its entry
// (after locktime, 1 s, for ARP), so while two answer the client follows
// the watch's latest answer as it would its own. One watch per address
// at a time: two would count each other's answers. A reply that comes
// later than `every` counts for the next request. Stop ends it (as does ctx).
func (l *Lab) WatchAnswers(ctx context.Context, addr netip.Addr, every time.Duration) (*AnswerWatch, error) {
	addr = addr.Unmap()
	if every <= 0 {
		return nil, fmt.Errorf("watch %s: every %v", addr, every)
	}
	w := &AnswerWatch{Addr: addr, Every: every}
	var (
		ask  func() error
		read func() (answer, bool, error)
	)
	err := WithNS(l.ClientNS(), func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		if addr.Is4() {
			c, err := arp.Dial(ifi)
			if err != nil {
				return err
			}
			me := Client4
			w.close = c.Close
			ask = func() error { return c.Request(addr) }
			read = func() (answer, bool, error) {
				p, _, err := c.Read()
				if err != nil {
					return answer{}, false, err
				}
				ok := p.Operation == arp.OperationReply && p.SenderIP == addr && p.TargetIP == me
				return answer{at: time.Now(), mac: strings.ToLower(p.SenderHardwareAddr.String())}, ok, nil
			}
			return nil
		}
		c, err := listenICMP6(ifi, Client6)
		if err != nil {
			return err
		}
		var f ipv6.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv6.ICMPTypeNeighborAdvertisement)
		if err := c.SetICMPFilter(&f); err != nil {
			c.Close()
			return err
		}
		group, err := ndp.SolicitedNodeMulticast(addr)
		if err != nil {
			c.Close()
			return err
		}
		ns := &ndp.NeighborSolicitation{TargetAddress: addr, Options: []ndp.Option{
			&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr},
		}}
		buf := make([]byte, ifi.MTU)
		w.close = c.Close
		ask = func() error { return c.send(ns, group) }
		read = func() (answer, bool, error) {
			m, err := c.read(buf)
			if err != nil {
				return answer{}, false, err
			}
			na, ok := m.(*ndp.NeighborAdvertisement)
			if !ok || !na.Solicited || na.TargetAddress.WithZone("") != addr {
				return answer{}, false, nil
			}
			a := answer{at: time.Now(), mac: "?"} // a solicited NA to a multicast NS must carry the option
			for _, o := range na.Options {
				if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
					a.mac = strings.ToLower(lla.Addr.String())
				}
			}
			return a, true, nil
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("watch %s from %s: %w", addr, l.ClientNS(), err)
	}
	ctx, w.cancel = context.WithCancel(ctx)
	w.wg.Go(func() {
		for {
			a, ok, err := read()
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
					w.fail(fmt.Errorf("read: %w", err))
				}
				return
			}
			if ok {
				w.record(a)
			}
		}
	})
	w.wg.Go(func() {
		defer w.close() // ends the reader
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			w.next(time.Now())
			if err := ask(); err != nil {
				w.fail(fmt.Errorf("request: %w", err))
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	return w, nil
}

// Stop ends the watch; the request still collecting answers is dropped.
// It may be called again.
func (w *AnswerWatch) Stop() {
	w.cancel()
	w.wg.Wait()
}

// Err is why the watch ended on its own, or nil.
func (w *AnswerWatch) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *AnswerWatch) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = fmt.Errorf("watch %s: %w", w.Addr, err)
	}
}

// next completes the current request and starts one sent at t.
func (w *AnswerWatch) next(t time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.current != nil {
		slices.Sort(w.current.MACs)
		w.rounds = append(w.rounds, *w.current)
	}
	w.current = &Round{At: t}
}

func (w *AnswerWatch) record(a answer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.answers = append(w.answers, a)
	if w.current != nil && !slices.Contains(w.current.MACs, a.mac) {
		w.current.MACs = append(w.current.MACs, a.mac)
	}
}

// Rounds returns the completed requests sent in [from, to); a zero to
// means no end.
func (w *AnswerWatch) Rounds(from, to time.Time) []Round {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Round
	for _, r := range w.rounds {
		if !r.At.Before(from) && (to.IsZero() || r.At.Before(to)) {
			out = append(out, Round{At: r.At, MACs: slices.Clone(r.MACs)})
		}
	}
	return out
}

// MultiSpans returns, longest first, each span during which two or more
// MACs answered consecutive requests: from the first such request to the
// last (a single request answered by two is a span of 0).
func (w *AnswerWatch) MultiSpans() []time.Duration {
	return MultiSpans(w.Rounds(time.Time{}, time.Time{}))
}

// MultiSpans is AnswerWatch.MultiSpans over rounds, in order of time.
func MultiSpans(rounds []Round) []time.Duration {
	var spans []time.Duration
	var first *Round
	for i := range rounds {
		r := &rounds[i]
		if len(r.MACs) >= 2 {
			if first == nil {
				first = r
			}
			if i == len(rounds)-1 || len(rounds[i+1].MACs) < 2 {
				spans = append(spans, r.At.Sub(first.At))
				first = nil
			}
		}
	}
	slices.SortStableFunc(spans, func(a, b time.Duration) int { return cmp.Compare(b, a) })
	return spans
}

// Answerers counts the answers seen in [from, to) by MAC; a zero to means
// no end.
func (w *AnswerWatch) Answerers(from, to time.Time) map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]int{}
	for _, a := range w.answers {
		if !a.at.Before(from) && (to.IsZero() || a.at.Before(to)) {
			out[a.mac]++
		}
	}
	return out
}

// Last returns the MACs that answered the latest completed request (nil
// before one completed, or when nobody answered).
func (w *AnswerWatch) Last() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.rounds) == 0 {
		return nil
	}
	return slices.Clone(w.rounds[len(w.rounds)-1].MACs)
}
