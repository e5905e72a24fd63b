package bgp

import "github.com/prometheus/client_golang/prometheus"

var (
	descUp = prometheus.NewDesc("herald_bgp_session_up",
		"1 if the BGP session is established.", []string{"peer"}, nil)
	descState = prometheus.NewDesc("herald_bgp_session_state",
		"1 for the BGP session's current FSM state.", []string{"peer", "state"}, nil)
	descPrefixes = prometheus.NewDesc("herald_bgp_prefixes_advertised",
		"Prefixes advertised on the session.", []string{"peer"}, nil)
	descUpdates = prometheus.NewDesc("herald_bgp_updates_sent_total",
		"UPDATE messages sent on the current session.", []string{"peer"}, nil)
	descBFD = prometheus.NewDesc("herald_bgp_bfd_up",
		"1 if the peer's BFD session is up (peers with BFD only).", []string{"peer"}, nil)
	descResets = prometheus.NewDesc("herald_bgp_session_resets_total",
		"Times the session went down from established.", []string{"peer"}, nil)
)

var states = []string{"idle", "connect", "active", "opensent", "openconfirm", "established"}

// collector reads the sessions at scrape time.
type collector struct{ s *Server }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descState, descPrefixes, descUpdates, descBFD, descResets} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	peers, _ := c.s.snapshot()
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, p := range peers {
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, b(p.Established), p.Name)
		for _, st := range states {
			ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, b(p.State == st), p.Name, st)
		}
		ch <- prometheus.MustNewConstMetric(descPrefixes, prometheus.GaugeValue, float64(p.Advertised), p.Name)
		ch <- prometheus.MustNewConstMetric(descUpdates, prometheus.CounterValue, float64(p.updatesSent), p.Name)
		if p.hasBFD {
			ch <- prometheus.MustNewConstMetric(descBFD, prometheus.GaugeValue, b(p.BFD == "up"), p.Name)
		}
		ch <- prometheus.MustNewConstMetric(descResets, prometheus.CounterValue, float64(p.resets), p.Name)
	}
}
