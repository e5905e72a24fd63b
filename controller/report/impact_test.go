package report_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/controller"
	"github.com/heraldlb/herald/controller/report"
)

const impactNow = `pools:
- name: lan
  addresses: ["203.0.113.10-203.0.113.13"]
- name: old
  addresses: ["198.51.100.10-198.51.100.11"]
- name: routed
  addresses: ["203.0.113.0/30"]
l2Advertisements:
- name: lan
  pools: [lan, old]
bgpPeers:
- name: tor
  address: 10.0.0.1
  asn: 64500
  myASN: 64501
bgpAdvertisements:
- name: routed
  pools: [routed]
`

// impactEdit removes pool old, narrows lan (drops .10, adds .14-.15), adds
// pool more and advertises it over BGP.
const impactEdit = `pools:
- name: lan
  addresses: ["203.0.113.11-203.0.113.15"]
- name: more
  addresses: ["198.51.100.200/32"]
- name: routed
  addresses: ["203.0.113.0/30"]
l2Advertisements:
- name: lan
  pools: [lan]
bgpPeers:
- name: tor
  address: 10.0.0.1
  asn: 64500
  myASN: 64501
bgpAdvertisements:
- name: routed
  pools: [routed, more]
`

type svcOpt func(*corev1.Service)

func withIP(ip string) svcOpt {
	return func(s *corev1.Service) {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
}

func withPool(p string) svcOpt {
	return func(s *corev1.Service) { s.Annotations = map[string]string{controller.AnnotationPool: p} }
}

func withLocal() svcOpt {
	return func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal }
}

var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// svc is a LoadBalancer Service in default, created age minutes after epoch.
func svc(name string, age int, opts ...svcOpt) corev1.Service {
	s := corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", CreationTimestamp: metav1.NewTime(epoch.Add(time.Duration(age) * time.Minute))},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}, Selector: map[string]string{"app": name}},
	}
	for _, o := range opts {
		o(&s)
	}
	return s
}

// endpoints is an EndpointSlice of Service name with a ready endpoint on each node.
func endpoints(name string, nodes ...string) discoveryv1.EndpointSlice {
	es := discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: name + "-x", Namespace: "default",
		Labels: map[string]string{discoveryv1.LabelServiceName: name}}}
	ready := true
	for _, n := range nodes {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{NodeName: &n, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	return es
}

func readyNode(name string) corev1.Node {
	return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
}

func configMap(name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "herald-system"}, Data: data}
}

// impactCluster: four Services in lan and old, one in routed (BGP, Local,
// endpoints on n2 only), one waiting for pool more, three Ready nodes and
// no speaker state.
func impactCluster() *report.Cluster {
	return &report.Cluster{
		Namespace:  "herald-system",
		ConfigMap:  configMap("herald", map[string]string{config.Key: impactNow}),
		Record:     configMap(config.RecordName("herald"), map[string]string{config.RecordLatest: impactNow, config.RecordAccepted: impactNow}),
		Nodes:      []corev1.Node{readyNode("n1"), readyNode("n2"), readyNode("n3")},
		Namespaces: []corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "default"}}},
		Services: []corev1.Service{
			svc("web", 1, withIP("203.0.113.10")),
			svc("api", 2, withIP("203.0.113.11")),
			svc("legacy", 3, withIP("198.51.100.10"), withPool("old")),
			svc("batch", 4, withIP("198.51.100.11")),
			svc("dns", 5, withIP("203.0.113.0"), withPool("routed"), withLocal()),
			svc("wait", 6, withPool("more")),
		},
		EndpointSlices: []discoveryv1.EndpointSlice{
			endpoints("web", "n1", "n2"), endpoints("api", "n1"), endpoints("legacy", "n3"),
			endpoints("batch", "n2"), endpoints("dns", "n2"), endpoints("wait", "n1"),
		},
		SpeakersMissing: "the cluster has no speakerstates.herald.dev resource (speakers publish no state)",
	}
}

func TestImpact(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
	}{
		{"edit", impactEdit},
		{"unchanged", impactNow},
		{"invalid", "pools:\n- name: lan\n  addresses: [nonsense]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := report.Validate("edit.yaml", []byte(tc.doc))
			im, err := report.BuildImpact(v, tc.doc, impactCluster(), "")
			if err != nil {
				t.Fatal(err)
			}
			var table bytes.Buffer
			if err := report.Write(&table, "table", im); err != nil {
				t.Fatal(err)
			}
			golden(t, "impact_"+tc.name+".golden", table.Bytes())
			for _, format := range []string{"json", "yaml"} {
				var out bytes.Buffer
				if err := report.Write(&out, format, im); err != nil {
					t.Fatal(err)
				}
				var back report.Impact
				if err := yaml.Unmarshal(out.Bytes(), &back); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(im, back); diff != "" {
					t.Errorf("%s does not read back (-printed +read):\n%s", format, diff)
				}
			}
		})
	}
}

// The preview's Services, held set and announcements, computed by hand.
func TestImpactEdit(t *testing.T) {
	v := report.Validate("edit.yaml", []byte(impactEdit))
	im, err := report.BuildImpact(v, impactEdit, impactCluster(), "")
	if err != nil {
		t.Fatal(err)
	}
	p := im.Preview
	changes := map[string]string{}
	for _, s := range p.Services {
		changes[s.Service] = s.Change + " " + s.When
	}
	want := map[string]string{
		"default/web":    "changes confirm", // .10 is outside the narrowed lan
		"default/legacy": "loses confirm",   // its pool old is gone
		"default/batch":  "changes confirm", // old is gone; lan takes it
		"default/wait":   "gets apply",      // pool more is new
	}
	if diff := cmp.Diff(want, changes); diff != "" {
		t.Errorf("service changes (-want +got):\n%s", diff)
	}
	var held []string
	for _, h := range p.Held {
		held = append(held, h.Service)
	}
	if diff := cmp.Diff([]string{"default/batch", "default/legacy", "default/web"}, held); diff != "" {
		t.Errorf("held (-want +got):\n%s", diff)
	}
	if want := "kubectl -n herald-system annotate configmap herald " + config.ConfirmAnnotation + "=" + config.Hash(impactEdit) + " --overwrite"; p.Confirm != want {
		t.Errorf("confirm = %q, want %q", p.Confirm, want)
	}
	// wait's 198.51.100.200 goes out over BGP from every node (Cluster
	// policy), to the only peer, as soon as the edit is applied.
	var starts []string
	for _, b := range p.BGP {
		if b.Prefix == "198.51.100.200/32" && b.Change == "start" && b.When == "apply" && b.Peer == "tor" {
			starts = append(starts, b.Node)
		}
	}
	if diff := cmp.Diff([]string{"n1", "n2", "n3"}, starts); diff != "" {
		t.Errorf("BGP starts of 198.51.100.200/32 (-want +got):\n%s", diff)
	}
	js, _ := json.Marshal(p.L2)
	for _, l := range p.L2 {
		if l.Address == "198.51.100.10" && (l.After != "" || l.When != "confirm") {
			t.Errorf("legacy's address should stop being answered on confirm: %s", js)
		}
	}
}
