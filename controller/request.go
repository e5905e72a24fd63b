package controller

import (
	"cmp"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/heraldlb/herald/ipam"
)

// Annotations users set on a Service, and the one Herald sets.
const (
	AnnotationIPs           = "herald.dev/ips"
	AnnotationPool          = "herald.dev/pool"
	AnnotationSharingKey    = "herald.dev/sharing-key"
	AnnotationAllocatedFrom = "herald.dev/allocated-from"
	// AnnotationGrantedRequest fingerprints the request a Service's
	// addresses were last judged under (GrantKey). After a restart it tells a
	// Service edited meanwhile from one that did not change, so a sharing
	// conflict the edit caused moves the edited one.
	AnnotationGrantedRequest = "herald.dev/granted-request"
)

// errInvalidRequest marks a request the Service itself gets wrong; retrying
// cannot help until the Service changes.
var errInvalidRequest = errors.New("invalid request")

// ParseIPs parses the herald.dev/ips annotation: comma-separated addresses,
// at most one per family, no zones.
func ParseIPs(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not an IP address", AnnotationIPs, f)
		}
		if a.Zone() != "" || a.Is4In6() {
			return nil, fmt.Errorf("%s: %q: want a plain IPv4 or IPv6 address", AnnotationIPs, f)
		}
		for _, o := range out {
			if o.Is4() == a.Is4() {
				return nil, fmt.Errorf("%s: %s and %s are of one family; give at most one per family", AnnotationIPs, o, a)
			}
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: empty", AnnotationIPs)
	}
	return out, nil
}

// RequestFor turns a Service (and its namespace's labels) into an allocation request.
func RequestFor(svc *corev1.Service, nsLabels map[string]string) (ipam.Request, error) {
	req := ipam.Request{
		Namespace:       svc.Namespace,
		ServiceLabels:   svc.Labels,
		NamespaceLabels: nsLabels,
		Pool:            strings.TrimSpace(svc.Annotations[AnnotationPool]),
		SharingKey:      strings.TrimSpace(svc.Annotations[AnnotationSharingKey]),
		Local:           svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
		BackendKey:      labels.SelectorFromSet(svc.Spec.Selector).String(),
	}
	req.Policy, req.Families = families(svc)
	for _, p := range svc.Spec.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = string(corev1.ProtocolTCP)
		}
		req.Ports = append(req.Ports, ipam.Port{Protocol: proto, Port: uint16(p.Port)})
	}
	if v, ok := svc.Annotations[AnnotationIPs]; ok {
		ips, err := ParseIPs(v)
		if err != nil {
			return req, fmt.Errorf("%w: %w", errInvalidRequest, err)
		}
		req.Addresses = ips
	}
	if lbIP := strings.TrimSpace(svc.Spec.LoadBalancerIP); lbIP != "" {
		a, err := netip.ParseAddr(lbIP)
		if err != nil {
			return req, fmt.Errorf("%w: spec.loadBalancerIP %q is not an IP address", errInvalidRequest, lbIP)
		}
		if req.Addresses != nil && !slices.Equal(req.Addresses, []netip.Addr{a}) {
			return req, fmt.Errorf("%w: spec.loadBalancerIP %s and annotation %s %q disagree; set one", errInvalidRequest, a, AnnotationIPs, svc.Annotations[AnnotationIPs])
		}
		req.Addresses = []netip.Addr{a}
	}
	return req, nil
}

// families reads the Service's IP families. The API server fills
// spec.ipFamilies and spec.ipFamilyPolicy on every Service it stores, with
// only the families the cluster has: an address of another family would reach
// a node whose kube-proxy has no rule for it, so none is asked for.
func families(svc *corev1.Service) (ipam.FamilyPolicy, []ipam.Family) {
	var fams []ipam.Family
	for _, f := range svc.Spec.IPFamilies {
		if f == corev1.IPv6Protocol {
			fams = append(fams, ipam.IPv6)
		} else {
			fams = append(fams, ipam.IPv4)
		}
	}
	policy := ipam.SingleStack
	if p := svc.Spec.IPFamilyPolicy; p != nil {
		switch *p {
		case corev1.IPFamilyPolicyPreferDualStack:
			policy = ipam.PreferDualStack
		case corev1.IPFamilyPolicyRequireDualStack:
			policy = ipam.RequireDualStack
		}
	}
	if len(fams) == 0 {
		fams = []ipam.Family{ipam.IPv4}
	}
	return policy, fams
}

// GrantKey fingerprints what a Service asks for of its own accord (not its
// namespace's labels): addresses, pool, sharing key, ports, traffic policy,
// backends, families and labels.
func GrantKey(req ipam.Request) string {
	h := fnv.New64a()
	fmt.Fprintf(h, "%v|%v|%v|%q|%q|%v|%q|", req.Policy, req.Families, req.Addresses, req.Pool, req.SharingKey, req.Local, req.BackendKey)
	ports := slices.Clone(req.Ports)
	slices.SortFunc(ports, func(a, b ipam.Port) int {
		return cmp.Or(strings.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Port, b.Port))
	})
	fmt.Fprintf(h, "%v|%s", ports, labels.Set(req.ServiceLabels).String())
	return strconv.FormatUint(h.Sum64(), 36)
}
