package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Probe GETs a URL from inside a namespace at a steady pace, each GET on a
// new connection as a fresh client would, and counts the GETs that fail.
type Probe struct {
	URL    string
	cancel context.CancelFunc
	done   chan struct{}
	start  time.Time
	// Written by the probing goroutine, read after done is closed.
	sent, failed int
	resets       int      // of the failures: connections reset after they were established
	failures     []string // the first few
}

// StartProbe GETs url from namespace ns every `every` until Stop, or for
// at most limit (no probe outlives its test).
func StartProbe(ns, url string, every, limit time.Duration) *Probe {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	p := &Probe{URL: url, cancel: cancel, done: make(chan struct{}), start: time.Now()}
	client := HTTPClient(ns, 2*time.Second)
	go func() {
		defer close(p.done)
		for ctx.Err() == nil {
			err := GetOK(ctx, client, url)
			if ctx.Err() != nil {
				return // stopped, maybe mid-GET: that GET does not count
			}
			p.sent++
			if err != nil {
				p.failed++
				if errors.Is(err, syscall.ECONNRESET) {
					p.resets++
				}
				if len(p.failures) < 5 {
					p.failures = append(p.failures, fmt.Sprintf("at %v (%s): %v", time.Since(p.start).Round(time.Millisecond), time.Now().UTC().Format("15:04:05.000"), err))
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(every):
			}
		}
	}()
	return p
}

// GetOK GETs u and reports any failure, a status other than 200 included.
func GetOK(ctx context.Context, c *http.Client, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return nil
}

// Stop ends the probe; it may be called again.
func (p *Probe) Stop() {
	p.cancel()
	<-p.done
}

// Sent stops the probe and returns how many GETs completed.
func (p *Probe) Sent() int {
	p.Stop()
	return p.sent
}

// Failed stops the probe and returns how many GETs failed.
func (p *Probe) Failed() int {
	p.Stop()
	return p.failed
}

// ExpectNoLoss stops the probe and fails the test if any GET failed.
func (p *Probe) ExpectNoLoss(t testing.TB, during string) {
	t.Helper()
	p.ExpectNoLossBut(t, during, 0)
}

// ExpectNoLossBut stops the probe and fails the test if any GET failed,
// except connections reset in flight when the address moved: at most one
// per move (moves). Moving an address to another node resets a connection
// that is open at that instant (the new node has no state for it:
// kube-proxy sends it to a backend that answers with a reset). Every other
// failure (no answer, refused, timeout) is a gap, and fails.
func (p *Probe) ExpectNoLossBut(t testing.TB, during string, moves int) {
	t.Helper()
	p.Stop()
	took := time.Since(p.start).Round(time.Millisecond)
	failures := strings.Join(p.failures, "; ")
	switch {
	case p.sent == 0:
		t.Errorf("no GET to %s completed %s (%v)", p.URL, during, took)
	case p.failed > p.resets || p.resets > moves:
		t.Errorf("%d of %d GETs to %s failed %s (%v), %d reset in flight at %d address moves: %s",
			p.failed, p.sent, p.URL, during, took, p.resets, moves, failures)
	case p.failed > 0:
		t.Logf("KNOWN ISSUE (issue 12): %d GETs to %s %s (%v): %d reset in flight at one of the %d address moves, none lost otherwise: %s",
			p.sent, p.URL, during, took, p.resets, moves, failures)
	case moves > 0:
		t.Logf("%d GETs to %s %s (%v) across %d address moves, none lost", p.sent, p.URL, during, took, moves)
	default:
		t.Logf("%d GETs to %s %s (%v), none lost", p.sent, p.URL, during, took)
	}
}
