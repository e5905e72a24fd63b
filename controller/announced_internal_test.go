package controller

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/heraldlb/herald/speaker/state"
)

func speakerState(node string, members []string, st state.Status) *state.SpeakerState {
	st.Joined, st.Members = true, members
	return &state.SpeakerState{ObjectMeta: metav1.ObjectMeta{Name: node}, Status: st}
}

func TestAnnouncedCondition(t *testing.T) {
	all := []string{"n1", "n2", "n3"}
	l2 := func(addr string, svcs ...string) state.L2Address {
		return state.L2Address{Address: addr, Interfaces: []string{"eth0"}, Services: svcs}
	}
	up := []state.Session{{Peer: "tor", State: state.SessionEstablished}}
	down := []state.Session{{Peer: "tor", State: state.SessionConnecting}}
	route := state.Route{Prefix: "198.19.0.20/32", Peers: []string{"tor"}, Services: []string{"ns/web"}}
	for _, tc := range []struct {
		name    string
		states  []*state.SpeakerState
		addrs   []string
		want    metav1.ConditionStatus
		reason  string
		message string
	}{{
		name: "one L2 owner per family",
		states: []*state.SpeakerState{
			speakerState("n1", all, state.Status{L2: []state.L2Address{l2("198.51.100.9", "ns/web")}}),
			speakerState("n2", all, state.Status{L2: []state.L2Address{l2("2001:db8:1::9", "ns/web")}}),
			speakerState("n3", all, state.Status{}),
		},
		addrs: []string{"198.51.100.9", "2001:db8:1::9"}, want: metav1.ConditionTrue, reason: state.ReasonAnnouncedL2,
		message: "198.51.100.9 announced from node n1 on eth0 via L2; 2001:db8:1::9 announced from node n2 on eth0 via L2",
	}, {
		name: "a node the others see dead does not count",
		states: []*state.SpeakerState{
			speakerState("n1", all, state.Status{L2: []state.L2Address{l2("198.51.100.9", "ns/web")}}),
			speakerState("n2", []string{"n2", "n3"}, state.Status{L2: []state.L2Address{l2("198.51.100.9", "ns/web")}}),
			speakerState("n3", []string{"n2", "n3"}, state.Status{}),
		},
		addrs: []string{"198.51.100.9"}, want: metav1.ConditionTrue, reason: state.ReasonAnnouncedL2,
		message: "198.51.100.9 announced from node n2 on eth0 via L2",
	}, {
		name: "two live answerers are shown",
		states: []*state.SpeakerState{
			speakerState("n1", all, state.Status{L2: []state.L2Address{l2("198.51.100.9", "ns/web")}}),
			speakerState("n2", all, state.Status{L2: []state.L2Address{l2("198.51.100.9", "ns/web")}}),
		},
		addrs: []string{"198.51.100.9"}, want: metav1.ConditionTrue, reason: state.ReasonAnnouncedL2,
		message: "198.51.100.9 announced from nodes n1, n2 via L2 (more than one node answers)",
	}, {
		name: "BGP from the nodes whose session is up",
		states: []*state.SpeakerState{
			speakerState("n1", all, state.Status{Sessions: up, BGP: []state.Route{route}}),
			speakerState("n2", all, state.Status{Sessions: down, BGP: []state.Route{route}}),
			speakerState("n3", all, state.Status{Sessions: up, BGP: []state.Route{route}}),
		},
		addrs: []string{"198.19.0.20"}, want: metav1.ConditionTrue, reason: state.ReasonAnnouncedBGP,
		message: "198.19.0.20/32 advertised via BGP from n1 to tor; n3 to tor",
	}, {
		name: "nobody",
		states: []*state.SpeakerState{
			speakerState("n1", all, state.Status{Sessions: down, BGP: []state.Route{route}}),
		},
		addrs: []string{"198.19.0.20"}, want: metav1.ConditionFalse, reason: state.ReasonNotAnnounced,
		message: "no node announces 198.19.0.20 (kubectl herald explain tells why)",
	}, {
		name: "one family missing",
		states: []*state.SpeakerState{
			speakerState("n1", all, state.Status{L2: []state.L2Address{l2("198.51.100.9", "ns/web")}}),
		},
		addrs: []string{"198.51.100.9", "2001:db8:1::9"}, want: metav1.ConditionTrue, reason: state.ReasonAnnouncedL2,
		message: "198.51.100.9 announced from node n1 on eth0 via L2; 2001:db8:1::9 not announced",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var addrs []netip.Addr
			for _, a := range tc.addrs {
				addrs = append(addrs, netip.MustParseAddr(a))
			}
			got, _ := announcedCondition(indexStates(tc.states)["ns/web"], addrs)
			want := metav1.Condition{Type: state.ConditionAnnounced, Status: tc.want, Reason: tc.reason, Message: tc.message}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("condition (-want +got):\n%s", diff)
			}
		})
	}
}
