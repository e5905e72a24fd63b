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

// MetalLB's Service annotations are accepted as aliases of Herald's, so
// Services need no edit when they move over: both of its prefixes, with
// the same meaning and syntax.
var aliases = map[string][]string{
	AnnotationIPs:        {"metallb.universe.tf/loadBalancerIPs", "metallb.io/loadBalancerIPs"},
	AnnotationPool:       {"metallb.universe.tf/address-pool", "metallb.io/address-pool"},
	AnnotationSharingKey: {"metallb.universe.tf/allow-shared-ip", "metallb.io/allow-shared-ip"},
}

// annotation reads one of Herald's request annotations or its MetalLB
// aliases: the name found, its value, whether any is set, and an error when
// two of them disagree.
func annotation(svc *corev1.Service, name string) (string, string, bool, error) {
	found, value, ok := "", "", false
	for _, n := range append([]string{name}, aliases[name]...) {
		v, set := svc.Annotations[n]
		if !set {
			continue
		}
		if ok && strings.TrimSpace(v) != strings.TrimSpace(value) {
			return "", "", false, fmt.Errorf("%w: annotations %s %q and %s %q disagree; set one", errInvalidRequest, found, value, n, v)
		}
		if !ok {
			found, value, ok = n, v, true
		}
	}
	return found, value, ok, nil
}

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
	_, pool, _, err := annotation(svc, AnnotationPool)
	if err != nil {
		return req, err
	}
	_, key, _, err := annotation(svc, AnnotationSharingKey)
	if err != nil {
		return req, err
	}
	req.Pool, req.SharingKey = strings.TrimSpace(pool), strings.TrimSpace(key)
	name, v, ok, err := annotation(svc, AnnotationIPs)
	if err != nil {
		return req, err
	}
	if ok {
		ips, err := ParseIPs(v)
		if err != nil {
			if name != AnnotationIPs {
				err = errors.New(strings.Replace(err.Error(), AnnotationIPs, name, 1))
			}
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
			return req, fmt.Errorf("%w: spec.loadBalancerIP %s and annotation %s %q disagree; set one", errInvalidRequest, a, name, v)
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
