package controller

import (
	"math/big"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldlb/herald/ipam"
)

// Metrics are the controller's Prometheus series (prefix herald_).
type Metrics struct {
	poolSize       *prometheus.GaugeVec
	poolInUse      *prometheus.GaugeVec
	allocations    *prometheus.CounterVec
	failures       *prometheus.CounterVec
	configValid    prometheus.Gauge
	configReload   prometheus.Gauge
	heldServices   prometheus.Gauge
	leader         prometheus.Gauge
	conflicts      prometheus.Gauge
	conflictEvents prometheus.Counter
}

// NewMetrics creates the controller's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		poolSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_pool_addresses", Help: "Addresses in a pool, per family.",
		}, []string{"pool", "family"}),
		poolInUse: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_pool_addresses_in_use", Help: "Addresses of a pool held by Services, per family.",
		}, []string{"pool", "family"}),
		allocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_allocations_total", Help: "Addresses assigned to Services, per pool.",
		}, []string{"pool"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_allocation_failures_total", Help: "Times a Service was refused an address (or kept an old one), by reason; counted when the reason changes.",
		}, []string{"reason"}),
		configValid: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_config_valid", Help: "1 if the ConfigMap's document is valid and in force, 0 if it is missing or invalid and the last valid one is kept.",
		}),
		configReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_config_last_reload_timestamp_seconds", Help: "When a valid configuration was last loaded.",
		}),
		heldServices: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_config_held_services", Help: "Services that keep their addresses or announcements because a configuration change that would take them away is not confirmed.",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_controller_leader", Help: "1 while this replica holds the leader Lease and allocates, 0 while it stands by.",
		}),
		conflicts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_address_conflicts", Help: "Addresses for which a speaker reports a device that is no speaker answering.",
		}),
		conflictEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_address_conflicts_total", Help: "Times a Service's herald.dev/AddressConflict condition turned True (or named another device).",
		}),
	}
	reg.MustRegister(m.poolSize, m.poolInUse, m.allocations, m.failures, m.configValid, m.configReload, m.heldServices, m.leader,
		m.conflicts, m.conflictEvents)
	return m
}

func (m *Metrics) observePools(stats []ipam.PoolStats) {
	m.poolSize.Reset()
	m.poolInUse.Reset()
	for _, s := range stats {
		fam := "ipv4"
		if s.Family == ipam.IPv6 {
			fam = "ipv6"
		}
		size, _ := new(big.Float).SetInt(s.Size).Float64()
		m.poolSize.WithLabelValues(s.Pool, fam).Set(size)
		m.poolInUse.WithLabelValues(s.Pool, fam).Set(float64(s.InUse))
	}
}

func (m *Metrics) configLoaded(valid bool) {
	if valid {
		m.configValid.Set(1)
		m.configReload.Set(float64(time.Now().Unix()))
		return
	}
	m.configValid.Set(0)
}

func (m *Metrics) leading(leading bool) {
	if leading {
		m.leader.Set(1)
		return
	}
	m.leader.Set(0)
}
