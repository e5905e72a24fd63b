package bgp_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/heraldlb/herald/e2e/lab"
)

// A speaker that stops on purpose, with graceful restart and BFD on its
// session, must not look like a failed node: the router keeps its routes
// through the restart. A router that honours BFD AdminDown (RFC 5882
// section 3.2) or treats BFD down as a graceful restart (BIRD `bfd
// graceful`; FRR `bfd check-control-plane-failure` with a restarting peer)
// keeps forwarding, and no GET is lost.
func TestGracefulRestartWithBFDKeepsRoute(t *testing.T) {
	t.Run("bird", func(t *testing.T) {
		l := needBIRD(t)
		ctx := t.Context()
		useBIRD(t, l, birdScenario{
			BIRDPeering:     lab.BIRDPeering{Peering: lab.Peering{NodeASN: lab.BIRDASN, BFD: true}, BFDGraceful: true, GracefulRestart: true},
			GracefulRestart: true,
		}, true)
		vip, node := "198.19.0.47", quietSpeaker(t, l)
		hop := l.NodeAddrs(false, node)[0]
		restartThroughBFD(t, l, node, vip, gracefulRouter{
			name: "BIRD", ns: l.BIRDNS(), client: l.BIRDExternalNS(), log: l.LogPath("bird"),
			ready: func() {
				l.ExpectBIRDRoute(t, vip, []netip.Addr{hop}, 30*time.Second)
				deadline := time.Now().Add(10 * time.Second)
				for {
					s, err := l.BIRDBFDSessions(ctx)
					if err == nil && s[hop] == "Up" {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("BIRD's BFD session with %s not up after 10 s: %v (err %v)", node, s, err)
					}
					time.Sleep(100 * time.Millisecond)
				}
			},
			restarted: func() { waitBIRDRestartDone(t, l, hop, 30*time.Second) },
			state: func() string {
				protos, err := l.BIRDProtocols(ctx)
				bfd, _ := l.BIRDBFDSessions(ctx)
				p := protos[hop]
				return fmt.Sprintf("BGP %s (%s), last error %q, restarting %v; BFD %s (err %v)", p.State, p.Info, p.LastError, p.Restarting, bfd[hop], err)
			},
		})
	})
	t.Run("frr", func(t *testing.T) {
		l := needLab(t)
		ctx := t.Context()
		s := scenario{Peering: lab.Peering{NodeASN: lab.RouterASN, BFD: true}, GracefulRestart: true}
		// FRR keeps a restarting peer's routes through a BFD down when told
		// to check the peer's control-plane independence (C bit); use
		// re-applies the same peering and leaves these lines in place.
		if err := l.PeerNodes(ctx, s.Peering); err != nil {
			t.Fatal(err)
		}
		lines := []string{fmt.Sprintf("router bgp %d", lab.RouterASN)}
		for _, a := range l.PeerAddresses(s.Peering) {
			lines = append(lines, "neighbor "+a.String()+" bfd check-control-plane-failure")
		}
		if err := l.ConfigureRouter(ctx, lines...); err != nil {
			_ = l.UnpeerNodes(ctx)
			t.Fatal(err)
		}
		use(t, l, s, true)
		vip, node := "198.19.0.48", quietSpeaker(t, l)
		hop := l.NodeAddrs(false, node)[0]
		restartThroughBFD(t, l, node, vip, gracefulRouter{
			name: "FRR", ns: l.RouterNS(), client: l.ExternalNS(), log: l.LogPath("frr-bgpd"),
			ready: func() {
				l.ExpectRoute(t, vip, []netip.Addr{hop}, 30*time.Second)
				deadline := time.Now().Add(10 * time.Second)
				for {
					nbrs, err := l.BGPNeighbors(ctx)
					if n := nbrs[hop]; err == nil && n.BFD == "Up" && n.GracefulRestart == "advertisedAndReceived" {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("FRR's session with %s lacks BFD Up or graceful restart after 10 s: %+v (err %v)", node, nbrs[hop], err)
					}
					time.Sleep(100 * time.Millisecond)
				}
			},
			restarted: func() {
				deadline := time.Now().Add(30 * time.Second)
				for {
					paths, err := l.BGPPaths(ctx, lab.HostPrefix(vip))
					if err == nil && len(paths) == 1 && paths[0].NextHop == hop && !paths[0].Stale {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("the restarted speaker did not refresh its route at FRR within 30 s: %+v (err %v)", paths, err)
					}
					time.Sleep(100 * time.Millisecond)
				}
			},
			state: func() string {
				nbrs, err := l.BGPNeighbors(ctx)
				n := nbrs[hop]
				paths, _ := l.BGPPaths(ctx, lab.HostPrefix(vip))
				bfd, berr := l.Vtysh(ctx, "show bfd peer "+hop.String())
				return fmt.Sprintf("BGP %s, last reset %q, dropped %d, paths %+v; BFD %s (err %v); bfdd:\n%s (err %v)",
					n.State, n.LastResetDueTo, n.ConnectionsDropped, paths, n.BFD, err, strings.TrimSpace(bfd), berr)
			},
		})
	})
}

// gracefulRouter is what restartThroughBFD needs to know of one router.
type gracefulRouter struct {
	name, ns, client, log string
	ready                 func()        // waits until the route and BFD are up
	restarted             func()        // waits until the restarted speaker refreshed its route
	state                 func() string // the router's view of the node's session and route
}

// restartThroughBFD serves vip from a pod on node alone (Local policy),
// then stops the node's speaker with SIGTERM, waits well past BFD's
// detection time, and starts it again, while GETting the VIP from behind
// the router and sampling the router's kernel table. The router's
// namespace is captured too: the speaker must take BFD AdminDown before
// it closes the BGP session, or the router sees a failed node.
func restartThroughBFD(t *testing.T, l *lab.Lab, node, vip string, r gracefulRouter) {
	ctx := t.Context()
	t.Cleanup(func() { restartSpeakerIfGone(t, l, node) })
	app(t, l, "grbfd-"+strings.ToLower(r.name), "web", vip, true, map[string]string{"a": node})
	r.ready()
	url := "http://" + net.JoinHostPort(vip, "80") + "/"
	if _, err := l.HTTPGetSteady(ctx, r.client, url, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	hop := l.NodeAddrs(false, node)[0]
	capture, err := l.StartCapture(ctx, r.ns, "grbfd-"+strings.ToLower(r.name), "udp port 3784 or tcp port 179")
	if err != nil {
		t.Fatal(err)
	}
	defer capture.Stop()
	probe := lab.StartProbe(r.client, url, 50*time.Millisecond, 2*time.Minute)
	defer probe.Stop()
	watch := watchKernelRoute(l, r.ns, lab.HostPrefix(vip), hop, 2*time.Minute)
	defer watch.Stop()
	time.Sleep(time.Second)
	logFrom := logSize(r.log)
	sigterm := time.Now()
	stopped := stopSpeaker(t, l, node, 10*time.Second)
	time.Sleep(2 * time.Second) // BFD (100 ms × 3) has long decided
	t.Logf("%s 2 s after %s's speaker exited: %s", r.name, node, r.state())
	if _, err := startSpeaker(ctx, l, node); err != nil {
		t.Fatal(err)
	}
	r.restarted()
	time.Sleep(2 * time.Second)
	t.Logf("%s logged after the SIGTERM:\n%s", r.name, logSince(r.log, logFrom, node, hop.String(), "BFD", "bfd"))
	raw, err := os.ReadFile(capture.Stop())
	if err != nil {
		t.Fatal(err)
	}
	segs, err := readPcap(raw)
	if err != nil {
		t.Fatalf("%s: %v", capture.Path, err)
	}
	switch down, diag, closed := plannedStop(segs, hop, sigterm); {
	case down.IsZero():
		t.Errorf("%s's speaker sent %s no BFD AdminDown after SIGTERM (it closed BGP %s after SIGTERM; capture %s)",
			node, r.name, sinceOrNever(closed, sigterm), capture.Path)
	case !closed.IsZero() && closed.Before(down):
		t.Errorf("%s's speaker closed BGP %v after SIGTERM, before its BFD AdminDown (%v; capture %s)",
			node, closed.Sub(sigterm).Round(time.Millisecond), down.Sub(sigterm).Round(time.Millisecond), capture.Path)
	default:
		t.Logf("%s's speaker: BFD AdminDown (diagnostic %d) %s after SIGTERM, BGP closed %s after SIGTERM (%s after the AdminDown)",
			node, diag, sinceOrNever(down, sigterm), sinceOrNever(closed, sigterm), sinceOrNever(closed, down))
	}
	watch.expectNoGap(t, stopped, r.name)
	probe.ExpectNoLoss(t, "across a graceful restart of "+node+"'s speaker with BFD ("+r.name+")")
}

// plannedStop reads how the speaker at addr left, from the segments
// captured after since: its first BFD Control packet in state AdminDown
// (RFC 5880 section 4.1: the state is the top two bits of the second byte,
// 0 is AdminDown; the diagnostic is the low five bits of the first), and
// its first FIN or RST on a BGP connection.
func plannedStop(segs []segment, addr netip.Addr, since time.Time) (adminDown time.Time, diag uint8, closed time.Time) {
	for _, s := range segs {
		if s.at.Before(since) || s.src.Addr() != addr {
			continue
		}
		switch {
		case s.proto == protoUDP && s.dst.Port() == 3784 && len(s.payload) >= 2 && s.payload[1]>>6 == 0 && adminDown.IsZero():
			adminDown, diag = s.at, s.payload[0]&0x1f
		case s.proto == protoTCP && (s.src.Port() == 179 || s.dst.Port() == 179) && s.flags&(tcpFIN|tcpRST) != 0 && closed.IsZero():
			closed = s.at
		}
	}
	return adminDown, diag, closed
}

// sinceOrNever renders how long after from t was ("never" for no t).
func sinceOrNever(t, from time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Sub(from).Round(100 * time.Microsecond).String()
}
