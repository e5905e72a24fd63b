package speaker_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/heraldlb/herald/speaker"
)

func member(t *testing.T, ctx context.Context, name, addr string, port int, peers []string) *speaker.Members {
	key := make([]byte, 32)
	m := speaker.NewMembers(speaker.MemberOptions{
		Node: name, Bind: netip.MustParseAddr(addr), Port: port, SecretKey: key, HoldDown: time.Second,
		ProbeInterval: 60 * time.Millisecond, ProbeTimeout: 30 * time.Millisecond, SuspicionMult: 3,
		Log: zap.NewNop(), // memberlist may still log after Run returns
	})
	m.SetPeers(peers)
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	t.Cleanup(func() { <-done })
	return m
}

// TestJoinedAndSettledAgree: a speaker that starts next to a running one
// never counts itself joined while it sees itself alone (it would claim
// every address), and both judge its hold-down alike, sample for sample
// (they used to disagree for as long as gossip took, and both answered).
// Real memberlist over loopback, two addresses.
func TestJoinedAndSettledAgree(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	port := speaker.FreePort(t, "127.0.0.1", "127.0.0.2")
	a := member(t, ctx, "a", "127.0.0.1", port, nil)
	for deadline := time.Now().Add(5 * time.Second); !a.Joined(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a alone never counted itself joined")
		}
	}
	time.Sleep(1500 * time.Millisecond) // a is settled; b will be a returning member
	// b learns its peers a moment after it starts, as a speaker does from
	// the Node objects: it joins at once, not at its next tick, and the
	// delay between b's start and a's sighting of it changes nobody's view.
	b := member(t, ctx, "b", "127.0.0.2", port, nil)
	time.Sleep(300 * time.Millisecond)
	b.SetPeers([]string{"127.0.0.1"})
	peersSet := time.Now()
	for b.NumMembers() < 2 {
		if b.Joined() {
			t.Fatal("b counts itself joined while it sees only itself")
		}
		if time.Since(peersSet) > 500*time.Millisecond {
			t.Fatal("b did not join a within 500 ms of learning its address")
		}
		time.Sleep(5 * time.Millisecond)
	}
	disagree, sawSettled := 0, false
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if b.Joined() && b.NumMembers() < 2 {
			t.Fatalf("b counts itself joined while it sees %d member(s)", b.NumMembers())
		}
		if !b.Joined() || a.NumMembers() < 2 {
			continue
		}
		va, vb := a.Alive()["b"], b.Alive()["b"]
		if va != vb {
			disagree++
		}
		sawSettled = sawSettled || (va && vb)
	}
	if !sawSettled {
		t.Error("b never settled in both views")
	}
	// Samples straddling the instant b settles may differ once.
	if disagree > 1 {
		t.Errorf("a and b judged b's hold-down differently in %d samples", disagree)
	}
}

// TestJoinedStaysWhenAPeerGoes: a speaker that found all its peers stays
// joined when one of them goes. It used to count itself joined only while
// every peer was a member, until its first join attempt to a missing one
// had completed: the first failover of each speaker's life waited for a
// join to the dead node (up to a 1 s TCP timeout plus the 1 s tick).
func TestJoinedStaysWhenAPeerGoes(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	port := speaker.FreePort(t, "127.0.0.1", "127.0.0.2", "127.0.0.3")
	a := member(t, ctx, "a", "127.0.0.1", port, nil)
	cctx, stopC := context.WithCancel(ctx)
	defer stopC()
	b := member(t, ctx, "b", "127.0.0.2", port, []string{"127.0.0.1"})
	c := member(t, cctx, "c", "127.0.0.3", port, []string{"127.0.0.1"})
	for deadline := time.Now().Add(5 * time.Second); a.NumMembers() < 3 || b.NumMembers() < 3 || c.NumMembers() < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the three never saw each other")
		}
	}
	// a learns its peers once they are all members already (the others
	// joined it): it never had to join anyone itself.
	a.SetPeers([]string{"127.0.0.2", "127.0.0.3"})
	for deadline := time.Now().Add(2 * time.Second); !a.Joined(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a never counted itself joined")
		}
	}
	stopC()
	for end := time.Now().Add(2500 * time.Millisecond); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if !a.Joined() {
			t.Fatalf("a stopped counting itself joined when c went (%d members)", a.NumMembers())
		}
	}
	if a.NumMembers() != 2 {
		t.Errorf("a sees %d members after c left, want 2", a.NumMembers())
	}
}
