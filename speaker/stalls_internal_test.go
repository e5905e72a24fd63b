package speaker

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/zap"
)

// startMember runs a speaker's membership on addr:port over loopback, with
// the lab's fast timings.
func startMember(t *testing.T, ctx context.Context, name, addr string, port int, peers []string) *Members {
	t.Helper()
	m := NewMembers(MemberOptions{
		Node: name, Bind: netip.MustParseAddr(addr), Port: port, SecretKey: make([]byte, 32), HoldDown: time.Second,
		ProbeInterval: 60 * time.Millisecond, ProbeTimeout: 30 * time.Millisecond, SuspicionMult: 3,
		Log: zap.NewNop(),
	})
	m.SetPeers(peers)
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	t.Cleanup(func() { <-done })
	return m
}

// rawMember is a bare memberlist on addr:port that joins 127.0.0.1: a
// speaker whose death can come without a goodbye (Shutdown).
func rawMember(t *testing.T, name, addr string, port int) *memberlist.Memberlist {
	t.Helper()
	cfg := memberlist.DefaultLANConfig()
	cfg.Name, cfg.BindAddr, cfg.BindPort, cfg.AdvertiseAddr, cfg.AdvertisePort = name, addr, port, addr, port
	cfg.SecretKey = make([]byte, 32)
	cfg.ProbeInterval, cfg.ProbeTimeout, cfg.GossipInterval = 60*time.Millisecond, 30*time.Millisecond, 20*time.Millisecond
	cfg.LogOutput = io.Discard
	ml, err := memberlist.Create(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ml.Shutdown() })
	// The peer at 127.0.0.1 starts apart and may not listen yet.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, err := ml.Join([]string{net.JoinHostPort("127.0.0.1", strconv.Itoa(port))})
		if err == nil {
			return ml
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
}

// freePort finds a UDP and TCP port free on every one of addrs.
func freePort(t *testing.T, addrs ...string) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		free := true
		for _, a := range addrs {
			for _, network := range []string{"tcp", "udp"} {
				c, err := net.Listen(network, fmt.Sprintf("%s:%d", a, port))
				if network == "udp" {
					var pc net.PacketConn
					pc, err = net.ListenPacket(network, fmt.Sprintf("%s:%d", a, port))
					if err == nil {
						pc.Close()
					}
				} else if err == nil {
					c.Close()
				}
				free = free && err == nil
			}
		}
		if free {
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// TestStalledMemberHeldWhileItsHostAnswers: a member memberlist declares
// dead stays in the others' view for the grace while its host accepts a
// connection on its memberlist port (a speaker starved of CPU), and goes at
// once when nothing listens there (the speaker is gone) or when it said it
// was leaving. Real memberlist over loopback; b's death is a bare
// memberlist shut down without a goodbye (or a speaker stopping), and a
// plain listener plays its host's kernel.
func TestStalledMemberHeldWhileItsHostAnswers(t *testing.T) {
	for _, tc := range []struct {
		name       string
		kernel     bool // something accepts connections on b's port after its death
		graceful   bool // b leaves as a stopping speaker does
		minHeld    time.Duration
		maxHeldFor time.Duration
	}{
		{name: "host answers", kernel: true, minHeld: stallGrace - 50*time.Millisecond, maxHeldFor: stallGrace + 300*time.Millisecond},
		{name: "nothing listens", maxHeldFor: 300 * time.Millisecond},
		{name: "leaving", graceful: true, maxHeldFor: 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			port := freePort(t, "127.0.0.1", "127.0.0.2")
			a := startMember(t, ctx, "a", "127.0.0.1", port, nil)
			bctx, stopB := context.WithCancel(ctx)
			defer stopB()
			var seen func() int
			var die func()
			if tc.graceful {
				b := startMember(t, bctx, "b", "127.0.0.2", port, []string{"127.0.0.1"})
				seen, die = b.NumMembers, stopB
			} else {
				b := rawMember(t, "b", "127.0.0.2", port)
				seen, die = b.NumMembers, func() {
					if err := b.Shutdown(); err != nil {
						t.Fatal(err)
					}
				}
			}
			for deadline := time.Now().Add(5 * time.Second); a.NumMembers() < 2 || seen() < 2; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("a and b never saw each other")
				}
			}
			time.Sleep(200 * time.Millisecond) // b's metadata reached a

			die()
			if tc.kernel {
				l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(port)))
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close() // never accepts: the kernel completes connections alone
			}
			var dead, gone time.Time
			for deadline := time.Now().Add(5 * time.Second); gone.IsZero(); time.Sleep(2 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("b still a member of a's view 5 s after its death (memberlist declared it dead: %v)", !dead.IsZero())
				}
				a.mu.Lock()
				ml := a.ml
				a.mu.Unlock()
				if dead.IsZero() && len(ml.Members()) < 2 {
					dead = time.Now()
				}
				if a.NumMembers() < 2 {
					gone = time.Now()
				}
			}
			if dead.IsZero() {
				t.Fatal("b left a's view before memberlist declared it dead")
			}
			held := gone.Sub(dead)
			t.Logf("b held in a's view %v after memberlist declared it dead", held)
			if held < tc.minHeld || held > tc.maxHeldFor {
				t.Errorf("b held %v after its death, want %v to %v", held, tc.minHeld, tc.maxHeldFor)
			}
		})
	}
}

// TestDeathAfterOwnStall: a speaker told it was declared dead steps back
// unless its own stall was one the others forgive (long enough to explain
// the death, shorter than stallSafe): then it only counts a suspicion.
func TestDeathAfterOwnStall(t *testing.T) {
	for _, tc := range []struct {
		name      string
		stall     time.Duration // since the last beat
		stepsBack bool
	}{
		{"no stall: a partition", 50 * time.Millisecond, true},
		{"a stall the others forgive", 700 * time.Millisecond, false},
		{"a stall longer than their grace", 1500 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMembers(MemberOptions{Node: "a", HoldDown: time.Second, Log: zap.NewNop()})
			m.beatAt = time.Now().Add(-tc.stall)
			m.refuted(true)
			var backs uint64
			for deadline := time.Now().Add(200 * time.Millisecond); time.Now().Before(deadline) && backs == 0; time.Sleep(2 * time.Millisecond) {
				backs, _ = m.StepBacks()
			}
			if got := backs > 0; got != tc.stepsBack {
				t.Errorf("after a %v stall, stepped back: %v, want %v", tc.stall, got, tc.stepsBack)
			}
			if got, want := m.Suspicions() > 0, !tc.stepsBack; got != want {
				t.Errorf("after a %v stall, counted a suspicion: %v, want %v", tc.stall, got, want)
			}
		})
	}
}
