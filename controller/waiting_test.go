package controller_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/heraldlb/herald/controller"
)

// TestFreedAddressReachesAPartlyServedService is the two-replica torture's
// finding made deterministic: a RequireDualStack Service whose requested IPv4
// address another Service holds keeps its IPv6 address and waits. It must get
// the IPv4 address once the holder lets it go, although it is not without an
// address while it waits.
func TestFreedAddressReachesAPartlyServedService(t *testing.T) {
	e := newEnv(t, twoPools)
	dual := withFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol)
	e.svc("waiter", dual, withAnnotation(controller.AnnotationIPs, "198.51.100.10,2001:db8:1::10"))
	e.waitIPs(e.ns, "waiter", "198.51.100.10", "2001:db8:1::10")
	e.svc("holder", withAnnotation(controller.AnnotationIPs, "198.51.100.11"))
	e.waitIPs(e.ns, "holder", "198.51.100.11")

	// The waiter asks for the holder's address: it keeps its IPv6 one.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := e.kube.CoreV1().Services(e.ns).Get(t.Context(), "waiter", metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Annotations[controller.AnnotationIPs] = "198.51.100.11,2001:db8:1::10"
		_, err = e.kube.CoreV1().Services(e.ns).Update(t.Context(), s, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	e.waitReason(e.ns, "waiter", controller.ReasonRequestedAddressUnavailable, "2001:db8:1::10")

	if err := e.kube.CoreV1().Services(e.ns).Delete(t.Context(), "holder", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitIPs(e.ns, "waiter", "198.51.100.11", "2001:db8:1::10")
}
