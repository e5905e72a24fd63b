package speaker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"
)

// A node announces only while its Service data path works: kube-proxy's
// /healthz on the node answers 200. A dead kube-proxy refuses the
// connection at once and a stuck one answers 503 (its rules are stale):
// two such answers not separated by a good one (about 0.2 s) take the
// node out. No answer in time proves nothing on a busy node, where this
// speaker or kube-proxy may wait for a CPU (under make bench's load, two
// timed-out polls in a row moved a node's addresses away and back): only
// dataPathSilent without any answer does. The first good answer puts the
// node back, as a rejoining member, so it takes addresses back only after
// the hold-down.
const (
	dataPathPoll     = 100 * time.Millisecond
	dataPathFailures = 2
	dataPathSilent   = 2 * time.Second
)

// watchDataPath polls kube-proxy's health endpoint until ctx ends and
// tells the members (and through them the other speakers) and the loop.
// The same answers tell the kube-proxy gate when rules were last synced.
func (s *Speaker) watchDataPath(ctx context.Context) {
	p := s.opts.ProxySync
	if p == nil {
		return
	}
	tick := time.NewTicker(dataPathPoll)
	defer tick.Stop()
	var v dataPathVerdict
	for {
		err := p.poll(ctx)
		if ctx.Err() != nil {
			return
		}
		var unhealthy *proxyUnhealthy
		if answered := err == nil || errors.As(err, &unhealthy); answered && s.gateHolds.Load() {
			s.poke() // the gate decides on this fresh answer
		}
		switch up, changed, why := v.note(err, time.Now()); {
		case !changed:
		case up:
			s.log.Info("data path healthy again: kube-proxy answers; taking addresses back after the hold-down", zap.String("kubeProxy", p.URL))
			s.setDataPath(true, "")
		default:
			s.log.Error("data path down: kube-proxy's health endpoint does not answer healthy; this node announces nothing until it does (clusters without kube-proxy: --kube-proxy-healthz=\"\")",
				zap.String("kubeProxy", p.URL), zap.String("why", why))
			s.setDataPath(false, why)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// dataPathVerdict turns kube-proxy's answers into up or down (see the rule
// above). The zero value is up, with no answer heard yet.
type dataPathVerdict struct {
	down   bool
	failed int       // refusals and unhealthy answers in a row
	heard  time.Time // the last answer of any kind (or refusal); at first, the first poll
}

// note takes one poll's outcome at now; it returns whether the data path is
// up, whether that changed, and why it is down.
func (v *dataPathVerdict) note(err error, now time.Time) (up, changed bool, why string) {
	if v.heard.IsZero() {
		v.heard = now // silence counts from the first poll
	}
	wasDown := v.down
	switch {
	case err == nil:
		v.failed, v.heard, v.down = 0, now, false
	case isTimeout(err):
		if silent := now.Sub(v.heard); silent >= dataPathSilent {
			v.down = true
			why = fmt.Sprintf("kube-proxy has not answered for %s: %v", silent.Round(time.Millisecond), err)
		}
	default:
		v.heard = now
		if v.failed++; v.failed >= dataPathFailures {
			v.down, why = true, err.Error()
		}
	}
	return !v.down, v.down != wasDown, why
}

// isTimeout: kube-proxy did not answer in time (no verdict on its health).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func (s *Speaker) setDataPath(ok bool, why string) {
	if ok == s.members.DataPathOK() {
		return
	}
	s.mu.Lock()
	s.dataPathWhy = why
	s.mu.Unlock()
	s.members.SetDataPath(ok)
	if ok {
		s.metrics.dataPath.Set(1)
	} else {
		s.metrics.dataPath.Set(0)
	}
	s.poke()
}

type proxyUnhealthy struct{ status string }

func (e *proxyUnhealthy) Error() string { return "kube-proxy answers " + e.status }
