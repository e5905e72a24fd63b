package speaker

import (
	"context"
	"io"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// A node announces only while its Service data path works: kube-proxy's
// /healthz on the node answers 200. A dead kube-proxy refuses the
// connection at once; a stuck one answers 503 (its rules are stale) or not
// in time. Two failed polls in a row (about 0.2 s) take the node out; the
// first good answer puts it back, as a rejoining member, so it takes
// addresses back only after the hold-down.
const (
	dataPathPoll     = 100 * time.Millisecond
	dataPathFailures = 2
)

// watchDataPath polls kube-proxy's health endpoint until ctx ends and
// tells the members (and through them the other speakers) and the loop.
func (s *Speaker) watchDataPath(ctx context.Context) {
	p := s.opts.ProxySync
	if p == nil {
		return
	}
	tick := time.NewTicker(dataPathPoll)
	defer tick.Stop()
	failed := 0
	for {
		err := p.healthy(ctx)
		switch {
		case err == nil:
			if failed >= dataPathFailures {
				s.log.Info("data path healthy again: kube-proxy answers; taking addresses back after the hold-down", zap.String("kubeProxy", p.URL))
			}
			failed = 0
			s.setDataPath(true, "")
		case ctx.Err() != nil:
			return
		default:
			if failed++; failed == dataPathFailures {
				s.log.Error("data path down: kube-proxy's health endpoint does not answer healthy; this node announces nothing until it does (clusters without kube-proxy: --kube-proxy-healthz=\"\")",
					zap.String("kubeProxy", p.URL), zap.Error(err))
				s.setDataPath(false, err.Error())
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
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

// healthy asks kube-proxy once: nil when it answers 200.
func (p *ProxySync) healthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*dataPathPoll)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so the connection is reused
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &proxyUnhealthy{resp.Status}
	}
	return nil
}

type proxyUnhealthy struct{ status string }

func (e *proxyUnhealthy) Error() string { return "kube-proxy answers " + e.status }
