package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BIRD's part of the network plan (Config.BIRD): a second router on the
// lab bridge with an external client of its own behind it.
var (
	BIRD4         = netip.MustParseAddr("198.51.100.4")
	BIRD6         = netip.MustParseAddr("2001:db8:1::4")
	BIRDExtNet4   = netip.MustParsePrefix("198.18.200.0/24")
	BIRDExtNet6   = netip.MustParsePrefix("2001:db8:3::/64")
	BIRDExt4      = netip.MustParseAddr("198.18.200.1")
	BIRDExt6      = netip.MustParseAddr("2001:db8:3::1")
	BIRDExternal4 = netip.MustParseAddr("198.18.200.2")
	BIRDExternal6 = netip.MustParseAddr("2001:db8:3::2")
)

// BIRDASN is the autonomous system BIRD runs in.
const BIRDASN = 64510

// BIRDNS runs BIRD, with one leg on the bridge and one on its external network.
func (l *Lab) BIRDNS() string { return l.nsName("bird") }

// BIRDExternalNS is a client behind BIRD, on 198.18.200.0/24.
func (l *Lab) BIRDExternalNS() string { return l.nsName("bext") }

func (l *Lab) birdDir() string { return filepath.Join(l.Dir, "bird") }

// birdRequirements reports what a lab with BIRD misses on this machine.
func birdRequirements() error {
	for _, tool := range []string{"bird", "birdc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("the lab's BIRD router needs %s (apt-get install bird2)", tool)
		}
	}
	return nil
}

// birdMember is BIRD's port on the lab bridge.
func (l *Lab) birdMember() member {
	return member{ns: l.BIRDNS(), port: "bird", ipv4: BIRD4, ipv6: BIRD6}
}

// birdNodeRoutes send the nodes' answers to BIRD's external client back
// through BIRD (their default route leads to FRR).
func birdNodeRoutes() []string {
	return []string{BIRDExtNet4.String() + " via " + BIRD4.String(), BIRDExtNet6.String() + " via " + BIRD6.String()}
}

// buildBIRDNetwork gives BIRD its external leg and client; the bridge
// port and the nodes' routes come with the rest of the network.
func (l *Lab) buildBIRDNetwork(ctx context.Context) error {
	if _, err := run(ctx, "ip", "netns", "add", l.BIRDExternalNS()); err != nil {
		return err
	}
	if err := ipBatch(ctx, l.BIRDNS(), []string{
		fmt.Sprintf("link add eth1 type veth peer name eth0 netns %s", l.BIRDExternalNS()),
		"link set eth1 up",
		fmt.Sprintf("addr add %s/24 dev eth1", BIRDExt4),
		fmt.Sprintf("addr add %s/64 dev eth1 nodad", BIRDExt6),
	}); err != nil {
		return err
	}
	if err := ipBatch(ctx, l.BIRDExternalNS(), []string{
		"link set lo up", "link set eth0 up",
		fmt.Sprintf("addr add %s/24 dev eth0", BIRDExternal4),
		fmt.Sprintf("addr add %s/64 dev eth0 nodad", BIRDExternal6),
		"route add default via " + BIRDExt4.String(),
		"route add ::/0 via " + BIRDExt6.String(),
	}); err != nil {
		return err
	}
	// Forward, and hash flows over ECMP next hops by ports too.
	_, err := inNS(ctx, l.BIRDNS(), "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
		"net.ipv4.fib_multipath_hash_policy=1", "net.ipv6.fib_multipath_hash_policy=1")
	return err
}

// birdConfig is BIRD's fixed configuration. The BGP neighbours live in
// peers.conf, which PeerBIRD rewrites. The kernel protocols merge equal
// BGP routes into one multipath route (ECMP).
func birdConfig(dir string) string {
	return fmt.Sprintf(`router id %s;
log stderr all;
timeformat log iso long ms;
timeformat protocol iso long ms;
timeformat route iso long ms;
protocol device { scan time 10; }
protocol kernel kernel4 { merge paths on; ipv4 { import none; export all; }; }
protocol kernel kernel6 { merge paths on; ipv6 { import none; export all; }; }
protocol bfd { interface "*" { interval 100 ms; multiplier 3; }; debug { states, events }; }
include "%s";
`, BIRD4, filepath.Join(dir, "peers.conf"))
}

// startBIRD runs BIRD in the foreground (so the lab records its PID) with
// a private control socket.
func (l *Lab) startBIRD(ctx context.Context) error {
	d := l.birdDir()
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(d, "peers.conf"), nil, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(d, "bird.conf"), []byte(birdConfig(d)), 0o644); err != nil {
		return err
	}
	if _, err := l.start("bird", l.BIRDNS(), nil, "bird", "-f", "-c", filepath.Join(d, "bird.conf"),
		"-s", l.birdSocket(), "-P", filepath.Join(d, "bird.pid")); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := l.Birdc(ctx, "show", "status")
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("BIRD not answering (see %s): %w", l.LogPath("bird"), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (l *Lab) birdSocket() string { return filepath.Join(l.birdDir(), "bird.ctl") }

// Birdc runs one birdc command (its words as arguments) and returns the
// output without birdc's greeting.
func (l *Lab) Birdc(ctx context.Context, words ...string) (string, error) {
	out, err := run(ctx, "birdc", append([]string{"-s", l.birdSocket()}, words...)...)
	if err != nil {
		return out, err
	}
	_, rest, _ := strings.Cut(out, "ready.\n")
	return rest, nil
}

// BIRDPeering says how BIRD peers with the lab's nodes: as Peering says
// (Multihop excepted), from BIRD4 or BIRD6.
type BIRDPeering struct {
	Peering
	// Families are BIRD's channels on each session, "ipv4" and/or "ipv6"
	// (default both): what it offers in its OPEN.
	Families []string
	// BFDGraceful makes a BFD Down start graceful restart (keep the routes
	// as stale) instead of dropping the session: `bfd graceful`.
	BFDGraceful bool
	// GracefulRestart is `graceful restart on` (BIRD's default, "aware",
	// already keeps a restarting neighbour's routes).
	GracefulRestart bool
}

// RouterAddress is BIRD's address the speakers dial for this peering.
func (p BIRDPeering) RouterAddress() netip.Addr {
	if p.IPv6 {
		return BIRD6
	}
	return BIRD4
}

// birdPeers renders peers.conf for p: one BGP protocol per node, named
// after it. Sessions retry at once after a failure (error wait time).
func (l *Lab) birdPeers(p BIRDPeering) (string, error) {
	if p.NodeASN == 0 {
		return "", errors.New("no node ASN")
	}
	if p.Multihop {
		return "", errors.New("multihop: not supported by the lab's BIRD")
	}
	if strings.ContainsAny(p.Password, "\"\\\n") {
		return "", errors.New("password: BIRD's strings cannot hold quotes, backslashes or newlines")
	}
	fams := p.Families
	if len(fams) == 0 {
		fams = []string{"ipv4", "ipv6"}
	}
	var b strings.Builder
	for _, n := range l.Nodes {
		if len(p.Nodes) > 0 && !slices.Contains(p.Nodes, n.Name) {
			continue
		}
		addr := n.IPv4
		if p.IPv6 {
			addr = n.IPv6
		}
		fmt.Fprintf(&b, "protocol bgp %s {\n\tlocal %s as %d;\n\tneighbor %s as %d;\n", n.Name, p.RouterAddress(), BIRDASN, addr, p.NodeASN)
		b.WriteString("\tdirect;\n\tconnect delay time 1;\n\tconnect retry time 1;\n\terror wait time 1, 10;\n\tdebug { states, events };\n")
		if p.Password != "" {
			fmt.Fprintf(&b, "\tpassword %q;\n", p.Password)
		}
		switch {
		case p.BFD && p.BFDGraceful:
			b.WriteString("\tbfd graceful;\n")
		case p.BFD:
			b.WriteString("\tbfd on;\n")
		}
		if p.GracefulRestart {
			b.WriteString("\tgraceful restart on;\n")
		}
		for _, f := range fams {
			if f != "ipv4" && f != "ipv6" {
				return "", fmt.Errorf("family %q: want ipv4 or ipv6", f)
			}
			fmt.Fprintf(&b, "\t%s { import all; export none; };\n", f)
		}
		b.WriteString("}\n")
	}
	return b.String(), nil
}

// PeerBIRD replaces BIRD's neighbours with the nodes as p says and has
// BIRD reload its configuration.
func (l *Lab) PeerBIRD(ctx context.Context, p BIRDPeering) error {
	conf, err := l.birdPeers(p)
	if err != nil {
		return fmt.Errorf("peer BIRD: %w", err)
	}
	return l.configureBIRD(ctx, conf)
}

// UnpeerBIRD removes every BGP neighbour from BIRD (routes learnt from
// them go with them).
func (l *Lab) UnpeerBIRD(ctx context.Context) error { return l.configureBIRD(ctx, "") }

func (l *Lab) configureBIRD(ctx context.Context, peers string) error {
	if err := os.WriteFile(filepath.Join(l.birdDir(), "peers.conf"), []byte(peers), 0o644); err != nil {
		return err
	}
	out, err := l.Birdc(ctx, "configure")
	if err != nil {
		return fmt.Errorf("birdc configure: %w", err)
	}
	if !strings.Contains(out, "Reconfigur") || strings.Contains(out, "error") {
		return fmt.Errorf("birdc configure: %s", strings.TrimSpace(out))
	}
	return nil
}

// BIRDProtocol is BIRD's view of one BGP session.
type BIRDProtocol struct {
	Name     string // the node's name
	Neighbor netip.Addr
	// State is the BGP state: Idle, Connect, Active, OpenSent, OpenConfirm, Established.
	State string
	// Info is the last column of `show protocols` ("Established", "Error: ...").
	Info      string
	LastError string
	// Restarting: the neighbour is in graceful restart (BIRD keeps its routes as stale).
	Restarting bool
	// NeighborGR: the neighbour's OPEN carried the graceful restart capability.
	NeighborGR bool
	// Imported counts the routes imported, by channel ("ipv4", "ipv6").
	Imported map[string]int
}

// Established reports whether the session is up.
func (p BIRDProtocol) Established() bool { return p.State == "Established" }

// BIRDProtocols returns BIRD's BGP sessions by neighbour address.
func (l *Lab) BIRDProtocols(ctx context.Context) (map[netip.Addr]BIRDProtocol, error) {
	out, err := l.Birdc(ctx, "show", "protocols", "all")
	if err != nil {
		return nil, err
	}
	return parseBIRDProtocols(out), nil
}

func parseBIRDProtocols(out string) map[netip.Addr]BIRDProtocol {
	res := map[netip.Addr]BIRDProtocol{}
	var cur *BIRDProtocol
	var section, channel string // the capabilities list and the channel being read
	flush := func() {
		if cur != nil && cur.Neighbor.IsValid() {
			res[cur.Neighbor] = *cur
		}
		cur = nil
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || !strings.HasPrefix(line, " ") { // a protocol's first line, or the header
			flush()
			f := strings.Fields(line)
			if len(f) >= 4 && f[1] == "BGP" {
				cur = &BIRDProtocol{Name: f[0], Imported: map[string]int{}}
				// Info follows Since, a date and a time (timeformat protocol iso long).
				if len(f) >= 7 {
					cur.Info = strings.Join(f[6:], " ")
				}
			}
			section, channel = "", ""
			continue
		}
		if cur == nil {
			continue
		}
		key, value, _ := strings.Cut(strings.TrimSpace(line), ":")
		value = strings.TrimSpace(value)
		switch indent := len(line) - len(strings.TrimLeft(line, " ")); {
		case indent == 2 && strings.HasPrefix(key, "Channel "):
			channel = strings.TrimPrefix(key, "Channel ")
		case indent == 2 && key == "BGP state":
			cur.State = value
		case indent == 4 && channel == "":
			section = ""
			switch key {
			case "Neighbor address":
				cur.Neighbor, _ = netip.ParseAddr(value)
			case "Last error":
				cur.LastError = value
			case "Neighbor graceful restart active":
				cur.Restarting = true
			case "Neighbor capabilities", "Local capabilities":
				section = key
			}
		case indent == 6 && section == "Neighbor capabilities" && key == "Graceful restart":
			cur.NeighborGR = true
		case indent == 4 && channel != "" && key == "Routes":
			if n, err := strconv.Atoi(strings.Fields(value + " 0")[0]); err == nil {
				cur.Imported[channel] = n
			}
		}
	}
	flush()
	return res
}

// WaitBIRDEstablished waits until BIRD's sessions with every address in
// addrs are Established and returns them as they were then.
func (l *Lab) WaitBIRDEstablished(ctx context.Context, addrs []netip.Addr, timeout time.Duration) (map[netip.Addr]BIRDProtocol, error) {
	deadline := time.Now().Add(timeout)
	for {
		protos, err := l.BIRDProtocols(ctx)
		var down []string
		for _, a := range addrs {
			if p, ok := protos[a]; !ok || !p.Established() {
				down = append(down, fmt.Sprintf("%s (%s %s)", a, p.State, p.LastError))
			}
		}
		if err == nil && len(down) == 0 {
			return protos, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("BIRD's BGP sessions not established after %s: %v", timeout, down)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// BIRDBFDSessions returns the state of BIRD's BFD sessions (Up, Down,
// Init, AdminDown) by neighbour address.
func (l *Lab) BIRDBFDSessions(ctx context.Context) (map[netip.Addr]string, error) {
	out, err := l.Birdc(ctx, "show", "bfd", "sessions")
	if err != nil {
		return nil, err
	}
	res := map[netip.Addr]string{}
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		if a, err := netip.ParseAddr(f[0]); err == nil {
			res[a] = f[2]
		}
	}
	return res, nil
}

// BIRDRoute is one route BIRD holds for a prefix, as learnt from one node.
type BIRDRoute struct {
	Protocol string     // the BGP protocol it came from: the node's name
	NextHop  netip.Addr // the gateway BIRD resolved (`via`)
	Primary  bool       // BIRD's best route
	ASPath   string     // "64501"; "" for an empty path
	// LocalPref is BIRD's value: the received one over iBGP, 100 over eBGP.
	LocalPref uint32
	// Communities as "a:b", LargeCommunities as "a:b:c".
	Communities, LargeCommunities []string
}

// BIRDRoutes returns the routes in BIRD's table for exactly prefix (none
// when it has no route).
func (l *Lab) BIRDRoutes(ctx context.Context, prefix netip.Prefix) ([]BIRDRoute, error) {
	out, err := l.Birdc(ctx, "show", "route", prefix.String(), "all")
	if err != nil {
		return nil, err
	}
	return parseBIRDRoutes(out), nil
}

// parseBIRDRoutes reads `show route ... all`: a route starts with a line
// naming its protocol in brackets ("[node1 2026-01-02 03:04:05.678] *"),
// its details follow on lines indented by a tab.
func parseBIRDRoutes(out string) []BIRDRoute {
	var res []BIRDRoute
	for line := range strings.SplitSeq(out, "\n") {
		if open := strings.Index(line, " ["); open >= 0 && !strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, "Table ") {
			r := BIRDRoute{}
			if f := strings.Fields(line[open+2:]); len(f) > 0 {
				r.Protocol = f[0]
			}
			r.Primary = strings.Contains(line, "] * ")
			res = append(res, r)
			continue
		}
		if len(res) == 0 || !strings.HasPrefix(line, "\t") {
			continue
		}
		r := &res[len(res)-1]
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "via "); ok {
			r.NextHop, _ = netip.ParseAddr(strings.Fields(rest)[0])
			continue
		}
		key, value, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		switch key {
		case "BGP.as_path":
			r.ASPath = value
		case "BGP.local_pref":
			n, _ := strconv.ParseUint(value, 10, 32)
			r.LocalPref = uint32(n)
		case "BGP.community":
			r.Communities = birdTuples(value)
		case "BGP.large_community":
			r.LargeCommunities = birdTuples(value)
		}
	}
	return res
}

// birdTuples turns BIRD's "(64500,100) (65535,65281)" or "(64500, 1, 2)"
// into "64500:100", "65535:65281", "64500:1:2".
func birdTuples(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ")") {
		part = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(part), "("))
		if part == "" {
			continue
		}
		out = append(out, strings.ReplaceAll(strings.ReplaceAll(part, " ", ""), ",", ":"))
	}
	return out
}

// BIRDNextHops returns the sorted, distinct next hops of BIRD's routes for prefix.
func (l *Lab) BIRDNextHops(ctx context.Context, prefix netip.Prefix) ([]netip.Addr, error) {
	routes, err := l.BIRDRoutes(ctx, prefix)
	var out []netip.Addr
	for _, r := range routes {
		if r.NextHop.IsValid() && !slices.Contains(out, r.NextHop) {
			out = append(out, r.NextHop)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, err
}

// WaitBIRDRoute waits until BIRD's table and the kernel table of its
// namespace (where the kernel protocol merges BIRD's routes into one
// multipath route) lead to exactly want for the address addr (none: until
// BIRD has no route).
func (l *Lab) WaitBIRDRoute(ctx context.Context, addr string, want []netip.Addr, timeout time.Duration) error {
	p := HostPrefix(addr)
	start := time.Now()
	if got, err := waitAddrs(ctx, timeout, want, func() ([]netip.Addr, error) { return l.BIRDNextHops(ctx, p) },
		"BIRD's next hops of "+p.String()); err != nil {
		return fmt.Errorf("%w (got %v)", err, got)
	}
	if got, err := l.WaitKernelNextHops(ctx, l.BIRDNS(), p, want, max(time.Second, timeout-time.Since(start))); err != nil {
		return fmt.Errorf("%w (got %v)", err, got)
	}
	return nil
}

// ExpectBIRDRoute is WaitBIRDRoute that fails the test t.
func (l *Lab) ExpectBIRDRoute(t testing.TB, addr string, want []netip.Addr, timeout time.Duration) {
	t.Helper()
	if err := l.WaitBIRDRoute(t.Context(), addr, want, timeout); err != nil {
		t.Fatal(err)
	}
}
