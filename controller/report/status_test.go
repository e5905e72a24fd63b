package report_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/controller"
	"github.com/heraldlb/herald/controller/report"
	"github.com/heraldlb/herald/speaker/state"
)

// fixtureConfig is the configuration of the fixtures: an L2 pool for both
// families (a whole IPv6 /64 among them), a pool announced from node3
// only, one without any advertisement, and one advertised over BGP.
const fixtureConfig = `pools:
- name: lan
  addresses: ["198.51.100.200-198.51.100.209", "2001:db8:1::/64"]
- name: edge
  addresses: ["198.51.100.230-198.51.100.231"]
  autoAssign: false
- name: dark
  addresses: ["198.51.100.240/32"]
  autoAssign: false
- name: routed
  addresses: ["198.18.10.0/28"]
  autoAssign: false
l2Advertisements:
- name: lan
  pools: [lan]
- name: edge
  pools: [edge]
  nodeSelector:
    matchLabels: {kubernetes.io/hostname: node3}
bgpPeers:
- name: tor
  address: 198.51.100.1
  asn: 64500
  myASN: 64500
bgpAdvertisements:
- name: routed
  pools: [routed]
`

var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// cluster is a snapshot: three nodes, each with a joined speaker that sees
// all three, a leading controller, and the fixture configuration.
func cluster(opts ...func(*report.Cluster)) *report.Cluster {
	c := &report.Cluster{
		Namespace: "herald-system",
		Now:       now,
		ConfigMap: heraldConfig(fixtureConfig),
		Lease: &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       new("herald-controller-6d5f7-x2x9k_1"),
			LeaseDurationSeconds: new(int32(15)),
			RenewTime:            &metav1.MicroTime{Time: now.Add(-2 * time.Second)},
		}},
		ControllerPods: []corev1.Pod{pod("herald-controller-6d5f7-x2x9k", "node1", true), pod("herald-controller-6d5f7-q8w4z", "node2", true)},
		Namespaces:     []corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}},
	}
	for _, n := range []string{"node1", "node2", "node3"} {
		c.Nodes = append(c.Nodes, node(n))
		c.SpeakerPods = append(c.SpeakerPods, pod("herald-speaker-"+n, n, true))
		c.Speakers = append(c.Speakers, speakerState(n, "node1", "node2", "node3"))
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

func heraldConfig(doc string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "herald-system", Name: "herald"}, Data: map[string]string{config.Key: doc}}
}

func pod(name, node string, ready bool) corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "herald-system", Name: name},
		Spec:       corev1.PodSpec{NodeName: node},
		Status:     corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
	}
}

func node(name string, labels ...string) corev1.Node {
	n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}
	for i := 0; i+1 < len(labels); i += 2 {
		n.Labels[labels[i]] = labels[i+1]
	}
	return n
}

func speakerState(name string, members ...string) state.SpeakerState {
	return state.SpeakerState{
		ObjectMeta: metav1.ObjectMeta{Namespace: "herald-system", Name: name},
		Status: state.Status{Joined: true, Members: members, Config: config.Hash(fixtureConfig),
			Sessions: []state.Session{{Peer: "tor", Address: "198.51.100.1", ASN: 64500, State: state.SessionEstablished}}},
	}
}

// with changes the speaker state of node.
func with(node string, change func(*state.Status)) func(*report.Cluster) {
	return func(c *report.Cluster) {
		for i := range c.Speakers {
			if c.Speakers[i].Name == node {
				change(&c.Speakers[i].Status)
			}
		}
	}
}

func answers(node, addr, iface string, svcs ...string) func(*report.Cluster) {
	return with(node, func(s *state.Status) {
		s.L2 = append(s.L2, state.L2Address{Address: addr, Interfaces: []string{iface}, Services: svcs})
	})
}

func advertises(node, prefix string, svcs ...string) func(*report.Cluster) {
	return with(node, func(s *state.Status) {
		s.BGP = append(s.BGP, state.Route{Prefix: prefix, Peers: []string{"tor"}, Services: svcs})
	})
}

// services adds Services and, for each, the EndpointSlice of its ready nodes.
func services(svcs ...svcFixture) func(*report.Cluster) {
	return func(c *report.Cluster) {
		for _, f := range svcs {
			c.Services = append(c.Services, f.svc)
			es := discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: f.svc.Namespace, Name: f.svc.Name + "-abcde",
				Labels: map[string]string{discoveryv1.LabelServiceName: f.svc.Name}}}
			for i, n := range f.ready {
				es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.244.%d.%d", i, 10+i)},
					NodeName: new(n), Conditions: discoveryv1.EndpointConditions{Ready: new(true)}})
			}
			c.EndpointSlices = append(c.EndpointSlices, es)
		}
	}
}

type svcFixture struct {
	svc   corev1.Service
	ready []string
}

// svc builds a LoadBalancer Service in namespace demo, created at an age
// given by its order, with ready endpoints on the given nodes.
func lbSvc(name string, opts ...func(*svcFixture)) svcFixture {
	f := svcFixture{svc: corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: name, Annotations: map[string]string{}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": name},
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
			Ports:      []corev1.ServicePort{{Protocol: corev1.ProtocolTCP, Port: 80}}},
	}}
	for _, o := range opts {
		o(&f)
	}
	return f
}

func readyOn(nodes ...string) func(*svcFixture) { return func(f *svcFixture) { f.ready = nodes } }

func annotated(k, v string) func(*svcFixture) {
	return func(f *svcFixture) { f.svc.Annotations[k] = v }
}

func local(f *svcFixture) {
	f.svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
}

func created(minutesAgo int) func(*svcFixture) {
	return func(f *svcFixture) {
		f.svc.CreationTimestamp = metav1.Time{Time: now.Add(-time.Duration(minutesAgo) * time.Minute)}
	}
}

// allocated gives the Service its addresses from pool as the controller does.
func allocated(pool string, ips ...string) func(*svcFixture) {
	return func(f *svcFixture) {
		for _, ip := range ips {
			f.svc.Status.LoadBalancer.Ingress = append(f.svc.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
		}
		f.svc.Annotations[controller.AnnotationAllocatedFrom] = pool
		cond(controller.ConditionAllocated, metav1.ConditionTrue, controller.ReasonAllocated, "assigned")(f)
	}
}

func cond(t string, st metav1.ConditionStatus, reason, msg string) func(*svcFixture) {
	return func(f *svcFixture) {
		f.svc.Status.Conditions = append(f.svc.Status.Conditions, metav1.Condition{Type: t, Status: st, Reason: reason, Message: msg})
	}
}

func pending(reason, msg string) func(*svcFixture) {
	return cond(controller.ConditionAllocated, metav1.ConditionFalse, reason, msg)
}

// table renders v as a table and checks that its JSON reads back into the
// same value.
func table[T report.Tabler](t *testing.T, v T) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := report.Write(&out, "table", v); err != nil {
		t.Fatal(err)
	}
	var js bytes.Buffer
	if err := report.Write(&js, "json", v); err != nil {
		t.Fatal(err)
	}
	var back T
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(v, back, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("json does not read back (-printed +read):\n%s", diff)
	}
	return out.Bytes()
}

func TestStatus(t *testing.T) {
	web := lbSvc("web", created(9), readyOn("node1", "node2"), allocated("lan", "198.51.100.200", "2001:db8:1::"),
		cond(state.ConditionAnnounced, metav1.ConditionTrue, state.ReasonAnnouncedL2, "198.51.100.200 announced from node node2 on eth0 via L2"))
	api := lbSvc("api", created(8), readyOn("node1", "node3"), allocated("routed", "198.18.10.0"),
		cond(state.ConditionAnnounced, metav1.ConditionTrue, state.ReasonAnnouncedBGP, "198.18.10.0 advertised from node1,node3 to tor"))
	waiting := lbSvc("batch", created(1), pending(controller.ReasonPoolExhausted, `pool "edge" has no free IPv4 address: pool exhausted`), annotated(controller.AnnotationPool, "edge"))
	for _, tc := range []struct {
		name string
		c    *report.Cluster
	}{
		{"cluster", cluster(services(web, api, waiting),
			answers("node2", "198.51.100.200", "eth0", "demo/web"), answers("node2", "2001:db8:1::", "eth0", "demo/web"),
			advertises("node1", "198.18.10.0/32", "demo/api"), advertises("node3", "198.18.10.0/32", "demo/api"),
			// node3's speaker lost node2; the other two still see all three.
			with("node3", func(s *state.Status) { s.Members = []string{"node1", "node3"} }),
			with("node2", func(s *state.Status) {
				s.Sessions[0].State, s.Sessions[0].Reason = state.SessionConnecting, "connection refused"
			}),
		)},
		{"invalid", cluster(services(web), func(c *report.Cluster) {
			c.Record = &corev1.ConfigMap{Data: map[string]string{config.RecordLatest: fixtureConfig, config.RecordAccepted: fixtureConfig}}
			c.ConfigMap = heraldConfig("pools:\n- name: lan\n  addresses: [198.51.100.0/33]\n")
			c.Speakers, c.SpeakersMissing = nil, "the cluster has no speakerstates.herald.dev resource (speakers publish no state)"
			c.Lease = nil
			c.ControllerPods[1] = pod("herald-controller-6d5f7-q8w4z", "node2", false)
		})},
		{"held", cluster(services(
			lbSvc("web", allocated("lan", "198.51.100.200"), func(f *svcFixture) {
				f.svc.Status.Conditions[0].Status, f.svc.Status.Conditions[0].Reason = metav1.ConditionFalse, controller.ReasonConfigChangeHeld
			})), func(c *report.Cluster) {
			narrowed := fixtureConfig[:len("pools:\n- name: lan\n  addresses: [")] + `"198.51.100.201-198.51.100.209"]` +
				fixtureConfig[len("pools:\n- name: lan\n  addresses: [\"198.51.100.200-198.51.100.209\", \"2001:db8:1::/64\"]"):]
			c.ConfigMap = heraldConfig(narrowed)
			c.Record = &corev1.ConfigMap{Data: map[string]string{config.RecordLatest: narrowed, config.RecordAccepted: fixtureConfig}}
		})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			golden(t, "status_"+tc.name+".txt", table(t, report.BuildStatus(tc.c)))
		})
	}
}
