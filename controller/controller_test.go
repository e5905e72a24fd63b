package controller_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/controller"
)

const twoPools = `
pools:
- name: a
  addresses: ["198.51.100.10-198.51.100.11", "2001:db8:1::10-2001:db8:1::11"]
- name: b
  addresses: ["203.0.113.10-203.0.113.12"]
`

func TestAssignsAndReports(t *testing.T) {
	e := newEnv(t, twoPools)
	e.svc("web")
	s := e.waitIPs(e.ns, "web", "198.51.100.10")
	if m := s.Status.LoadBalancer.Ingress[0].IPMode; m == nil || *m != corev1.LoadBalancerIPModeVIP {
		t.Errorf("ipMode = %v, want VIP", m)
	}
	if got := s.Annotations[controller.AnnotationAllocatedFrom]; got != "a" {
		t.Errorf("allocated-from = %q, want a", got)
	}
	c := meta.FindStatusCondition(s.Status.Conditions, controller.ConditionAllocated)
	if c.Reason != controller.ReasonAllocated || !strings.Contains(c.Message, "198.51.100.10") {
		t.Errorf("condition = %+v", c)
	}
	e.waitEvent(e.ns, "web", controller.ReasonAllocated, "198.51.100.10 from pool a")
	if v, ok := e.gauge("herald_pool_addresses_in_use", map[string]string{"pool": "a", "family": "ipv4"}); !ok || v != 1 {
		t.Errorf("herald_pool_addresses_in_use{pool=a,family=ipv4} = %v, %v", v, ok)
	}
	if v, _ := e.gauge("herald_config_valid", nil); v != 1 {
		t.Errorf("herald_config_valid = %v", v)
	}
}

func TestRequests(t *testing.T) {
	e := newEnv(t, twoPools)
	e.svc("by-annotation", withAnnotation(controller.AnnotationIPs, "198.51.100.11"))
	e.waitIPs(e.ns, "by-annotation", "198.51.100.11")
	e.svc("by-spec", withLoadBalancerIP("203.0.113.12"))
	e.waitIPs(e.ns, "by-spec", "203.0.113.12")
	e.svc("by-pool", withAnnotation(controller.AnnotationPool, "b"))
	e.waitIPs(e.ns, "by-pool", "203.0.113.10")
	e.svc("both-differ", withLoadBalancerIP("203.0.113.11"), withAnnotation(controller.AnnotationIPs, "198.51.100.10"))
	e.waitReason(e.ns, "both-differ", controller.ReasonInvalidRequest)
	e.svc("taken", withAnnotation(controller.AnnotationIPs, "198.51.100.11"))
	e.waitReason(e.ns, "taken", controller.ReasonRequestedAddressUnavailable)
	e.waitEvent(e.ns, "taken", controller.ReasonRequestedAddressUnavailable, "198.51.100.11")
	e.svc("outside", withAnnotation(controller.AnnotationIPs, "198.51.100.99"))
	e.waitReason(e.ns, "outside", controller.ReasonRequestedAddressUnavailable)
	e.svc("garbage", withAnnotation(controller.AnnotationIPs, "not-an-ip"))
	e.waitReason(e.ns, "garbage", controller.ReasonInvalidRequest)
	e.svc("no-pool", withAnnotation(controller.AnnotationPool, "nope"))
	e.waitReason(e.ns, "no-pool", controller.ReasonNoMatchingPool)
}

func TestEditingTheRequestMovesOnlyThatService(t *testing.T) {
	e := newEnv(t, twoPools)
	// One after the other: four workers may sync two new Services in
	// either order.
	e.svc("one")
	e.waitIPs(e.ns, "one", "198.51.100.10")
	e.svc("two")
	e.waitIPs(e.ns, "two", "198.51.100.11")
	s, _ := e.kube.CoreV1().Services(e.ns).Get(t.Context(), "one", metav1.GetOptions{})
	s.Annotations = map[string]string{controller.AnnotationPool: "b"}
	if _, err := e.kube.CoreV1().Services(e.ns).Update(t.Context(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitIPs(e.ns, "one", "203.0.113.10")
	e.waitEvent(e.ns, "one", controller.ReasonAddressChanged, "198.51.100.10 -> 203.0.113.10")
	e.stays(e.ns, "two", 500*time.Millisecond, "198.51.100.11")
	// The freed address goes to the next Service.
	e.svc("three")
	e.waitIPs(e.ns, "three", "198.51.100.10")
}

func TestFamilies(t *testing.T) {
	e := newEnv(t, twoPools)
	e.svc("v4", withFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv4Protocol))
	e.waitIPs(e.ns, "v4", "198.51.100.10")
	e.svc("v6", withFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol))
	e.waitIPs(e.ns, "v6", "2001:db8:1::10")
	e.svc("prefer", withFamilies(corev1.IPFamilyPolicyPreferDualStack, corev1.IPv6Protocol, corev1.IPv4Protocol))
	e.waitIPs(e.ns, "prefer", "2001:db8:1::11", "198.51.100.11")
	// v6 is exhausted now: PreferDualStack settles for v4 from pool b.
	e.svc("prefer2", withFamilies(corev1.IPFamilyPolicyPreferDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol))
	e.waitIPs(e.ns, "prefer2", "203.0.113.10")
	e.svc("require", withFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol))
	e.waitReason(e.ns, "require", controller.ReasonPoolExhausted)
	// Freeing a v6 address lets the RequireDualStack Service through.
	if err := e.kube.CoreV1().Services(e.ns).Delete(t.Context(), "v6", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitIPs(e.ns, "require", "203.0.113.11", "2001:db8:1::10")
}

func TestSharing(t *testing.T) {
	e := newEnv(t, twoPools)
	e.svc("dns-tcp", withAnnotation(controller.AnnotationSharingKey, "dns"), withPorts(53))
	e.waitIPs(e.ns, "dns-tcp", "198.51.100.10")
	e.svc("dns-alt", withAnnotation(controller.AnnotationSharingKey, "dns"), withPorts(5353))
	e.waitIPs(e.ns, "dns-alt", "198.51.100.10")
	e.svc("clash", withAnnotation(controller.AnnotationSharingKey, "dns"), withPorts(53))
	e.waitIPs(e.ns, "clash", "198.51.100.11")
	e.svc("other-key", withAnnotation(controller.AnnotationSharingKey, "x"), withAnnotation(controller.AnnotationIPs, "198.51.100.10"), withPorts(99))
	e.waitReason(e.ns, "other-key", controller.ReasonRequestedAddressUnavailable)
	// The shared address stays with its last holder.
	if err := e.kube.CoreV1().Services(e.ns).Delete(t.Context(), "dns-tcp", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.stays(e.ns, "dns-alt", 500*time.Millisecond, "198.51.100.10")
}

func TestPoolSelection(t *testing.T) {
	e := newEnv(t, `
pools:
- name: general
  addresses: ["198.51.100.10-198.51.100.19"]
- name: team-a
  addresses: ["198.51.100.20-198.51.100.29"]
  allocation: {namespaceSelector: {matchLabels: {team: a}}, priority: 20}
- name: team-a-web
  addresses: ["198.51.100.30-198.51.100.39"]
  allocation: {namespaceSelector: {matchLabels: {team: a}}, serviceSelector: {matchLabels: {tier: web}}, priority: 10}
- name: reserved
  autoAssign: false
  addresses: ["198.51.100.40-198.51.100.49"]
`)
	teamNS := e.ns + "-a"
	e.createNamespace(teamNS, map[string]string{"team": "a"})
	e.svc("plain")
	e.waitIPs(e.ns, "plain", "198.51.100.10")
	e.svc("team", withNamespace(teamNS))
	e.waitIPs(teamNS, "team", "198.51.100.20")
	e.svc("web", withNamespace(teamNS), withLabels(map[string]string{"tier": "web"}))
	e.waitIPs(teamNS, "web", "198.51.100.30")
	e.svc("special", withAnnotation(controller.AnnotationPool, "reserved"))
	e.waitIPs(e.ns, "special", "198.51.100.40")
	e.svc("not-team", withAnnotation(controller.AnnotationPool, "team-a"))
	e.waitReason(e.ns, "not-team", controller.ReasonNoMatchingPool)
}

func TestExhaustionThenFreeing(t *testing.T) {
	e := newEnv(t, `
pools:
- name: tiny
  addresses: ["198.51.100.10/32"]
`)
	e.svc("first")
	e.waitIPs(e.ns, "first", "198.51.100.10")
	e.svc("second")
	e.waitReason(e.ns, "second", controller.ReasonPoolExhausted)
	e.waitEvent(e.ns, "second", controller.ReasonPoolExhausted, "tiny")
	if err := e.kube.CoreV1().Services(e.ns).Delete(t.Context(), "first", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitIPs(e.ns, "second", "198.51.100.10")
}

func TestInvalidConfigChangesNothing(t *testing.T) {
	e := newEnv(t, twoPools)
	e.svc("kept")
	e.waitIPs(e.ns, "kept", "198.51.100.10")
	e.setConfig("pools:\n- name: a\n  addresses: [\"198.51.100.10-198.51.100.5\"]\n  colour: blue\n")
	e.waitEvent(e.ns, "herald", "InvalidConfig", "pools[0]")
	deadline := time.Now().Add(5 * time.Second)
	for v, _ := e.gauge("herald_config_valid", nil); v != 0; v, _ = e.gauge("herald_config_valid", nil) {
		if time.Now().After(deadline) {
			t.Fatal("herald_config_valid stays 1 after an invalid config")
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.svc("new")
	e.waitReason(e.ns, "new", controller.ReasonConfigInvalid)
	e.stays(e.ns, "kept", time.Second, "198.51.100.10")
	// Fixing the config serves the waiting Service.
	e.setConfig(twoPools)
	e.waitIPs(e.ns, "new", "198.51.100.11")
	e.stays(e.ns, "kept", 300*time.Millisecond, "198.51.100.10")
}

func TestMissingConfigAtStartTouchesNothing(t *testing.T) {
	e := newEnv(t, "")
	e.svc("waiting")
	e.waitReason(e.ns, "waiting", controller.ReasonConfigInvalid)
	e.setConfig(twoPools)
	e.waitIPs(e.ns, "waiting", "198.51.100.10")
}

// The blast-radius guard: removing a pool that holds addresses, or
// narrowing one, keeps its holders as they are (reported on the ConfigMap,
// the Service and in a metric) until the user confirms the document; new
// Services follow the new document at once.
func TestPoolRemovedIsHeldUntilConfirmed(t *testing.T) {
	e := newEnv(t, twoPools)
	e.svc("in-a")
	e.svc("in-b", withAnnotation(controller.AnnotationPool, "b"))
	e.waitIPs(e.ns, "in-a", "198.51.100.10")
	e.waitIPs(e.ns, "in-b", "203.0.113.10")
	const withoutB = `
pools:
- name: a
  addresses: ["198.51.100.10-198.51.100.11"]
- name: c
  addresses: ["203.0.113.100/32"]
`
	e.setConfig(withoutB)
	e.waitReason(e.ns, "in-b", controller.ReasonConfigChangeHeld, "203.0.113.10")
	e.waitEvent(e.ns, "herald", controller.ReasonConfigChangeHeld, e.ns+"/in-b (203.0.113.10: no pool contains it any more)")
	e.waitEvent(e.ns, "herald", controller.ReasonConfigChangeHeld, config.ConfirmAnnotation+"="+config.Hash(withoutB))
	e.stays(e.ns, "in-b", 500*time.Millisecond, "203.0.113.10")
	e.stays(e.ns, "in-a", 100*time.Millisecond, "198.51.100.10")
	if v, _ := e.gauge("herald_config_held_services", nil); v != 1 {
		t.Errorf("herald_config_held_services = %v, want 1", v)
	}
	// New Services follow the new document.
	e.svc("new-c", withAnnotation(controller.AnnotationPool, "c"))
	e.waitIPs(e.ns, "new-c", "203.0.113.100")
	e.svc("new-b", withAnnotation(controller.AnnotationPool, "b"))
	e.waitReason(e.ns, "new-b", controller.ReasonNoMatchingPool)

	// A restart while the change is held keeps holding it.
	e.stopController()
	e.start()
	e.stays(e.ns, "in-b", time.Second, "203.0.113.10")
	e.waitReason(e.ns, "in-b", controller.ReasonConfigChangeHeld, "203.0.113.10")

	// Confirming lets the change take its address.
	e.confirm(config.Hash(withoutB))
	e.waitReason(e.ns, "in-b", controller.ReasonNoMatchingPool)
	e.waitEvent(e.ns, "herald", "ConfigChangeConfirmed", config.Hash(withoutB))
	e.stays(e.ns, "in-a", 100*time.Millisecond, "198.51.100.10")

	// Narrowing pool a is held too, then moves its Service once confirmed.
	const narrowA = `
pools:
- name: a
  addresses: ["198.51.100.11/32"]
`
	e.setConfig(narrowA)
	e.waitReason(e.ns, "in-a", controller.ReasonConfigChangeHeld, "198.51.100.10")
	e.stays(e.ns, "in-a", 300*time.Millisecond, "198.51.100.10")
	e.confirm(config.Hash(narrowA))
	e.waitIPs(e.ns, "in-a", "198.51.100.11")
	e.waitEvent(e.ns, "in-a", controller.ReasonAddressChanged, "no pool contains 198.51.100.10")
}

// An edit that only adds keeps nothing on hold and needs no confirmation.
func TestGrowingPoolNeedsNoConfirmation(t *testing.T) {
	e := newEnv(t, twoPools)
	e.svc("one")
	e.waitIPs(e.ns, "one", "198.51.100.10")
	e.setConfig(twoPools + "- name: more\n  addresses: [\"203.0.113.200/30\"]\n")
	e.svc("two", withAnnotation(controller.AnnotationPool, "more"))
	e.waitIPs(e.ns, "two", "203.0.113.200")
	e.waitFor(e.ns, "one", "still allocated", func(s *corev1.Service) bool {
		c := meta.FindStatusCondition(s.Status.Conditions, controller.ConditionAllocated)
		return c != nil && c.Reason == controller.ReasonAllocated
	})
	if v, _ := e.gauge("herald_config_held_services", nil); v != 0 {
		t.Errorf("herald_config_held_services = %v, want 0", v)
	}
}

// An empty document, one with only comments, or a ConfigMap without the
// key is never "no pools": everything stays.
func TestEmptyOrMissingDocumentKeepsEverything(t *testing.T) {
	e := newEnv(t, twoPools)
	e.svc("kept")
	e.waitIPs(e.ns, "kept", "198.51.100.10")
	for _, text := range []string{"", "# all commented out\n", "  \n"} {
		e.setConfig(text)
		e.waitEvent(e.ns, "herald", "InvalidConfig", "empty")
		e.stays(e.ns, "kept", 300*time.Millisecond, "198.51.100.10")
		e.setConfig(twoPools)
	}
	cm, err := e.kube.CoreV1().ConfigMaps(e.ns).Get(t.Context(), "herald", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data = map[string]string{"other.yaml": "pools: []"}
	if _, err := e.kube.CoreV1().ConfigMaps(e.ns).Update(t.Context(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitEvent(e.ns, "herald", "InvalidConfig", "no key config.yaml")
	e.stays(e.ns, "kept", 300*time.Millisecond, "198.51.100.10")
	// A restart while the key is missing runs on the recorded document.
	e.stopController()
	e.start()
	e.stays(e.ns, "kept", time.Second, "198.51.100.10")
	e.svc("later")
	e.waitReason(e.ns, "later", controller.ReasonConfigInvalid)
}

func TestClassesAndTypes(t *testing.T) {
	e := newEnv(t, twoPools)
	e.svc("other-class", withClass("example.com/other"))
	e.svc("mine")
	e.waitIPs(e.ns, "mine", "198.51.100.10")
	time.Sleep(300 * time.Millisecond)
	if s, _ := e.kube.CoreV1().Services(e.ns).Get(t.Context(), "other-class", metav1.GetOptions{}); len(s.Status.LoadBalancer.Ingress) > 0 || len(s.Status.Conditions) > 0 {
		t.Errorf("a Service of another class was touched: %+v", s.Status)
	}
	// Turning a LoadBalancer into a ClusterIP Service releases its address.
	s, _ := e.kube.CoreV1().Services(e.ns).Get(t.Context(), "mine", metav1.GetOptions{})
	s.Spec.Type = corev1.ServiceTypeClusterIP
	s.Spec.LoadBalancerClass = nil
	for i := range s.Spec.Ports {
		s.Spec.Ports[i].NodePort = 0
	}
	s.Spec.AllocateLoadBalancerNodePorts = nil
	if _, err := e.kube.CoreV1().Services(e.ns).Update(t.Context(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitFor(e.ns, "mine", "released", func(s *corev1.Service) bool {
		return len(s.Status.LoadBalancer.Ingress) == 0 && s.Annotations[controller.AnnotationAllocatedFrom] == "" &&
			meta.FindStatusCondition(s.Status.Conditions, controller.ConditionAllocated) == nil
	})
	e.svc("next")
	e.waitIPs(e.ns, "next", "198.51.100.10")
}

func TestRestartKeepsAddresses(t *testing.T) {
	e := newEnv(t, twoPools)
	e.svc("old")
	e.svc("older", withAnnotation(controller.AnnotationIPs, "198.51.100.11"))
	e.waitIPs(e.ns, "old", "198.51.100.10")
	e.waitIPs(e.ns, "older", "198.51.100.11")
	e.stopController()
	// A Service created while no controller runs must not take a held address.
	e.svc("newcomer")
	e.start()
	e.waitIPs(e.ns, "newcomer", "203.0.113.10")
	e.stays(e.ns, "old", 300*time.Millisecond, "198.51.100.10")
	e.stays(e.ns, "older", 100*time.Millisecond, "198.51.100.11")
}

func TestRestoreConflictKeepsTheOlder(t *testing.T) {
	e := newEnv(t, twoPools)
	e.svc("first")
	e.waitIPs(e.ns, "first", "198.51.100.10")
	e.stopController()
	// Forge a duplicate, as a buggy tool or a restore from backup might.
	time.Sleep(time.Second) // creation timestamps have second resolution
	dup := e.svc("second")
	dup.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.10"}}
	if _, err := e.kube.CoreV1().Services(e.ns).UpdateStatus(context.Background(), dup, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.start()
	e.waitIPs(e.ns, "second", "198.51.100.11")
	e.waitEvent(e.ns, "second", controller.ReasonAddressConflict, "198.51.100.10")
	e.stays(e.ns, "first", 300*time.Millisecond, "198.51.100.10")
}
