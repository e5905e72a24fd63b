package config_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/heraldlb/herald/config"
)

// TestMigrateMetalLBResources converts a MetalLB install's custom
// resources: the Herald document says the same, parses, and every setting
// left behind is listed with its place.
func TestMigrateMetalLBResources(t *testing.T) {
	in, err := os.ReadFile("testdata/metallb-crs.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := config.MigrateMetalLB(in)
	if err != nil {
		t.Fatalf("%v\n%s", err, m.Text)
	}
	cfg := m.Config
	if len(cfg.Pools) != 2 || cfg.Pools[0].Name != "lan" || cfg.Pools[0].Allocation == nil || cfg.Pools[0].Allocation.Priority != 10 {
		t.Errorf("pools: %+v", cfg.Pools)
	}
	if len(cfg.L2Advertisements) != 1 || !slices.Equal(cfg.L2Advertisements[0].Pools, []string{"lan"}) {
		t.Errorf("the L2 advertisement's pool selector was not resolved to lan: %+v", cfg.L2Advertisements)
	}
	if p, ok := cfg.Peer("tor"); !ok || !p.GracefulRestart || p.BFDProfile != "fast" || p.PasswordSecret == nil || p.PasswordSecret.Name != "herald-bgp-passwords" {
		t.Errorf("peer tor: %+v", p)
	}
	again, err := config.Parse(m.Text)
	if err != nil || len(again.BGPAdvertisements) != 1 {
		t.Errorf("the printed document does not parse back: %v\n%s", err, m.Text)
	}
	left := strings.Join(m.NotCarried, "\n")
	for _, want := range []string{
		"IPAddressPool/lan.spec.serviceAllocation.namespaceSelectors: only the first of 2 selectors",
		"BGPPeer/tor.spec.passwordSecret: copy key \"password\" of Secret \"tor-secret\"",
		"BGPPeer/tor.spec.vrf: not carried over",
		"BFDProfile/fast.spec.echoMode: not carried over",
		"BGPAdvertisement/public.spec.someFutureField: unknown to Herald's migration",
	} {
		if !strings.Contains(left, want) {
			t.Errorf("not-carried list lacks %q:\n%s", want, left)
		}
	}
	if strings.Contains(left, "Service/ignored") {
		t.Errorf("a Service is listed as not carried:\n%s", left)
	}
}

// TestMigrateMetalLBLegacy takes the legacy ConfigMap through the same path.
func TestMigrateMetalLBLegacy(t *testing.T) {
	in := `apiVersion: v1
kind: ConfigMap
metadata: {name: config, namespace: metallb-system}
data:
  config: |
    address-pools:
    - name: lan
      protocol: layer2
      addresses: [198.51.100.200-198.51.100.250]
`
	m, err := config.MigrateMetalLB([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Config.Pools) != 1 || len(m.Config.L2Advertisements) != 1 {
		t.Errorf("legacy pool not carried: %s", m.Text)
	}
}

func TestMigrateMetalLBBounded(t *testing.T) {
	if _, err := config.MigrateMetalLB(make([]byte, config.MaxMigrationSize+1)); err == nil {
		t.Error("an oversized input was read")
	}
}
