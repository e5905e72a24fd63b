package controller

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"

	"github.com/heraldlb/herald/speaker/state"
)

func TestIndexConflicts(t *testing.T) {
	two := []string{"n1", "n2"}
	x := netip.MustParseAddr("198.51.100.9")
	conflict := func(announced bool) []state.Conflict {
		return []state.Conflict{{Address: x.String(), MAC: "02:00:00:00:00:99", Kind: "arp-reply", Announced: announced}}
	}
	got := indexConflicts([]*state.SpeakerState{
		speakerState("n1", two, state.Status{MACs: []string{"02:00:00:00:00:01"}, Conflicts: conflict(false)}),
		speakerState("n2", two, state.Status{MACs: []string{"02:00:00:00:00:02"}, Conflicts: []state.Conflict{
			// n1's MAC, which n2 took for a foreign device's: not counted.
			{Address: "198.51.100.10", MAC: "02:00:00:00:00:01", Kind: "arp-request"},
		}}),
		// n3 is dead in everyone's view but its own: its report does not count.
		speakerState("n3", []string{"n3"}, state.Status{Conflicts: conflict(true)}),
	})
	want := map[netip.Addr][]addrConflict{x: {{Node: "n1", MAC: "02:00:00:00:00:99", Kind: "arp-reply"}}}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestConflictCondition: every holder of an address a device answers for
// gets the condition, naming the MAC, and one Event when it turns True; it
// turns False when the device is no longer reported.
func TestConflictCondition(t *testing.T) {
	x := netip.MustParseAddr("198.51.100.10")
	rec := record.NewFakeRecorder(10)
	c := &Controller{recorder: rec, metrics: NewMetrics(prometheus.NewRegistry()),
		announced: &announcements{conflicts: map[netip.Addr][]addrConflict{}}}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"}}
	step := func(name string, conflicts []addrConflict, want metav1.ConditionStatus, words ...string) {
		t.Helper()
		c.announced.conflicts = map[netip.Addr][]addrConflict{}
		if conflicts != nil {
			c.announced.conflicts[x] = conflicts
		}
		st := *svc.Status.DeepCopy()
		c.setConflict(svc, &st, []netip.Addr{x})
		cond := meta.FindStatusCondition(st.Conditions, state.ConditionAddressConflict)
		switch {
		case want == "" && cond != nil:
			t.Errorf("%s: condition %+v, want none", name, cond)
		case want != "" && (cond == nil || cond.Status != want):
			t.Errorf("%s: condition %+v, want %s", name, cond, want)
		}
		for _, w := range words {
			if cond == nil || !strings.Contains(cond.Message, w) {
				t.Errorf("%s: condition %+v does not say %q", name, cond, w)
			}
		}
		svc.Status = st
	}
	events := func() int { return len(rec.Events) }
	step("no device: no condition", nil, "")
	step("a device before Herald", []addrConflict{{Node: "n1", MAC: "02:00:00:00:00:99", Kind: "arp-reply"}}, metav1.ConditionTrue,
		"02:00:00:00:00:99", "198.51.100.10", "n1", "does not announce")
	if events() != 1 {
		t.Errorf("%d Events after the conflict appeared, want 1", events())
	}
	step("reported again", []addrConflict{{Node: "n1", MAC: "02:00:00:00:00:99", Kind: "arp-reply"}}, metav1.ConditionTrue)
	if events() != 1 {
		t.Errorf("%d Events after the same report, want still 1", events())
	}
	step("in service first", []addrConflict{{Node: "n2", MAC: "02:00:00:00:00:98", Kind: "arp-request", Announced: true}}, metav1.ConditionTrue,
		"02:00:00:00:00:98", "keeps answering")
	step("gone", nil, metav1.ConditionFalse, "no device")
}
