package speaker

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the speaker's own series (l2 registers its ARP/NDP counters).
type Metrics struct {
	members          prometheus.Gauge
	ownershipChanges prometheus.Counter
	configValid      prometheus.Gauge
	dataPath         prometheus.Gauge
	stepBacks        *prometheus.CounterVec
	conflicts        *prometheus.CounterVec
	decisions        prometheus.Histogram
}

// NewMetrics creates the speaker's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		members: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_speaker_members", Help: "Live speakers in memberlist, this one included.",
		}),
		ownershipChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_speaker_ownership_changes_total", Help: "Addresses this node took over, handed back or withdrew.",
		}),
		configValid: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_speaker_config_valid", Help: "1 if the ConfigMap is valid, 0 if the last valid one is kept.",
		}),
		dataPath: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_speaker_data_path_healthy", Help: "1 while kube-proxy's health endpoint on this node answers healthy (or none is watched), else 0: the node announces nothing.",
		}),
		stepBacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_speaker_step_backs_total", Help: "Times this node stepped back (answered for nothing until its hold-down passed), by reason: declared_dead, split_brain.",
		}, []string{"reason"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_speaker_address_conflicts_total", Help: "Another MAC seen answering for an address this node owns or probes, by kind: foreign (a device that is no speaker), speaker (split brain).",
		}, []string{"kind"}),
		decisions: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "herald_speaker_decision_seconds", Help: "Time each decision took (what to announce, then applying it); a failover waits for one.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
	}
	m.dataPath.Set(1)
	reg.MustRegister(m.members, m.ownershipChanges, m.configValid, m.dataPath, m.stepBacks, m.conflicts, m.decisions)
	return m
}
