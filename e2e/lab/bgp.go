package lab

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BFDProfile is the router's BFD profile for Peering.BFD: 100 ms × 3, the
// timers of the speakers' "fast" profile in the tests.
const BFDProfile = "herald"

// Peering says how the router peers with the lab's nodes. The speakers dial
// the router; FRR accepts (and dials too, with a one-second retry).
type Peering struct {
	// NodeASN is the AS the nodes speak from; RouterASN makes the sessions iBGP.
	NodeASN uint32
	// IPv6 peers with the nodes' IPv6 addresses instead of their IPv4 ones.
	// Either way the sessions carry both families (RFC 4760).
	IPv6 bool
	// Password is the TCP-MD5 key (RFC 2385); "" for none.
	Password string
	// BFD watches each session with BFD (profile BFDProfile, RFC 5880/5881).
	BFD bool
	// Multihop has the nodes reach the router at its external address
	// (RouterExt4 or RouterExt6, routed through its bridge address) with
	// ebgp-multihop, instead of on the shared bridge.
	Multihop bool
	// Nodes limits the peering to these nodes (default: every node).
	Nodes []string
}

// RouterAddress is the router address the speakers dial for this peering.
func (p Peering) RouterAddress() netip.Addr {
	switch {
	case p.Multihop && p.IPv6:
		return RouterExt6
	case p.Multihop:
		return RouterExt4
	case p.IPv6:
		return Router6
	}
	return Router4
}

// PeerAddresses are the node addresses FRR peers with for p, in node order.
func (l *Lab) PeerAddresses(p Peering) []netip.Addr {
	var out []netip.Addr
	for _, n := range l.Nodes {
		if len(p.Nodes) > 0 && !slices.Contains(p.Nodes, n.Name) {
			continue
		}
		if p.IPv6 {
			out = append(out, n.IPv6)
		} else {
			out = append(out, n.IPv4)
		}
	}
	return out
}

// NodeOf returns the lab node that owns addr (either family), or "".
func (l *Lab) NodeOf(addr netip.Addr) string {
	for _, n := range l.Nodes {
		if n.IPv4 == addr || n.IPv6 == addr {
			return n.Name
		}
	}
	return ""
}

// PeerNodes configures FRR to peer with the nodes as p says, in addition to
// any neighbours already configured (UnpeerNodes removes them all). Both
// address families are activated on every session, and the router keeps up
// to 8 equal paths (iBGP and eBGP) in its RIB and hashes flows over them by
// ports too, so one client's connections spread over the announcing nodes.
// FRR's graceful-restart default is helper mode: it keeps a restarting
// speaker's routes (RFC 4724) when the speaker asks for it.
func (l *Lab) PeerNodes(ctx context.Context, p Peering) error {
	if p.NodeASN == 0 {
		return fmt.Errorf("peer nodes: no node ASN")
	}
	var lines []string
	if p.BFD {
		lines = append(lines, "bfd", "profile "+BFDProfile, "receive-interval 100", "transmit-interval 100",
			"detect-multiplier 3", "exit", "exit")
	}
	lines = append(lines, fmt.Sprintf("router bgp %d", RouterASN))
	addrs := l.PeerAddresses(p)
	for _, a := range addrs {
		n := a.String()
		lines = append(lines, fmt.Sprintf("neighbor %s remote-as %d", n, p.NodeASN), "neighbor "+n+" timers connect 1")
		if p.Password != "" {
			lines = append(lines, "neighbor "+n+" password "+p.Password)
		}
		if p.BFD {
			lines = append(lines, "neighbor "+n+" bfd", "neighbor "+n+" bfd profile "+BFDProfile)
		}
		if p.Multihop {
			lines = append(lines, "neighbor "+n+" ebgp-multihop 2", "neighbor "+n+" update-source "+p.RouterAddress().String())
		}
	}
	for _, af := range []string{"ipv4", "ipv6"} {
		lines = append(lines, "address-family "+af+" unicast", "maximum-paths 8", "maximum-paths ibgp 8")
		for _, a := range addrs {
			lines = append(lines, "neighbor "+a.String()+" activate")
		}
		lines = append(lines, "exit-address-family")
	}
	if err := l.ConfigureRouter(ctx, lines...); err != nil {
		return fmt.Errorf("peer nodes: %w", err)
	}
	if _, err := inNS(ctx, l.RouterNS(), "sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1", "net.ipv6.fib_multipath_hash_policy=1"); err != nil {
		return fmt.Errorf("peer nodes: %w", err)
	}
	return nil
}

// UnpeerNodes removes every BGP neighbour and the BFD profile from the
// router, leaving it as Up made it (routes learnt from the neighbours go
// with them).
func (l *Lab) UnpeerNodes(ctx context.Context) error {
	nbrs, err := l.BGPNeighbors(ctx)
	if err != nil {
		return fmt.Errorf("unpeer nodes: %w", err)
	}
	lines := []string{fmt.Sprintf("router bgp %d", RouterASN)}
	for a := range nbrs {
		lines = append(lines, "no neighbor "+a.String())
	}
	if err := l.ConfigureRouter(ctx, lines...); err != nil {
		return fmt.Errorf("unpeer nodes: %w", err)
	}
	conf, err := l.Vtysh(ctx, "show running-config")
	if err != nil {
		return fmt.Errorf("unpeer nodes: %w", err)
	}
	if strings.Contains(conf, " profile "+BFDProfile+"\n") {
		if err := l.ConfigureRouter(ctx, "bfd", "no profile "+BFDProfile); err != nil {
			return fmt.Errorf("unpeer nodes: %w", err)
		}
	}
	return nil
}

// BGPNeighbor is the router's view of one BGP session.
type BGPNeighbor struct {
	Address netip.Addr
	State   string // Idle, Connect, Active, OpenSent, OpenConfirm, Established
	// EstablishedEpoch is when the session last became Established (Unix
	// seconds); it changes whenever the session is reset.
	EstablishedEpoch int64
	UpMsec           int64
	// ConnectionsEstablished and ConnectionsDropped count the session's
	// resets since the neighbour was configured.
	ConnectionsEstablished, ConnectionsDropped int
	LastResetDueTo                             string
	// Accepted counts the prefixes accepted from the neighbour, by family
	// ("ipv4Unicast", "ipv6Unicast").
	Accepted map[string]int
	BFD      string // "" without BFD; else FRR's status: Up, Down, Unknown
	// GracefulRestart is FRR's word for the capability exchange ("advertisedAndReceived", ...).
	GracefulRestart string
}

// Established reports whether the session is up.
func (n BGPNeighbor) Established() bool { return n.State == "Established" }

// BGPNeighbors returns every neighbour of the router, by address.
func (l *Lab) BGPNeighbors(ctx context.Context) (map[netip.Addr]BGPNeighbor, error) {
	var raw map[string]struct {
		BGPState               string `json:"bgpState"`
		UpMsec                 int64  `json:"bgpTimerUpMsec"`
		EstablishedEpoch       int64  `json:"bgpTimerUpEstablishedEpoch"`
		ConnectionsEstablished int    `json:"connectionsEstablished"`
		ConnectionsDropped     int    `json:"connectionsDropped"`
		LastResetDueTo         string `json:"lastResetDueTo"`
		Capabilities           struct {
			GracefulRestart string `json:"gracefulRestart"`
		} `json:"neighborCapabilities"`
		AFI map[string]struct {
			Accepted int `json:"acceptedPrefixCounter"`
		} `json:"addressFamilyInfo"`
		BFD *struct {
			Status string `json:"status"`
		} `json:"peerBfdInfo"`
	}
	if err := l.VtyshJSON(ctx, "show bgp neighbors json", &raw); err != nil {
		return nil, err
	}
	out := map[netip.Addr]BGPNeighbor{}
	for k, r := range raw {
		a, err := netip.ParseAddr(k)
		if err != nil {
			continue // not a neighbour (FRR adds no other keys today)
		}
		n := BGPNeighbor{
			Address: a, State: r.BGPState, EstablishedEpoch: r.EstablishedEpoch, UpMsec: r.UpMsec,
			ConnectionsEstablished: r.ConnectionsEstablished, ConnectionsDropped: r.ConnectionsDropped,
			LastResetDueTo: r.LastResetDueTo, Accepted: map[string]int{}, GracefulRestart: r.Capabilities.GracefulRestart,
		}
		for af, i := range r.AFI {
			n.Accepted[af] = i.Accepted
		}
		if r.BFD != nil {
			n.BFD = r.BFD.Status
		}
		out[a] = n
	}
	return out, nil
}

// WaitEstablished waits until the router's sessions with every address in
// addrs are Established and returns the neighbours as they were then.
func (l *Lab) WaitEstablished(ctx context.Context, addrs []netip.Addr, timeout time.Duration) (map[netip.Addr]BGPNeighbor, error) {
	deadline := time.Now().Add(timeout)
	for {
		nbrs, err := l.BGPNeighbors(ctx)
		var down []string
		for _, a := range addrs {
			if n, ok := nbrs[a]; !ok || !n.Established() {
				down = append(down, fmt.Sprintf("%s (%s)", a, n.State))
			}
		}
		if err == nil && len(down) == 0 {
			return nbrs, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("BGP sessions not established after %s: %v", timeout, down)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Path is one route the router holds for a prefix, as learnt from one neighbour.
type Path struct {
	Peer    netip.Addr // the session it came over
	NextHop netip.Addr // the global next hop
	// Internal: learnt over iBGP.
	Internal  bool
	LocalPref uint32 // 0 when absent (it only travels over iBGP)
	ASPath    string // FRR's rendering: "64501", or "Local" for an empty path
	// Communities in FRR's spelling: "64500:100", "noExport", ...
	Communities []string
	// LargeCommunities as "a:b:c".
	LargeCommunities   []string
	Valid, Best, Multi bool
	// Stale: kept for a restarting neighbour (graceful restart).
	Stale bool
}

// BGPPaths returns the paths in the router's BGP table for prefix (none when
// it has no route).
func (l *Lab) BGPPaths(ctx context.Context, prefix netip.Prefix) ([]Path, error) {
	afi := "ipv4"
	if prefix.Addr().Is6() {
		afi = "ipv6"
	}
	var raw struct {
		Paths []struct {
			ASPath struct {
				String string `json:"string"`
			} `json:"aspath"`
			LocPrf    uint32 `json:"locPrf"`
			Valid     bool   `json:"valid"`
			Multipath bool   `json:"multipath"`
			Stale     bool   `json:"stale"`
			Bestpath  *struct {
				Overall bool `json:"overall"`
			} `json:"bestpath"`
			Community *struct {
				List []string `json:"list"`
			} `json:"community"`
			LargeCommunity *struct {
				List []string `json:"list"`
			} `json:"largeCommunity"`
			Nexthops []struct {
				IP    string `json:"ip"`
				Scope string `json:"scope"`
			} `json:"nexthops"`
			Peer struct {
				PeerID string `json:"peerId"`
				Type   string `json:"type"`
			} `json:"peer"`
		} `json:"paths"`
	}
	if err := l.VtyshJSON(ctx, fmt.Sprintf("show bgp %s unicast %s json", afi, prefix), &raw); err != nil {
		return nil, err
	}
	var out []Path
	for _, r := range raw.Paths {
		p := Path{
			Internal: r.Peer.Type == "internal", LocalPref: r.LocPrf, ASPath: r.ASPath.String,
			Valid: r.Valid, Best: r.Bestpath != nil && r.Bestpath.Overall, Multi: r.Multipath, Stale: r.Stale,
		}
		p.Peer, _ = netip.ParseAddr(r.Peer.PeerID)
		for _, nh := range r.Nexthops {
			if a, err := netip.ParseAddr(nh.IP); err == nil && nh.Scope != "link-local" && !p.NextHop.IsValid() {
				p.NextHop = a
			}
		}
		if r.Community != nil {
			p.Communities = r.Community.List
		}
		if r.LargeCommunity != nil {
			p.LargeCommunities = r.LargeCommunity.List
		}
		out = append(out, p)
	}
	return out, nil
}

// NextHops returns the sorted, distinct next hops of paths.
func NextHops(paths []Path) []netip.Addr {
	var out []netip.Addr
	for _, p := range paths {
		if p.NextHop.IsValid() && !slices.Contains(out, p.NextHop) {
			out = append(out, p.NextHop)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// BGPNextHops returns the sorted next hops of the router's BGP paths for prefix.
func (l *Lab) BGPNextHops(ctx context.Context, prefix netip.Prefix) ([]netip.Addr, error) {
	paths, err := l.BGPPaths(ctx, prefix)
	return NextHops(paths), err
}

// RIBNextHops returns the sorted next hops zebra installed in the kernel
// for prefix (the forwarding the router does), empty when it has no
// installed route. IPv6 next hops are usually link-local; see NodeOfMAC.
func (l *Lab) RIBNextHops(ctx context.Context, prefix netip.Prefix) ([]netip.Addr, error) {
	cmd := "show ip route " + prefix.String() + " json"
	if prefix.Addr().Is6() {
		cmd = "show ipv6 route " + prefix.String() + " json"
	}
	var raw map[string][]struct {
		Protocol  string `json:"protocol"`
		Installed bool   `json:"installed"`
		Nexthops  []struct {
			IP  string `json:"ip"`
			FIB bool   `json:"fib"`
		} `json:"nexthops"`
	}
	if err := l.VtyshJSON(ctx, cmd, &raw); err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, r := range raw[prefix.String()] {
		if !r.Installed {
			continue
		}
		for _, nh := range r.Nexthops {
			if a, err := netip.ParseAddr(nh.IP); err == nil && nh.FIB && !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// WaitBGPNextHops waits until the router's BGP next hops for prefix are
// exactly want (empty: until it has no route) and returns the last seen.
func (l *Lab) WaitBGPNextHops(ctx context.Context, prefix netip.Prefix, want []netip.Addr, timeout time.Duration) ([]netip.Addr, error) {
	return waitAddrs(ctx, timeout, want, func() ([]netip.Addr, error) { return l.BGPNextHops(ctx, prefix) },
		"BGP next hops of "+prefix.String())
}

// WaitRIBNextHops waits until zebra's installed next hops for prefix are exactly want.
func (l *Lab) WaitRIBNextHops(ctx context.Context, prefix netip.Prefix, want []netip.Addr, timeout time.Duration) ([]netip.Addr, error) {
	return waitAddrs(ctx, timeout, want, func() ([]netip.Addr, error) { return l.RIBNextHops(ctx, prefix) },
		"installed next hops of "+prefix.String())
}

func waitAddrs(ctx context.Context, timeout time.Duration, want []netip.Addr, get func() ([]netip.Addr, error), what string) ([]netip.Addr, error) {
	want = slices.Clone(want)
	slices.SortFunc(want, netip.Addr.Compare)
	deadline := time.Now().Add(timeout)
	for {
		got, err := get()
		if err == nil && slices.Equal(got, want) {
			return got, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if err != nil {
				return got, fmt.Errorf("%s: %w", what, err)
			}
			return got, fmt.Errorf("%s after %s: %v, want %v", what, timeout, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// BGPReceived returns, for every established neighbour, the number of
// prefixes of family afi ("ipv4" or "ipv6") the router accepted from it:
// one cheap command even when the table holds many thousands of routes.
func (l *Lab) BGPReceived(ctx context.Context, afi string) (map[netip.Addr]int, error) {
	var raw map[string]struct {
		Peers map[string]struct {
			PfxRcd int    `json:"pfxRcd"`
			State  string `json:"state"`
		} `json:"peers"`
	}
	if err := l.VtyshJSON(ctx, "show bgp summary json", &raw); err != nil {
		return nil, err
	}
	out := map[netip.Addr]int{}
	for k, p := range raw[afi+"Unicast"].Peers {
		a, err := netip.ParseAddr(k)
		if err != nil || p.State != "Established" {
			continue
		}
		out[a] = p.PfxRcd
	}
	return out, nil
}

// BGPTable returns the router's whole table of family afi ("ipv4" or
// "ipv6"): every prefix with the sessions it was learnt over.
func (l *Lab) BGPTable(ctx context.Context, afi string) (map[netip.Prefix][]netip.Addr, error) {
	var raw struct {
		Routes map[string][]struct {
			PeerID string `json:"peerId"`
		} `json:"routes"`
	}
	if err := l.VtyshJSON(ctx, "show bgp "+afi+" unicast json", &raw); err != nil {
		return nil, err
	}
	out := make(map[netip.Prefix][]netip.Addr, len(raw.Routes))
	for k, paths := range raw.Routes {
		p, err := netip.ParsePrefix(k)
		if err != nil {
			continue
		}
		for _, path := range paths {
			if a, err := netip.ParseAddr(path.PeerID); err == nil {
				out[p] = append(out[p], a)
			}
		}
	}
	return out, nil
}

// Metric returns the value of the first sample of metric name in a
// Prometheus text exposition whose labels include every label given (as
// name, value pairs), and whether there was one.
func Metric(exposition, name string, labels ...string) (float64, bool) {
	for line := range strings.SplitSeq(exposition, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		set, value := "", rest
		if rest[0] == '{' {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			set, value = rest[1:end], rest[end+1:]
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			match = match && strings.Contains(","+set+",", ","+labels[i]+"="+strconv.Quote(labels[i+1])+",")
		}
		if !match {
			continue
		}
		f := strings.Fields(value)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		return v, err == nil
	}
	return 0, false
}

// HostPrefix is the single-address prefix of addr (/32 or /128).
func HostPrefix(addr string) netip.Prefix {
	a := netip.MustParseAddr(addr)
	return netip.PrefixFrom(a, a.BitLen())
}

// NodeAddrs are the nodes' IPv4 (or IPv6) addresses, sorted; only those of
// the nodes named, if any are.
func (l *Lab) NodeAddrs(v6 bool, names ...string) []netip.Addr {
	var out []netip.Addr
	for _, n := range l.Nodes {
		if len(names) > 0 && !slices.Contains(names, n.Name) {
			continue
		}
		if v6 {
			out = append(out, n.IPv6)
		} else {
			out = append(out, n.IPv4)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// WaitRoute waits until the router's BGP table and, for IPv4, the routes
// zebra installed lead to exactly want for the address addr (none: until
// the router has no route). zebra's IPv6 next hops are the nodes'
// link-local addresses, so for IPv6 only the BGP table is compared.
func (l *Lab) WaitRoute(ctx context.Context, addr string, want []netip.Addr, timeout time.Duration) error {
	p := HostPrefix(addr)
	if got, err := l.WaitBGPNextHops(ctx, p, want, timeout); err != nil {
		return fmt.Errorf("%w (got %v)", err, got)
	}
	if p.Addr().Is6() {
		return nil
	}
	if got, err := l.WaitRIBNextHops(ctx, p, want, 5*time.Second); err != nil {
		return fmt.Errorf("%w (got %v)", err, got)
	}
	return nil
}

// ExpectRoute is WaitRoute that fails the test t.
func (l *Lab) ExpectRoute(t testing.TB, addr string, want []netip.Addr, timeout time.Duration) {
	t.Helper()
	if err := l.WaitRoute(t.Context(), addr, want, timeout); err != nil {
		t.Fatal(err)
	}
}
