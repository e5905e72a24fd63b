package report_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/controller"
	"github.com/heraldlb/herald/controller/report"
	"github.com/heraldlb/herald/speaker"
	"github.com/heraldlb/herald/speaker/state"
)

// The owner of 198.51.100.200 among node1..node3, fixed here (worked out
// once from the rendezvous scores): the test checks explain's account of
// an election, not the election.
const owner200 = "node2"

func TestExplain(t *testing.T) {
	web := func(opts ...func(*svcFixture)) svcFixture {
		return lbSvc("web", append([]func(*svcFixture){created(5), readyOn("node1", "node2"), allocated("lan", "198.51.100.200")}, opts...)...)
	}
	older := lbSvc("old", created(60), readyOn("node1"), allocated("lan", "198.51.100.201"))
	for _, tc := range []struct {
		name    string
		c       *report.Cluster
		service string
		// reasons by step of the problems and warnings
		reasons   map[string]string
		reachable bool
	}{
		{
			name:      "l2",
			c:         cluster(services(web()), answers(owner200, "198.51.100.200", "eth0", "demo/web")),
			service:   "web",
			reachable: true,
		},
		{
			name: "bgp",
			c: cluster(services(lbSvc("api", readyOn("node1", "node3"), local, allocated("routed", "198.18.10.0"))),
				advertises("node1", "198.18.10.0/32", "demo/api"), advertises("node3", "198.18.10.0/32", "demo/api"),
				func(c *report.Cluster) {
					c.KubeProxy = &corev1.ConfigMap{Data: map[string]string{report.KubeProxyConfigKey: "mode: ipvs\nipvs:\n  strictARP: false\n"}}
				}),
			service:   "api",
			reasons:   map[string]string{report.StepKubeProxy: report.ReasonIPVSWithoutStrictARP},
			reachable: true,
		},
		{
			name: "no-pool",
			c: cluster(services(lbSvc("web", readyOn("node1"), annotated(controller.AnnotationPool, "nowhere"),
				pending(controller.ReasonNoMatchingPool, `requested pool "nowhere" does not exist: no matching pool`)))),
			service: "web",
			reasons: map[string]string{report.StepPool: controller.ReasonNoMatchingPool},
		},
		{
			name: "exhausted",
			c: cluster(services(
				lbSvc("a", created(9), readyOn("node3"), allocated("edge", "198.51.100.230")),
				lbSvc("b", created(8), readyOn("node3"), allocated("edge", "198.51.100.231")),
				lbSvc("c", created(1), readyOn("node3"), annotated(controller.AnnotationPool, "edge")))), // not yet seen by the controller
			service: "c",
			reasons: map[string]string{report.StepPool: controller.ReasonPoolExhausted},
		},
		{
			name: "address-taken",
			c: cluster(services(older, lbSvc("web", readyOn("node1"), annotated(controller.AnnotationIPs, "198.51.100.201"),
				pending(controller.ReasonRequestedAddressUnavailable, "198.51.100.201 is held by demo/old and may not be shared: the holder has no sharing key: address in use")))),
			service: "web",
			reasons: map[string]string{report.StepPool: controller.ReasonRequestedAddressUnavailable},
		},
		{
			name: "sharing-conflict",
			c: cluster(services(
				lbSvc("old", created(60), readyOn("node1"), allocated("lan", "198.51.100.201"), annotated(controller.AnnotationSharingKey, "k")),
				lbSvc("web", readyOn("node1"), annotated(controller.AnnotationIPs, "198.51.100.201"), annotated(controller.AnnotationSharingKey, "k"),
					pending(controller.ReasonRequestedAddressUnavailable, "198.51.100.201 is held by demo/old and may not be shared: both use port TCP/80: address in use")))),
			service: "web",
			reasons: map[string]string{report.StepPool: report.ReasonSharingConflict},
		},
		{
			name:    "no-endpoint",
			c:       cluster(services(web(readyOn()))),
			service: "web",
			reasons: map[string]string{report.StepEndpoints: report.ReasonNoReadyEndpoint, report.StepL2: report.ReasonNoReadyEndpoint},
		},
		{
			name:    "local-no-endpoint",
			c:       cluster(services(lbSvc("edgy", local, readyOn("node1"), allocated("edge", "198.51.100.230")))),
			service: "edgy",
			reasons: map[string]string{report.StepL2: report.ReasonNoLocalEndpoint},
		},
		{
			name: "excluded",
			c: cluster(services(lbSvc("edgy", readyOn("node1"), allocated("edge", "198.51.100.230"))), func(c *report.Cluster) {
				c.Nodes[2] = node("node3", speaker.LabelExclude, "")
			}),
			service: "edgy",
			reasons: map[string]string{report.StepL2: report.ReasonNodeExcluded},
		},
		{
			name:    "no-l2-advertisement",
			c:       cluster(services(lbSvc("dim", readyOn("node1"), allocated("dark", "198.51.100.240")))),
			service: "dim",
			reasons: map[string]string{report.StepL2: report.ReasonNoL2Advertisement},
		},
		{
			name: "peer-down",
			c: cluster(services(lbSvc("api", readyOn("node1"), allocated("routed", "198.18.10.0"))), func(c *report.Cluster) {
				for i := range c.Speakers {
					c.Speakers[i].Status.Sessions[0].State = state.SessionConnecting
					c.Speakers[i].Status.Sessions[0].Reason = "dial tcp 198.51.100.1:179: connection refused"
				}
			}),
			service: "api",
			reasons: map[string]string{report.StepBGP: report.ReasonPeerDown},
		},
		{
			name: "invalid-config",
			c: cluster(services(lbSvc("web", readyOn("node1"),
				pending(controller.ReasonConfigInvalid, "no address is handed out while the configuration is invalid: ..."))), func(c *report.Cluster) {
				c.ConfigMap = heraldConfig("pools:\n- name: lan\n  addresses: [198.51.100.0/33]\n")
				c.Record = &corev1.ConfigMap{Data: map[string]string{config.RecordLatest: fixtureConfig, config.RecordAccepted: fixtureConfig}}
			}),
			service: "web",
			reasons: map[string]string{report.StepConfig: controller.ReasonConfigInvalid, report.StepPool: controller.ReasonConfigInvalid},
		},
		{
			name: "no-speaker-state",
			c: cluster(services(web()), func(c *report.Cluster) {
				c.Speakers, c.SpeakersMissing = nil, "the cluster has no speakerstates.herald.dev resource (speakers publish no state)"
				c.SpeakerPods[0] = pod("herald-speaker-node1", "node1", false)
			}),
			service:   "web",
			reachable: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, err := report.Explain(tc.c, "demo", tc.service)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "explain_"+tc.name+".txt", table(t, x))
			got := map[string]string{}
			for _, s := range x.Steps {
				if s.Result == report.ResultProblem || s.Result == report.ResultWarning {
					got[s.Name] = s.Reason
				}
			}
			if diff := cmp.Diff(tc.reasons, got, cmpEmpty); diff != "" {
				t.Errorf("reasons (-want +got):\n%s", diff)
			}
			if x.Reachable != tc.reachable {
				t.Errorf("reachable = %v, want %v (verdict %q)", x.Reachable, tc.reachable, x.Verdict)
			}
		})
	}
}

var cmpEmpty = cmp.Transformer("nilmap", func(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
})

// TestExplainOwner checks the elected owner against one computed by hand:
// with node2 gone, the owner must be another node, and node2 is NotAlive.
func TestExplainOwner(t *testing.T) {
	web := lbSvc("web", readyOn("node1", "node3"), allocated("lan", "198.51.100.200"))
	c := cluster(services(web), func(c *report.Cluster) {
		c.Speakers = c.Speakers[:0]
		for _, n := range []string{"node1", "node3"} {
			c.Speakers = append(c.Speakers, speakerState(n, "node1", "node3"))
		}
	})
	x, err := report.Explain(c, "demo", "web")
	if err != nil {
		t.Fatal(err)
	}
	l2 := x.Steps[3]
	if !contains(l2.Details, "node node2: its speaker is not alive") {
		t.Errorf("node2 not reported dead: %q", l2.Details)
	}
	if contains([]string{l2.Summary}, "owner node2") {
		t.Errorf("a dead node owns the address: %s", l2.Summary)
	}
	// No speaker reports answering: a problem.
	if l2.Reason != report.ReasonNotAnswered {
		t.Errorf("reason %q, want %s", l2.Reason, report.ReasonNotAnswered)
	}
}

func contains(list []string, sub string) bool {
	return slices.ContainsFunc(list, func(s string) bool { return strings.Contains(s, sub) })
}
