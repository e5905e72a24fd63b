package bgp_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/heraldlb/herald/e2e/lab"
)

// A speaker may send UPDATEs (End-of-RIB markers included) only of the
// address families both OPENs of the session offered (RFC 4760 section 6;
// RFC 4724 section 2 for End-of-RIB). FRR and BIRD here offer one family
// only; the speakers offer both, and one speaker is restarted with
// graceful restart on, which is where it sends an End-of-RIB per family.
// The test reads the BGP messages off the wire, as tcpdump in each
// router's namespace saw them.
func TestWireFamiliesNegotiated(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		name := map[bool]string{false: "ipv4-only", true: "ipv6-only"}[v6]
		t.Run(name, func(t *testing.T) { wireCase(t, needLab(t), v6) })
	}
}

// wireRouter is one router of a wire case.
type wireRouter struct {
	name, ns string
	addrs    []netip.Addr                                 // its addresses
	up       func(addrs []netip.Addr) error               // waits until the sessions are Established
	route    func(prefix netip.Prefix, want []netip.Addr) // waits until the router holds the route
	done     func(addr netip.Addr, prefix netip.Prefix) error
}

// wireFRR peers FRR with the nodes offering one family only: PeerNodes
// activates both, and the other is taken away before any speaker dials.
func wireFRR(t *testing.T, l *lab.Lab, p lab.Peering) wireRouter {
	ctx := t.Context()
	if err := l.PeerNodes(ctx, p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.UnpeerNodes(context.Background()); err != nil {
			t.Errorf("restore the router: %v", err)
		}
	})
	other := "ipv6"
	if p.IPv6 {
		other = "ipv4"
	}
	lines := []string{fmt.Sprintf("router bgp %d", lab.RouterASN), "address-family " + other + " unicast"}
	for _, a := range l.PeerAddresses(p) {
		lines = append(lines, "no neighbor "+a.String()+" activate")
	}
	if err := l.ConfigureRouter(ctx, append(lines, "exit-address-family")...); err != nil {
		t.Fatal(err)
	}
	return wireRouter{
		name: "FRR", ns: l.RouterNS(), addrs: []netip.Addr{lab.Router4, lab.Router6},
		up: func(addrs []netip.Addr) error {
			_, err := l.WaitEstablished(ctx, addrs, 30*time.Second)
			return err
		},
		route: func(prefix netip.Prefix, want []netip.Addr) {
			if got, err := l.WaitBGPNextHops(ctx, prefix, want, 30*time.Second); err != nil {
				t.Fatalf("FRR: %v (got %v)", err, got)
			}
		},
		done: func(addr netip.Addr, prefix netip.Prefix) error {
			deadline := time.Now().Add(15 * time.Second)
			for {
				paths, err := l.BGPPaths(ctx, prefix)
				fresh := slices.ContainsFunc(paths, func(p lab.Path) bool { return p.Peer == addr && !p.Stale })
				if err == nil && fresh {
					return nil
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("FRR holds no fresh path of %s from %s 15 s after the restart: %+v (err %v)", prefix, addr, paths, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		},
	}
}

// wireBIRD peers BIRD with the nodes with one channel only.
func wireBIRD(t *testing.T, l *lab.Lab, p lab.Peering) wireRouter {
	ctx := t.Context()
	family := "ipv4"
	if p.IPv6 {
		family = "ipv6"
	}
	if err := l.PeerBIRD(ctx, lab.BIRDPeering{Peering: p, Families: []string{family}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.UnpeerBIRD(context.Background()); err != nil {
			t.Errorf("restore BIRD: %v", err)
		}
	})
	return wireRouter{
		name: "BIRD", ns: l.BIRDNS(), addrs: []netip.Addr{lab.BIRD4, lab.BIRD6},
		up: func(addrs []netip.Addr) error {
			_, err := l.WaitBIRDEstablished(ctx, addrs, 30*time.Second)
			return err
		},
		route: func(prefix netip.Prefix, want []netip.Addr) {
			l.ExpectBIRDRoute(t, prefix.Addr().String(), want, 30*time.Second)
		},
		done: func(addr netip.Addr, _ netip.Prefix) error {
			deadline := time.Now().Add(15 * time.Second)
			for {
				protos, err := l.BIRDProtocols(ctx)
				if p := protos[addr]; err == nil && p.Established() && !p.Restarting {
					return nil
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("BIRD's session with %s still in graceful restart 15 s after the restart: %+v (err %v)", addr, protos[addr], err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		},
	}
}

// wireYAML is Herald's configuration for a wire case: FRR as peer "tor"
// and BIRD (if the lab runs it) as peer "bird", graceful restart on both.
func wireYAML(v6, bird bool) string {
	var b strings.Builder
	b.WriteString(poolsYAML)
	b.WriteString("bgpPeers:\n")
	peer := func(name string, addr netip.Addr, asn uint32) {
		fmt.Fprintf(&b, "- name: %s\n  address: %s\n  asn: %d\n  myASN: %d\n  holdTime: 9s\n  connectTime: 1s\n  gracefulRestart: true\n",
			name, addr, asn, eBGPASN)
	}
	peer("tor", lab.Peering{IPv6: v6}.RouterAddress(), lab.RouterASN)
	peers := "[tor]"
	if bird {
		peer("bird", lab.BIRDPeering{Peering: lab.Peering{IPv6: v6}}.RouterAddress(), lab.BIRDASN)
		peers = "[tor, bird]"
	}
	fmt.Fprintf(&b, "bgpAdvertisements:\n- name: default\n  pools: [bgp]\n  peers: %s\n", peers)
	return b.String()
}

func wireCase(t *testing.T, l *lab.Lab, v6 bool) {
	ctx := t.Context()
	p := lab.Peering{NodeASN: eBGPASN, IPv6: v6}
	routers := []wireRouter{wireFRR(t, l, p)}
	if l.BIRD {
		routers = append(routers, wireBIRD(t, l, p))
	}
	t.Cleanup(func() {
		if err := l.ApplyHeraldConfig(context.Background(), poolsYAML); err != nil {
			t.Errorf("restore the Herald configuration: %v", err)
		}
	})
	var captures []*lab.Capture
	for _, r := range routers {
		c, err := l.StartCapture(ctx, r.ns, "bgp-"+strings.ReplaceAll(t.Name(), "/", "-")+"-"+strings.ToLower(r.name), "tcp port 179")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Stop()
		captures = append(captures, c)
	}
	if err := l.ApplyHeraldConfig(ctx, wireYAML(v6, l.BIRD)); err != nil {
		t.Fatal(err)
	}
	node := quietSpeaker(t, l)
	t.Cleanup(func() { restartSpeakerIfGone(t, l, node) })
	for _, r := range routers {
		if err := r.up(l.PeerAddresses(p)); err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
	}
	vip, vip6 := "198.19.0.49", "2001:db8:100::49"
	app(t, l, "wire"+map[bool]string{false: "4", true: "6"}[v6], "web", vip+","+vip6, false, map[string]string{"a": node})
	prefix := lab.HostPrefix(vip)
	if v6 {
		prefix = lab.HostPrefix(vip6)
	}
	for _, r := range routers {
		r.route(prefix, l.NodeAddrs(v6))
	}
	addr := l.PeerAddresses(lab.Peering{IPv6: v6, Nodes: []string{node}})[0]
	exited := stopSpeaker(t, l, node, 10*time.Second)
	if _, err := startSpeaker(ctx, l, node); err != nil {
		t.Fatal(err)
	}
	for _, r := range routers {
		if err := r.up([]netip.Addr{addr}); err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
	}
	for _, r := range routers {
		if err := r.done(addr, prefix); err != nil {
			t.Log(err) // the wire shows why; go on
		}
	}
	time.Sleep(time.Second)
	name := func(a netip.Addr) string {
		if n := l.NodeOf(a); n != "" {
			return n
		}
		for _, r := range routers {
			if slices.Contains(r.addrs, a) {
				return r.name
			}
		}
		return a.String()
	}
	for i, r := range routers {
		raw, err := os.ReadFile(captures[i].Stop())
		if err != nil {
			t.Fatal(err)
		}
		segs, err := readPcap(raw)
		if err != nil {
			t.Fatalf("%s: %v", captures[i].Path, err)
		}
		report := checkFamilies(connections(segs), name)
		for _, s := range report.sessions {
			t.Logf("%s: %s", r.name, s)
		}
		if !slices.ContainsFunc(report.opened[addr.String()], exited.Before) {
			t.Errorf("%s: the capture (%s) holds no session %s's restarted speaker opened (sessions began at %v)", r.name, captures[i].Path, node, report.opened[addr.String()])
		}
		if len(report.problems) > 0 {
			t.Errorf("%s: UPDATEs outside the negotiated families (capture %s). KNOWN BUG while bgp/ sends an End-of-RIB for every configured family on a graceful restart:\n%s",
				r.name, captures[i].Path, strings.Join(report.problems, "\n"))
		}
	}
}

// quietSpeaker is the node whose speaker the kubelet restarted least
// often: tests that restart a speaker spread over the nodes, so none
// waits out a long restart backoff (10 s doubling from the second).
func quietSpeaker(t *testing.T, l *lab.Lab) string {
	t.Helper()
	pods, err := l.Kube().CoreV1().Pods(lab.HeraldNamespace).List(t.Context(), metav1.ListOptions{LabelSelector: "app=herald-speaker"})
	if err != nil {
		t.Fatal(err)
	}
	restarts := map[string]int32{}
	for _, n := range l.Nodes {
		restarts[n.Name] = 0
	}
	for _, p := range pods.Items {
		for _, c := range p.Status.ContainerStatuses {
			restarts[p.Spec.NodeName] += c.RestartCount
		}
	}
	best := l.Nodes[0].Name
	for _, n := range l.Nodes {
		if restarts[n.Name] < restarts[best] {
			best = n.Name
		}
	}
	return best
}

// familyReport is what checkFamilies found.
type familyReport struct {
	sessions []string               // one summary per BGP session seen
	problems []string               // every UPDATE outside the negotiated families, every undecodable message
	opened   map[string][]time.Time // when each session (OPENs both ways) began, per speaker address
}

// checkFamilies checks, for each connection with OPENs both ways, that
// every UPDATE in either direction carries only families both OPENs
// offered. name labels an address ("node1", "BIRD").
func checkFamilies(conns []*conn, name func(netip.Addr) string) familyReport {
	rep := familyReport{opened: map[string][]time.Time{}}
	for i, c := range conns {
		dirs := []*stream{c.out, c.back}
		msgs := make([][]message, 2)
		opens := make([]*bgp.BGPOpen, 2)
		var notes []string
		for d, st := range dirs {
			var err error
			msgs[d], err = st.messages()
			if err != nil {
				notes = append(notes, fmt.Sprintf("%s's stream: %v", name(st.src.Addr()), err))
			}
			if st.gap {
				notes = append(notes, fmt.Sprintf("%s's stream has a hole (bytes not captured)", name(st.src.Addr())))
			}
			for _, m := range msgs[d] {
				if o, ok := bodyOf[*bgp.BGPOpen](m); ok && opens[d] == nil {
					opens[d] = o
				}
			}
		}
		label := fmt.Sprintf("session %d, %s (%s) ⇄ %s (%s)", i+1, name(c.out.src.Addr()), c.out.src, name(c.out.dst.Addr()), c.out.dst)
		if opens[0] == nil || opens[1] == nil {
			if len(msgs[0])+len(msgs[1]) > 0 {
				rep.sessions = append(rep.sessions, fmt.Sprintf("%s: %d and %d messages, no OPEN from both sides", label, len(msgs[0]), len(msgs[1])))
			}
			continue
		}
		for _, st := range dirs {
			if name(st.src.Addr()) != "BIRD" && name(st.src.Addr()) != "FRR" {
				rep.opened[st.src.Addr().String()] = append(rep.opened[st.src.Addr().String()], st.timeAt(0))
			}
		}
		offered := [][]bgp.Family{openFamilies(opens[0]), openFamilies(opens[1])}
		var negotiated []bgp.Family
		for _, f := range offered[0] {
			if slices.Contains(offered[1], f) {
				negotiated = append(negotiated, f)
			}
		}
		var sent []string
		for d, st := range dirs {
			from, to := name(st.src.Addr()), name(st.dst.Addr())
			updates, eors := 0, []string{}
			for j, m := range msgs[d] {
				if m.err != nil {
					rep.problems = append(rep.problems, fmt.Sprintf("%s: %s → %s message %d at %s: cannot decode: %v",
						label, from, to, j+1, m.at.Format("15:04:05.000"), m.err))
					continue
				}
				if n, ok := bodyOf[*bgp.BGPNotification](m); ok {
					notes = append(notes, fmt.Sprintf("%s sent NOTIFICATION %d/%d at %s", from, n.ErrorCode, n.ErrorSubcode, m.at.Format("15:04:05.000")))
				}
				u, ok := bodyOf[*bgp.BGPUpdate](m)
				if !ok {
					continue
				}
				updates++
				fams, eor := updateFamilies(u)
				what := "UPDATE"
				if eor {
					what = "End-of-RIB"
					eors = append(eors, fams[0].String())
				}
				for _, f := range fams {
					if !slices.Contains(negotiated, f) {
						rep.problems = append(rep.problems, fmt.Sprintf("%s: %s → %s message %d at %s: %s for %s (AFI %d, SAFI %d), not negotiated: %s offered %v, %s offered %v",
							label, from, to, j+1, m.at.Format("15:04:05.000"), what, f, f.Afi(), f.Safi(), from, offered[d], to, offered[1-d]))
					}
				}
			}
			sent = append(sent, fmt.Sprintf("%s offered %v%s, sent %d UPDATEs (End-of-RIB: %v)", from, offered[d], restarting(opens[d]), updates, eors))
		}
		rep.sessions = append(rep.sessions, fmt.Sprintf("%s: negotiated %v; %s; %s", label, negotiated, strings.Join(sent, "; "), strings.Join(notes, "; ")))
	}
	return rep
}

// bodyOf returns m's body if it is a T.
func bodyOf[T bgp.BGPBody](m message) (T, bool) {
	var zero T
	if m.msg == nil {
		return zero, false
	}
	b, ok := m.msg.Body.(T)
	return b, ok
}

// openFamilies are the families an OPEN offers: its multiprotocol
// capabilities, or IPv4 unicast alone when it has none (RFC 4760 section 8).
func openFamilies(o *bgp.BGPOpen) []bgp.Family {
	var out []bgp.Family
	for _, p := range o.OptParams {
		if c, ok := p.(*bgp.OptionParameterCapability); ok {
			for _, cp := range c.Capability {
				if mp, ok := cp.(*bgp.CapMultiProtocol); ok && !slices.Contains(out, mp.CapValue) {
					out = append(out, mp.CapValue)
				}
			}
		}
	}
	if len(out) == 0 {
		return []bgp.Family{bgp.RF_IPv4_UC}
	}
	return out
}

// restarting notes an OPEN whose graceful restart capability has the
// Restart State bit set (the sender has just restarted, RFC 4724).
func restarting(o *bgp.BGPOpen) string {
	for _, p := range o.OptParams {
		if c, ok := p.(*bgp.OptionParameterCapability); ok {
			for _, cp := range c.Capability {
				if gr, ok := cp.(*bgp.CapGracefulRestart); ok && gr.Flags&0x08 != 0 {
					return " (restarting)"
				}
			}
		}
	}
	return ""
}

// updateFamilies are the families an UPDATE carries, and whether it is an
// End-of-RIB marker: an empty UPDATE is IPv4 unicast's; one holding only
// an empty MP_UNREACH_NLRI is that family's.
func updateFamilies(u *bgp.BGPUpdate) (fams []bgp.Family, eor bool) {
	if len(u.WithdrawnRoutes) == 0 && len(u.PathAttributes) == 0 && len(u.NLRI) == 0 {
		return []bgp.Family{bgp.RF_IPv4_UC}, true
	}
	add := func(f bgp.Family) {
		if !slices.Contains(fams, f) {
			fams = append(fams, f)
		}
	}
	if len(u.WithdrawnRoutes) > 0 || len(u.NLRI) > 0 {
		add(bgp.RF_IPv4_UC)
	}
	for _, a := range u.PathAttributes {
		switch a := a.(type) {
		case *bgp.PathAttributeMpReachNLRI:
			add(bgp.NewFamily(a.AFI, a.SAFI))
		case *bgp.PathAttributeMpUnreachNLRI:
			add(bgp.NewFamily(a.AFI, a.SAFI))
			eor = eor || (len(a.Value) == 0 && len(u.PathAttributes) == 1 && len(u.NLRI) == 0 && len(u.WithdrawnRoutes) == 0)
		}
	}
	return fams, eor
}
