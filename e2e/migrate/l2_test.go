package migrate

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// TestMigrateL2 moves a layer-2 MetalLB install to Herald: one pool for
// both families that Services take from unless they ask, one they must ask
// for by name, and an advertisement of every pool on eth0.
func TestMigrateL2(t *testing.T) {
	l := needLab(t)
	const ns = "migl2"
	images(t, l) // built before anything of the move starts
	installCRDs(t, l)
	createMetalLBObjects(t, l,
		metalLBObject{kind: "IPAddressPool", name: "lan", spec: map[string]any{
			"addresses": []any{"198.51.100.200-198.51.100.239", "2001:db8:1::200/122"},
		}},
		metalLBObject{kind: "IPAddressPool", name: "reserved", spec: map[string]any{
			"addresses":  []any{"198.51.100.240/29", "2001:db8:1::240-2001:db8:1::24f"},
			"autoAssign": false,
		}},
		// No pools named: MetalLB advertises every pool.
		metalLBObject{kind: "L2Advertisement", name: "lan", spec: map[string]any{"interfaces": []any{"eth0"}}},
	)
	svcs := []migrated{
		{name: "requested", port: 80, pool: "lan",
			annotations: map[string]string{"metallb.universe.tf/loadBalancerIPs": "198.51.100.221,2001:db8:1::221"},
			ingress:     []string{"198.51.100.221", "2001:db8:1::221"}},
		{name: "pooled", port: 80, pool: "reserved",
			annotations: map[string]string{"metallb.io/address-pool": "reserved"},
			ingress:     []string{"198.51.100.243", "2001:db8:1::243"}},
		{name: "plain", port: 80, pool: "lan", singleStack: true,
			ingress: []string{"198.51.100.205"}},
		// One address for two Services with different ports and backends.
		{name: "web", port: 80, pool: "lan",
			annotations: map[string]string{"metallb.io/allow-shared-ip": "front"},
			ingress:     []string{"198.51.100.210", "2001:db8:1::210"}},
		{name: "alt", port: 8081, pool: "lan",
			annotations: map[string]string{"metallb.universe.tf/allow-shared-ip": "front"},
			ingress:     []string{"198.51.100.210", "2001:db8:1::210"}},
	}
	want := map[string][]corev1.LoadBalancerIngress{}
	for i, s := range svcs {
		want[s.name] = createMigrated(t, l, ns, i, s)
	}
	w := watchIngress(t, l, ns, want)

	text := migrateFromCluster(t, l)
	checkMigration(t, text, []string{
		"pool lan autoAssign=true 198.51.100.200-198.51.100.239 2001:db8:1::200-2001:db8:1::23f",
		"pool reserved autoAssign=false 198.51.100.240-198.51.100.247 2001:db8:1::240-2001:db8:1::24f",
		`l2 lan pools=[lan reserved] interfaces=[eth0] nodes=""`,
	})
	installed := installHerald(t, l, text)
	waitServed(t, l, ns, svcs, time.Minute)
	for _, s := range svcs {
		for _, u := range s.urls() {
			getSteady(t, l, l.ClientNS(), u, s.name, time.Minute)
		}
	}
	probeAll(t, l.ClientNS(), "the client on the bridge", svcs)
	w.expectUnchanged(t, l, installed)
}
