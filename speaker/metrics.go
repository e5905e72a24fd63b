package speaker

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the speaker's own series (l2 registers its ARP/NDP counters).
type Metrics struct {
	members          prometheus.Gauge
	ownershipChanges prometheus.Counter
	configValid      prometheus.Gauge
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
	}
	reg.MustRegister(m.members, m.ownershipChanges, m.configValid)
	return m
}
