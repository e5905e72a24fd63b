package config_test

import (
	"os"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/heraldlb/herald/config"
)

// The example users start from must stay valid.
func TestManifestExampleParses(t *testing.T) {
	raw, err := os.ReadFile("../manifests/config-example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(cm.Data["config.yaml"]))
	if err != nil {
		t.Fatalf("manifests/config-example.yaml: %v", err)
	}
	if len(cfg.Pools) == 0 || len(cfg.BGPPeers) == 0 || len(cfg.L2Advertisements) == 0 {
		t.Fatalf("the example lost a section: %+v", cfg)
	}
}
