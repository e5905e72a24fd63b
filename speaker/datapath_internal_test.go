package speaker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestDataPathVerdict(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	unhealthy := &proxyUnhealthy{"503 Service Unavailable"}
	timeout := fmt.Errorf("get: %w", context.DeadlineExceeded)
	type poll struct {
		after    time.Duration // since the previous poll
		err      error
		wantUp   bool
		wantFlip bool
	}
	for _, tc := range []struct {
		name  string
		polls []poll
	}{
		{"healthy", []poll{{0, nil, true, false}, {100 * time.Millisecond, nil, true, false}}},
		{"killed: refused twice in a row", []poll{
			{0, nil, true, false}, {100 * time.Millisecond, refused, true, false}, {100 * time.Millisecond, refused, false, true},
			{100 * time.Millisecond, refused, false, false}, {100 * time.Millisecond, nil, true, true}}},
		{"stuck: unhealthy twice", []poll{{0, unhealthy, true, false}, {100 * time.Millisecond, unhealthy, false, true}}},
		{"one refusal between answers", []poll{{0, refused, true, false}, {100 * time.Millisecond, nil, true, false}, {100 * time.Millisecond, refused, true, false}}},
		{"busy: timeouts shorter than the silence", []poll{
			{0, nil, true, false}, {200 * time.Millisecond, timeout, true, false}, {200 * time.Millisecond, timeout, true, false},
			{dataPathSilent - 500*time.Millisecond, timeout, true, false}, {100 * time.Millisecond, nil, true, false}}},
		{"silent for dataPathSilent", []poll{
			{0, nil, true, false}, {dataPathSilent - time.Millisecond, timeout, true, false}, {time.Millisecond, timeout, false, true}}},
		{"silent from the start", []poll{{0, timeout, true, false}, {dataPathSilent, timeout, false, true}}},
		{"timeouts do not reset refusals", []poll{{0, refused, true, false}, {200 * time.Millisecond, timeout, true, false}, {100 * time.Millisecond, refused, false, true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v dataPathVerdict
			now := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
			for i, p := range tc.polls {
				now = now.Add(p.after)
				up, flip, why := v.note(p.err, now)
				if up != p.wantUp || flip != p.wantFlip {
					t.Fatalf("poll %d (%v): up %v changed %v, want %v %v", i, p.err, up, flip, p.wantUp, p.wantFlip)
				}
				if !up && flip && why == "" {
					t.Errorf("poll %d: down without a reason", i)
				}
			}
		})
	}
}

// A kube-proxy that accepts the connection and never answers is a timeout,
// not a verdict; one that is gone is refused at once.
func TestPollErrorKinds(t *testing.T) {
	stall := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-stall }))
	defer srv.Close()
	defer close(stall)
	p := NewProxySync(srv.URL)
	start := time.Now()
	err := p.poll(t.Context())
	if !isTimeout(err) {
		t.Errorf("a stalled kube-proxy: %v, want a timeout", err)
	}
	if d := time.Since(start); d > 10*dataPathPoll {
		t.Errorf("the poll took %v", d)
	}
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer plain.Close()
	if err := NewProxySync(plain.URL).poll(t.Context()); err != nil {
		t.Errorf("a 200 that is not kube-proxy's JSON: %v, want healthy", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	err = NewProxySync("http://" + addr + "/healthz").poll(t.Context())
	if err == nil || isTimeout(err) || !strings.Contains(err.Error(), "refused") {
		t.Errorf("nothing listening: %v, want refused", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Error("refused counted as a deadline")
	}
}
