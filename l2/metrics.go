package l2

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Announcer's Prometheus collectors. Labels stay small:
// proto is arp or ndp, iface an interface name, op one of open, read, write
// or join.
type metrics struct {
	requests   *prometheus.CounterVec
	replies    *prometheus.CounterVec
	gratuitous *prometheus.CounterVec
	errors     *prometheus.CounterVec
	owned      *prometheus.GaugeVec
	conflicts  *prometheus.CounterVec
	// conflictsDropped counts conflicts not reported because Conflicts'
	// buffer was full.
	conflictsDropped prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_l2_requests_total",
			Help: "ARP requests and neighbour solicitations received for an address this node answers for.",
		}, []string{"proto", "iface"}),
		replies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_l2_replies_total",
			Help: "ARP replies and solicited neighbour advertisements sent.",
		}, []string{"proto", "iface"}),
		gratuitous: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_l2_gratuitous_total",
			Help: "Gratuitous ARP and unsolicited neighbour advertisements sent, on takeover and refresh.",
		}, []string{"proto", "iface"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_l2_errors_total",
			Help: "Socket errors, by operation (open, read, write, join).",
		}, []string{"proto", "iface", "op"}),
		owned: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_l2_owned_addresses",
			Help: "Addresses this node answers for (arp: IPv4, ndp: IPv6).",
		}, []string{"proto"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_l2_conflicts_total",
			Help: "Frames from another device claiming an address this node answers for or probes (every frame; Conflicts reports at most one a second per address, MAC and interface).",
		}, []string{"proto", "iface"}),
		conflictsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_l2_conflicts_dropped_total",
			Help: "Conflicts not reported because nobody was reading them fast enough.",
		}),
	}
	if reg == nil {
		return m
	}
	m.requests = register(reg, m.requests)
	m.replies = register(reg, m.replies)
	m.gratuitous = register(reg, m.gratuitous)
	m.errors = register(reg, m.errors)
	m.owned = register(reg, m.owned)
	m.conflicts = register(reg, m.conflicts)
	m.conflictsDropped = register(reg, m.conflictsDropped)
	return m
}

// register registers c, or returns the collector already registered under
// its name, so that two Announcers (tests, a restart in-process) can share a
// registry.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	var dup prometheus.AlreadyRegisteredError
	if errors.As(err, &dup) {
		if existing, ok := dup.ExistingCollector.(C); ok {
			return existing
		}
	}
	return c
}
