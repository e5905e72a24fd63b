package deploy

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/heraldlb/herald/e2e/lab"
)

// peering is how the router peers with every node in these tests: iBGP
// over the nodes' IPv4 addresses.
var peering = lab.Peering{NodeASN: lab.RouterASN}

// bgpPeerYAML is the Herald peer "tor" for peering, with graceful restart
// (RFC 4724) or without.
func bgpPeerYAML(gracefulRestart bool) string {
	s := fmt.Sprintf("bgpPeers:\n- name: tor\n  address: %s\n  asn: %d\n  myASN: %d\n  holdTime: 9s\n  connectTime: 1s\n",
		peering.RouterAddress(), lab.RouterASN, peering.NodeASN)
	if gracefulRestart {
		s += "  gracefulRestart: true\n"
	}
	return s
}

// peerRouter makes the router peer with every node until the test ends.
func peerRouter(t *testing.T, l *lab.Lab) {
	t.Helper()
	if err := l.PeerNodes(t.Context(), peering); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.UnpeerNodes(context.Background()); err != nil {
			t.Errorf("restore the router: %v", err)
		}
	})
}

// routeWatch polls the router's BGP table and installed routes for one
// prefix and counts the polls that found no route.
type routeWatch struct {
	prefix netip.Prefix
	cancel context.CancelFunc
	done   chan struct{}
	start  time.Time
	// Written by the polling goroutine, read after done is closed.
	polls, missing, errs int
	stale                int // polls that found a stale path (kept by graceful restart)
	gaps                 []string
}

func watchRoute(t *testing.T, l *lab.Lab, vip string) *routeWatch {
	ctx, cancel := context.WithTimeout(context.Background(), probeFor)
	w := &routeWatch{prefix: lab.HostPrefix(vip), cancel: cancel, done: make(chan struct{}), start: time.Now()}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			paths, err := l.BGPPaths(ctx, w.prefix)
			var rib []netip.Addr
			if err == nil {
				rib, err = l.RIBNextHops(ctx, w.prefix)
			}
			if ctx.Err() != nil {
				return
			}
			w.polls++
			switch {
			case err != nil:
				w.errs++
			case len(paths) == 0 || len(rib) == 0:
				w.missing++
				if len(w.gaps) < 5 {
					w.gaps = append(w.gaps, fmt.Sprintf("at %v (%s): %d paths, installed next hops %v",
						time.Since(w.start).Round(time.Millisecond), time.Now().UTC().Format("15:04:05.000"), len(paths), rib))
				}
			case slices.ContainsFunc(paths, func(p lab.Path) bool { return p.Stale }):
				w.stale++
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *routeWatch) stop() {
	w.cancel()
	<-w.done
}

// expectKept stops the watch and fails the test if any poll found the
// router without the route.
func (w *routeWatch) expectKept(t *testing.T, during string) {
	t.Helper()
	w.stop()
	switch {
	case w.polls == 0 || w.errs > w.polls/10:
		t.Errorf("the router's table for %s was read %d times %s, %d errors", w.prefix, w.polls, during, w.errs)
	case w.missing > 0:
		t.Errorf("%d of %d polls found no route to %s at the router %s: %v", w.missing, w.polls, w.prefix, during, w.gaps)
	default:
		t.Logf("the router held %s at all %d polls %s (%d with a stale path, %d read errors)", w.prefix, w.polls, during, w.stale, w.errs)
	}
}
