package config_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/heraldlb/herald/config"
)

func TestPeersFor(t *testing.T) {
	rack := func(name, addr, key string) obj {
		return with(peer(name, addr), "nodeSelector", selector("matchLabels", obj{key: "true"}))
	}
	// Listed out of name order: the first in the document wins, not the
	// first by name.
	racks := list(rack("rack-b", "198.51.100.1", "rack-b"), rack("rack-a", "198.51.100.1", "rack-a"), peer("edge", "203.0.113.1"))
	tests := []struct {
		name          string
		peers         []obj
		labels        labels.Set
		want          []string
		wantConflicts []config.PeerConflict
	}{
		{name: "no selectors: every peer", peers: list(peer("a", "198.51.100.1"), peer("b", "198.51.100.2")),
			want: []string{"a", "b"}},
		{name: "disjoint racks: a node of rack a", peers: racks, labels: labels.Set{"rack-a": "true"},
			want: []string{"edge", "rack-a"}},
		{name: "disjoint racks: a node of rack b", peers: racks, labels: labels.Set{"rack-b": "true"},
			want: []string{"edge", "rack-b"}},
		{name: "disjoint racks: a node of neither", peers: racks, labels: labels.Set{"rack-c": "true"},
			want: []string{"edge"}},
		{name: "a node of both racks peers with the first in the document", peers: racks,
			labels: labels.Set{"rack-a": "true", "rack-b": "true"},
			want:   []string{"edge", "rack-b"},
			wantConflicts: []config.PeerConflict{
				{Address: addr("198.51.100.1"), Port: 179, Kept: "rack-b", Dropped: []string{"rack-a"}},
			}},
		{name: "a rack's own peer before a catch-all", peers: list(rack("rack-a", "198.51.100.1", "rack-a"), peer("all", "198.51.100.1")),
			labels: labels.Set{"rack-a": "true"},
			want:   []string{"rack-a"},
			wantConflicts: []config.PeerConflict{
				{Address: addr("198.51.100.1"), Port: 179, Kept: "rack-a", Dropped: []string{"all"}},
			}},
		{name: "the catch-all alone for other nodes", peers: list(rack("rack-a", "198.51.100.1", "rack-a"), peer("all", "198.51.100.1")),
			want: []string{"all"}},
		{name: "three at one address, conflicts sorted by address", labels: labels.Set{"x": "true", "y": "true", "z": "true"},
			peers: list(rack("z", "2001:db8::1", "z"), rack("y", "2001:db8::1", "y"), rack("x", "2001:db8::1", "x"),
				rack("q", "198.51.100.9", "x"), rack("p", "198.51.100.9", "y")),
			want: []string{"q", "z"},
			wantConflicts: []config.PeerConflict{
				{Address: addr("198.51.100.9"), Port: 179, Kept: "q", Dropped: []string{"p"}},
				{Address: addr("2001:db8::1"), Port: 179, Kept: "z", Dropped: []string{"y", "x"}},
			}},
		{name: "another port is another peer", labels: labels.Set{"rack-a": "true", "rack-b": "true"},
			peers: list(rack("a", "198.51.100.1", "rack-a"), with(rack("b", "198.51.100.1", "rack-b"), "port", 1179)),
			want:  []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse(peers(tt.peers...))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got, conflicts := cfg.PeersFor(tt.labels)
			var names []string
			for _, p := range got {
				names = append(names, p.Name)
			}
			if diff := cmp.Diff(tt.want, names); diff != "" {
				t.Errorf("peers (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantConflicts, conflicts, cmpOpts); diff != "" {
				t.Errorf("conflicts (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPeersForHandBuilt checks a Config not made by Parse: a nil selector
// selects every node, as an absent one does.
func TestPeersForHandBuilt(t *testing.T) {
	a := addr("198.51.100.1")
	cfg := &config.Config{BGPPeers: []config.BGPPeer{
		{Name: "a", Address: a, Port: 179, Rank: 1},
		{Name: "b", Address: a, Port: 179},
	}}
	got, conflicts := cfg.PeersFor(labels.Set{})
	if len(got) != 1 || got[0].Name != "b" {
		t.Errorf("peers = %v; want b alone (rank 0)", got)
	}
	want := []config.PeerConflict{{Address: a, Port: 179, Kept: "b", Dropped: []string{"a"}}}
	if diff := cmp.Diff(want, conflicts, cmpOpts); diff != "" {
		t.Errorf("conflicts (-want +got):\n%s", diff)
	}
}
