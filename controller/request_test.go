package controller_test

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/heraldlb/herald/controller"
	"github.com/heraldlb/herald/ipam"
)

func TestParseIPs(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []netip.Addr
		wantErr bool
	}{
		{in: "198.51.100.7", want: []netip.Addr{netip.MustParseAddr("198.51.100.7")}},
		{in: " 198.51.100.7 , 2001:db8::7 ", want: []netip.Addr{netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8::7")}},
		{in: "2001:db8::7,198.51.100.7", want: []netip.Addr{netip.MustParseAddr("2001:db8::7"), netip.MustParseAddr("198.51.100.7")}},
		{in: "198.51.100.7,198.51.100.8", wantErr: true},
		{in: "", wantErr: true},
		{in: ",", wantErr: true},
		{in: "fe80::1%eth0", wantErr: true},
		{in: "::ffff:198.51.100.7", wantErr: true},
		{in: "198.51.100.0/24", wantErr: true},
		{in: "web.example", wantErr: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := controller.ParseIPs(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseIPs(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("ParseIPs(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func FuzzParseIPs(f *testing.F) {
	for _, s := range []string{"198.51.100.7", "198.51.100.7,2001:db8::7", " , ", "::ffff:1.2.3.4", "1.2.3.4%x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ips, err := controller.ParseIPs(s)
		if err != nil {
			return
		}
		if len(ips) == 0 || len(ips) > 2 {
			t.Fatalf("ParseIPs(%q) = %v: want one address per family", s, ips)
		}
		if len(ips) == 2 && ips[0].Is4() == ips[1].Is4() {
			t.Fatalf("ParseIPs(%q) = %v: two of one family", s, ips)
		}
		for _, a := range ips {
			if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
				t.Fatalf("ParseIPs(%q) gave %v", s, a)
			}
		}
	})
}

func lbService(mods ...func(*corev1.Service)) *corev1.Service {
	single := corev1.IPFamilyPolicySingleStack
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Labels: map[string]string{"tier": "web"}},
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeLoadBalancer,
			Selector:       map[string]string{"app": "web"},
			IPFamilyPolicy: &single,
			IPFamilies:     []corev1.IPFamily{corev1.IPv4Protocol},
			Ports:          []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}, {Port: 53, Protocol: corev1.ProtocolUDP}},
		},
	}
	for _, m := range mods {
		m(s)
	}
	return s
}

func TestRequestFor(t *testing.T) {
	base := ipam.Request{
		Namespace: "shop", ServiceLabels: map[string]string{"tier": "web"}, NamespaceLabels: map[string]string{"team": "a"},
		Policy: ipam.SingleStack, Families: []ipam.Family{ipam.IPv4},
		Ports:      []ipam.Port{{Protocol: "TCP", Port: 80}, {Protocol: "UDP", Port: 53}},
		BackendKey: "app=web",
	}
	with := func(f func(*ipam.Request)) ipam.Request {
		r := base
		f(&r)
		return r
	}
	annotate := func(k, v string) func(*corev1.Service) {
		return func(s *corev1.Service) { s.Annotations = map[string]string{k: v} }
	}
	for _, tc := range []struct {
		name    string
		svc     *corev1.Service
		want    ipam.Request
		wantErr bool
	}{
		{name: "plain", svc: lbService(), want: base},
		{name: "pool and key", svc: lbService(func(s *corev1.Service) {
			s.Annotations = map[string]string{controller.AnnotationPool: "lan", controller.AnnotationSharingKey: "dns"}
		}), want: with(func(r *ipam.Request) { r.Pool, r.SharingKey = "lan", "dns" })},
		{name: "annotation ips", svc: lbService(annotate(controller.AnnotationIPs, "198.51.100.7")),
			want: with(func(r *ipam.Request) { r.Addresses = []netip.Addr{netip.MustParseAddr("198.51.100.7")} })},
		{name: "loadBalancerIP", svc: lbService(func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.51.100.7" }),
			want: with(func(r *ipam.Request) { r.Addresses = []netip.Addr{netip.MustParseAddr("198.51.100.7")} })},
		{name: "both agree", svc: lbService(annotate(controller.AnnotationIPs, "198.51.100.7"), func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.51.100.7" }),
			want: with(func(r *ipam.Request) { r.Addresses = []netip.Addr{netip.MustParseAddr("198.51.100.7")} })},
		{name: "both disagree", svc: lbService(annotate(controller.AnnotationIPs, "198.51.100.7"), func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.51.100.8" }), wantErr: true},
		{name: "bad annotation", svc: lbService(annotate(controller.AnnotationIPs, "x")), wantErr: true},
		{name: "metallb legacy annotations", svc: lbService(func(s *corev1.Service) {
			s.Annotations = map[string]string{"metallb.universe.tf/loadBalancerIPs": "198.51.100.7,2001:db8::7",
				"metallb.universe.tf/address-pool": "lan", "metallb.universe.tf/allow-shared-ip": "dns"}
		}), want: with(func(r *ipam.Request) {
			r.Pool, r.SharingKey = "lan", "dns"
			r.Addresses = []netip.Addr{netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8::7")}
		})},
		{name: "metallb.io annotations", svc: lbService(func(s *corev1.Service) {
			s.Annotations = map[string]string{"metallb.io/loadBalancerIPs": "198.51.100.7", "metallb.io/address-pool": "lan", "metallb.io/allow-shared-ip": "dns"}
		}), want: with(func(r *ipam.Request) {
			r.Pool, r.SharingKey, r.Addresses = "lan", "dns", []netip.Addr{netip.MustParseAddr("198.51.100.7")}
		})},
		{name: "herald and metallb agree", svc: lbService(func(s *corev1.Service) {
			s.Annotations = map[string]string{controller.AnnotationPool: "lan", "metallb.io/address-pool": " lan"}
		}), want: with(func(r *ipam.Request) { r.Pool = "lan" })},
		{name: "herald and metallb disagree", svc: lbService(func(s *corev1.Service) {
			s.Annotations = map[string]string{controller.AnnotationPool: "lan", "metallb.universe.tf/address-pool": "wan"}
		}), wantErr: true},
		{name: "bad metallb addresses", svc: lbService(annotate("metallb.io/loadBalancerIPs", "198.51.100.7,198.51.100.8")), wantErr: true},
		{name: "local", svc: lbService(func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal }),
			want: with(func(r *ipam.Request) { r.Local = true })},
		{name: "require dual v6 first", svc: lbService(func(s *corev1.Service) {
			p := corev1.IPFamilyPolicyRequireDualStack
			s.Spec.IPFamilyPolicy, s.Spec.IPFamilies = &p, []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
		}), want: with(func(r *ipam.Request) {
			r.Policy, r.Families = ipam.RequireDualStack, []ipam.Family{ipam.IPv6, ipam.IPv4}
		})},
		{name: "prefer dual on a single-stack cluster", svc: lbService(func(s *corev1.Service) {
			p := corev1.IPFamilyPolicyPreferDualStack
			s.Spec.IPFamilyPolicy = &p
		}), want: with(func(r *ipam.Request) { r.Policy = ipam.PreferDualStack })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := controller.RequestFor(tc.svc, map[string]string{"team": "a"})
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("RequestFor (-want +got):\n%s", diff)
			}
		})
	}
}
