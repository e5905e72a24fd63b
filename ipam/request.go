package ipam

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Owner identifies who holds addresses: a Service's "namespace/name".
type Owner string

// Family is an IP address family.
type Family uint8

// The address families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// FamilyOf returns the family of a; 0 for the zero Addr. An IPv4-mapped IPv6
// address is IPv6.
func FamilyOf(a netip.Addr) Family {
	switch {
	case a.Is4():
		return IPv4
	case a.Is6():
		return IPv6
	}
	return 0
}

func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	}
	return fmt.Sprintf("Family(%d)", uint8(f))
}

// FamilyPolicy says how many families a Service wants, as
// spec.ipFamilyPolicy does.
type FamilyPolicy uint8

// The family policies.
const (
	// SingleStack: one address, of the only family in Request.Families.
	SingleStack FamilyPolicy = iota
	// PreferDualStack: one address of every family that can be had; an
	// error only when none can.
	PreferDualStack
	// RequireDualStack: one address of each of both families, or nothing.
	RequireDualStack
)

func (p FamilyPolicy) String() string {
	switch p {
	case SingleStack:
		return "SingleStack"
	case PreferDualStack:
		return "PreferDualStack"
	case RequireDualStack:
		return "RequireDualStack"
	}
	return fmt.Sprintf("FamilyPolicy(%d)", uint8(p))
}

// Port is one port a Service exposes; two Services sharing an address must
// not expose the same one.
type Port struct {
	Protocol string // "TCP", "UDP" or "SCTP"
	Port     uint16
}

func (p Port) String() string { return fmt.Sprintf("%s/%d", p.Protocol, p.Port) }

// Request is plain data describing what a Service asks for.
//
// The allocator keeps the request of every owner that holds addresses (to
// judge sharing and configuration changes). It copies the slices but keeps the
// label maps: do not modify them after the call (informer-cache objects are
// never modified anyway).
type Request struct {
	Namespace       string
	ServiceLabels   map[string]string
	NamespaceLabels map[string]string
	Policy          FamilyPolicy
	// Families in preference order, primary first. SingleStack: exactly
	// one; PreferDualStack: one or both (a single-stack cluster gives one);
	// RequireDualStack: both.
	Families []Family
	// Addresses requested, at most one per family. When not empty the owner
	// gets exactly these, and no address of a family they do not cover.
	Addresses []netip.Addr
	// Pool requested by name; "" for none.
	Pool string
	// SharingKey: owners with the same non-empty key may share an address
	// if their Ports do not clash (and, when either is Local, their
	// BackendKeys are equal).
	SharingKey string
	Ports      []Port
	// Local is externalTrafficPolicy: Local.
	Local bool
	// BackendKey identifies the Service's backends (its canonical selector).
	BackendKey string
}

// request is the compact form of a Request the allocator keeps for every
// owner: with a million owners, each byte here is a megabyte. The namespace
// is read from the owner's "namespace/name" unless it differs.
type request struct {
	owner           Owner
	serviceLabels   map[string]string
	namespaceLabels map[string]string
	opt             *requestOptions // nil for the common plain request
	families        [2]Family       // primary first; 0 where absent
	policy          FamilyPolicy
}

// requestOptions holds what most requests leave empty.
type requestOptions struct {
	namespace      string
	otherNamespace bool // namespace is not the owner's
	pool           string
	addresses      []netip.Addr
	share          *sharing // nil without a sharing key
}

// sharing is what decides whether two owners may share an address.
type sharing struct {
	key     string
	ports   []Port
	local   bool
	backend string
}

// compile turns owner's req into its compact form. The result is always
// usable (at most two families are kept); the error says why Assign must
// refuse req.
func compile(owner Owner, req Request) (request, error) {
	r := request{
		owner:           owner,
		serviceLabels:   req.ServiceLabels,
		namespaceLabels: req.NamespaceLabels,
		policy:          req.Policy,
	}
	copy(r.families[:], req.Families)
	otherNS := req.Namespace != namespaceOf(owner)
	if otherNS || req.Pool != "" || len(req.Addresses) > 0 || req.SharingKey != "" {
		r.opt = &requestOptions{pool: req.Pool, addresses: slices.Clone(req.Addresses)}
		if otherNS {
			r.opt.namespace, r.opt.otherNamespace = req.Namespace, true
		}
		if req.SharingKey != "" {
			r.opt.share = &sharing{
				key:     req.SharingKey,
				ports:   slices.Clone(req.Ports),
				local:   req.Local,
				backend: req.BackendKey,
			}
		}
	}
	return r, validate(req)
}

// namespaceOf returns the namespace part of "namespace/name".
func namespaceOf(o Owner) string {
	ns, _, ok := strings.Cut(string(o), "/")
	if !ok {
		return ""
	}
	return ns
}

func (r *request) namespace() string {
	if r.opt != nil && r.opt.otherNamespace {
		return r.opt.namespace
	}
	return namespaceOf(r.owner)
}

func validate(req Request) error {
	fams := req.Families
	switch req.Policy {
	case SingleStack:
		if len(fams) != 1 {
			return fmt.Errorf("%v needs exactly one family, got %v: %w", req.Policy, fams, ErrInvalidRequest)
		}
	case PreferDualStack:
		if len(fams) < 1 || len(fams) > 2 {
			return fmt.Errorf("%v needs one or two families, got %v: %w", req.Policy, fams, ErrInvalidRequest)
		}
	case RequireDualStack:
		if len(fams) != 2 {
			return fmt.Errorf("%v needs both families, got %v: %w", req.Policy, fams, ErrInvalidRequest)
		}
	default:
		return fmt.Errorf("unknown family policy %v: %w", req.Policy, ErrInvalidRequest)
	}
	for i, f := range fams {
		if f != IPv4 && f != IPv6 {
			return fmt.Errorf("unknown family %v: %w", f, ErrInvalidRequest)
		}
		if slices.Contains(fams[:i], f) {
			return fmt.Errorf("family %v listed twice: %w", f, ErrInvalidRequest)
		}
	}
	var covered [2]netip.Addr // by family index
	for _, a := range req.Addresses {
		if !a.IsValid() || a.Zone() != "" {
			return fmt.Errorf("requested address %q is not a plain IP address: %w", a, ErrInvalidRequest)
		}
		f := FamilyOf(a)
		if !slices.Contains(fams, f) {
			return fmt.Errorf("requested address %s is %v, which the Service's families %v do not include: %w", a, f, fams, ErrInvalidRequest)
		}
		if prev := covered[familyIndex(f)]; prev.IsValid() {
			return fmt.Errorf("requested addresses %s and %s are both %v: %w", prev, a, f, ErrInvalidRequest)
		}
		covered[familyIndex(f)] = a
	}
	if req.Policy == RequireDualStack && len(req.Addresses) == 1 {
		return fmt.Errorf("%v with requested address %s needs one of the other family too: %w", req.Policy, req.Addresses[0], ErrInvalidRequest)
	}
	for _, p := range req.Ports {
		switch p.Protocol {
		case "TCP", "UDP", "SCTP":
		default:
			return fmt.Errorf("port %v: protocol must be TCP, UDP or SCTP: %w", p, ErrInvalidRequest)
		}
	}
	return nil
}

// familyIndex maps IPv4 to 0 and IPv6 to 1, for per-family arrays.
func familyIndex(f Family) int {
	if f == IPv6 {
		return 1
	}
	return 0
}

func (r *request) hasFamily(f Family) bool {
	return f != 0 && (r.families[0] == f || r.families[1] == f)
}

// familyList returns the families in preference order.
func (r *request) familyList() []Family {
	if r.families[1] == 0 {
		return r.families[:1]
	}
	return r.families[:]
}

func (r *request) pool() string {
	if r.opt == nil {
		return ""
	}
	return r.opt.pool
}

func (r *request) addresses() []netip.Addr {
	if r.opt == nil {
		return nil
	}
	return r.opt.addresses
}

// requested returns the requested address of family f, if any.
func (r *request) requested(f Family) (netip.Addr, bool) {
	for _, a := range r.addresses() {
		if FamilyOf(a) == f {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func (r *request) share() *sharing {
	if r.opt == nil {
		return nil
	}
	return r.opt.share
}

func (r *request) key() string {
	if s := r.share(); s != nil {
		return s.key
	}
	return ""
}
