package report

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/controller"
	"github.com/heraldlb/herald/ipam"
	"github.com/heraldlb/herald/speaker"
)

// Explanation is the result of `kubectl herald explain svc/NAME`: the
// steps a packet's path depends on, in order, and a verdict.
type Explanation struct {
	Service   string   `json:"service"` // namespace/name
	Addresses []string `json:"addresses,omitempty"`
	Steps     []Step   `json:"steps"`
	Reachable bool     `json:"reachable"`
	Verdict   string   `json:"verdict"`
}

// Step is one link of the chain: its result, and for a problem a stable
// reason word (scripts and tests key on it) with the why.
type Step struct {
	Name    string   `json:"name"`
	Result  string   `json:"result"`
	Reason  string   `json:"reason,omitempty"`
	Summary string   `json:"summary"`
	Details []string `json:"details,omitempty"`
}

// Step names, in order.
const (
	StepConfig    = "config"
	StepPool      = "pool"
	StepEndpoints = "endpoints"
	StepL2        = "l2"
	StepBGP       = "bgp"
	StepKubeProxy = "kube-proxy"
)

// Step results.
const (
	ResultOK      = "OK"
	ResultWarning = "WARNING"
	ResultProblem = "PROBLEM"
	ResultUnknown = "UNKNOWN"
	ResultSkipped = "-"
)

// Reasons explain gives beyond the controller's condition reasons (which it
// passes on: controller.ReasonNoMatchingPool, ReasonPoolExhausted,
// ReasonRequestedAddressUnavailable, ReasonConfigInvalid, ...).
const (
	ReasonNotLoadBalancer      = "NotLoadBalancer"
	ReasonOtherClass           = "OtherClass"
	ReasonSharingConflict      = "SharingConflict"
	ReasonPending              = "Pending"
	ReasonSpeakerConfig        = "SpeakerConfigDiffers"
	ReasonNoReadyEndpoint      = "NoReadyEndpoint"
	ReasonNoLocalEndpoint      = "NoLocalEndpoint"
	ReasonNoL2Advertisement    = "NoL2Advertisement"
	ReasonNoBGPAdvertisement   = "NoBGPAdvertisement"
	ReasonNodeExcluded         = "NodeExcluded"
	ReasonNetworkUnavailable   = "NetworkUnavailable"
	ReasonDataPathDown         = "DataPathDown"
	ReasonNotSelected          = "NotSelected"
	ReasonNotAlive             = "NotAlive"
	ReasonNoEligibleNode       = "NoEligibleNode"
	ReasonNotAnswered          = "NotAnswered"
	ReasonOtherAnswerer        = "OtherAnswerer"
	ReasonNoSession            = "NoSession"
	ReasonPeerDown             = "PeerDown"
	ReasonNotAdvertised        = "NotAdvertised"
	ReasonIPVSWithoutStrictARP = "IPVSWithoutStrictARP"
)

// Explain accounts for why Service namespace/name is or is not reachable,
// from a snapshot (ReadCluster with the Service's key). The decisions are
// the speakers' own (speaker.DecideL2Kept, DecideBGPKept) on what the
// cluster shows, compared with what the speakers report they do.
func Explain(c *Cluster, namespace, name string) (Explanation, error) {
	svc := c.Service(namespace, name)
	if svc == nil {
		return Explanation{}, fmt.Errorf("service %s/%s not found", namespace, name)
	}
	e := &explainer{c: c, svc: svc, key: namespace + "/" + name, st: c.loadConfig()}
	e.addrs = ingressAddrs(svc)
	x := Explanation{Service: e.key}
	for _, a := range e.addrs {
		x.Addresses = append(x.Addresses, a.String())
	}
	x.Steps = []Step{e.config(), e.pool(), e.endpoints(), e.l2(), e.bgp(), e.kubeProxy()}
	x.Reachable, x.Verdict = e.verdict(x.Steps)
	return x, nil
}

type explainer struct {
	c     *Cluster
	svc   *corev1.Service
	key   string
	st    config.State
	addrs []netip.Addr

	// Filled as the steps go.
	ready           map[string]int // ready endpoints by node
	l2Answered      []string       // how the address is answered in L2, for the verdict
	bgpAdvertised   []string       // how it is advertised, for the verdict
	l2Used, ipvsBad bool
}

func (e *explainer) local() bool {
	return e.svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
}

// 1. The configuration in force.
func (e *explainer) config() Step {
	s := Step{Name: StepConfig, Result: ResultOK}
	st := e.st
	where := e.c.Namespace + "/" + ConfigName
	switch {
	case st.Err != nil:
		s.Result, s.Reason = ResultProblem, controller.ReasonConfigInvalid
		probs := config.Problems(st.Err)
		what := fmt.Sprintf("ConfigMap %s is invalid (%s)", where, plural(len(probs), "problem"))
		if len(probs) == 1 && probs[0].Path == "" {
			what = fmt.Sprintf("ConfigMap %s: %v", where, probs[0].Err)
		} else {
			for _, p := range probs {
				s.Details = append(s.Details, p.Path+": "+p.Err.Error())
			}
		}
		instead := "no valid configuration was ever loaded: no address is handed out or announced"
		if st.Config != nil {
			instead = "the last valid configuration " + st.Hash + " stays in force: addresses are kept and announced, new ones wait"
		}
		s.Summary = what + "; " + instead
	case st.Accepted != nil:
		s.Summary = fmt.Sprintf("valid (hash %s); a change is held for the Services it would take from", st.Hash)
		if cond := condition(e.svc, controller.ConditionAllocated); cond != nil && cond.Reason == controller.ReasonConfigChangeHeld {
			s.Result, s.Reason = ResultWarning, controller.ReasonConfigChangeHeld
			s.Summary = fmt.Sprintf("configuration %s is held for this Service: it keeps what %s gave it until you confirm", st.Hash, config.Hash(st.AcceptedText))
			s.Details = append(s.Details, fmt.Sprintf("confirm: kubectl -n %s annotate configmap %s %s=%s --overwrite", e.c.Namespace, ConfigName, config.ConfirmAnnotation, st.Hash))
		}
	default:
		s.Summary = fmt.Sprintf("valid (hash %s)", st.Hash)
	}
	for _, sp := range e.c.Speakers {
		if sp.Status.Config != "" && st.Hash != "" && sp.Status.Config != st.Hash {
			s.Details = append(s.Details, fmt.Sprintf("node %s runs configuration %s, not %s", sp.Name, sp.Status.Config, st.Hash))
			if s.Result == ResultOK {
				s.Result, s.Reason = ResultWarning, ReasonSpeakerConfig
			}
		}
	}
	return s
}

// 2. Pool selection: what the Service asks for, which pools may serve it,
// and the controller's verdict, checked against a dry run of the allocator.
func (e *explainer) pool() Step {
	s := Step{Name: StepPool}
	svc := e.svc
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		s.Result, s.Reason = ResultProblem, ReasonNotLoadBalancer
		s.Summary = fmt.Sprintf("the Service is of type %s, not LoadBalancer: Herald gives it no address", cmp.Or(string(svc.Spec.Type), "ClusterIP"))
		return s
	}
	if class, want := ptrValue(svc.Spec.LoadBalancerClass), e.c.lbClass(); class != want {
		s.Result, s.Reason = ResultProblem, ReasonOtherClass
		s.Summary = fmt.Sprintf("spec.loadBalancerClass is %q; Herald serves %q", class, want)
		return s
	}
	req, reqErr := controller.RequestFor(svc, e.nsLabels(svc.Namespace))
	s.Details = append(s.Details, "asks for: "+describeRequest(req))
	cfg := e.st.Config
	var derived []netip.Addr
	var derr error
	if cfg != nil && reqErr == nil {
		s.Details = append(s.Details, poolChoice(cfg, req)...)
		derived, derr = e.dryRun(cfg, req)
	}
	for _, o := range e.c.sharers(svc) {
		key, _ := sharingKey(o)
		s.Details = append(s.Details, fmt.Sprintf("shares %s with %s/%s (sharing key %q)", joinAddrs(commonAddrs(e.addrs, ingressAddrs(o))), o.Namespace, o.Name, key))
	}

	cond := condition(svc, controller.ConditionAllocated)
	pool := svc.Annotations[annotationAllocatedFrom]
	switch {
	case len(e.addrs) > 0 && (cond == nil || cond.Status == metav1.ConditionTrue):
		s.Result = ResultOK
		s.Summary = fmt.Sprintf("%s from pool %s", joinAddrs(e.addrs), dash(pool))
	case len(e.addrs) > 0:
		s.Result, s.Reason = ResultWarning, refine(cond.Reason, cond.Message, req)
		s.Summary = cond.Message
	case reqErr != nil:
		s.Result, s.Reason, s.Summary = ResultProblem, controller.ReasonInvalidRequest, reqErr.Error()
	case cond != nil && cond.Status != metav1.ConditionTrue:
		s.Result, s.Reason = ResultProblem, refine(cond.Reason, cond.Message, req)
		s.Summary = cond.Message
	case derr != nil:
		s.Result, s.Reason, s.Summary = ResultProblem, refine(errReason(derr), derr.Error(), req), derr.Error()
	default:
		s.Result, s.Reason = ResultProblem, ReasonPending
		s.Summary = "the controller has given it no address yet"
		if e.c.Lease == nil || e.c.Lease.Spec.HolderIdentity == nil || *e.c.Lease.Spec.HolderIdentity == "" {
			s.Summary += ", and no controller holds the Lease " + LeaseName
		}
	}
	if cfg != nil && reqErr == nil {
		from := "re-derived from configuration " + e.st.Hash
		if e.st.Err != nil {
			from = "re-derived from the last valid configuration " + e.st.Hash + " (once the ConfigMap is valid)"
		}
		if derr != nil {
			s.Details = append(s.Details, fmt.Sprintf("%s: refused: %v", from, derr))
		} else {
			s.Details = append(s.Details, fmt.Sprintf("%s: %s", from, joinAddrs(derived)))
		}
	}
	for _, ev := range recentWarnings(e.c.Events, 3) {
		s.Details = append(s.Details, "event: "+ev)
	}
	return s
}

func (e *explainer) nsLabels(ns string) map[string]string {
	for _, n := range e.c.Namespaces {
		if n.Name == ns {
			return n.Labels
		}
	}
	return nil
}

// dryRun runs the allocator as the controller would: every address in
// Service status claimed (oldest Service first), then the Service assigned.
func (e *explainer) dryRun(cfg *config.Config, req ipam.Request) ([]netip.Addr, error) {
	alloc := ipam.New(cfg.Pools)
	svcs := make([]*corev1.Service, 0, len(e.c.Services))
	for i := range e.c.Services {
		if s := &e.c.Services[i]; e.c.serves(s) && len(ingressAddrs(s)) > 0 {
			svcs = append(svcs, s)
		}
	}
	slices.SortFunc(svcs, func(a, b *corev1.Service) int {
		if d := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); d != 0 {
			return d
		}
		return cmp.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	for _, s := range svcs {
		r, _ := controller.RequestFor(s, e.nsLabels(s.Namespace))
		_ = alloc.Restore(ipam.Owner(s.Namespace+"/"+s.Name), ingressAddrs(s), r)
	}
	return alloc.Assign(ipam.Owner(e.key), req)
}

// poolChoice says which pools may serve the request, each judged by ipam
// itself (a pool of its own, asked for by name).
func poolChoice(cfg *config.Config, req ipam.Request) []string {
	var auto, byName, refuse []string
	for _, p := range cfg.Pools {
		r := req
		r.Pool, r.Addresses, r.SharingKey = p.Name, nil, ""
		_, err := ipam.New([]config.Pool{p}).Assign("probe", r)
		switch {
		case errors.Is(err, ipam.ErrNoMatchingPool):
			refuse = append(refuse, p.Name+" (its allocation rules do not serve the Service)")
		case errors.Is(err, ipam.ErrFamilyUnavailable):
			refuse = append(refuse, p.Name+" (not of the families asked for)")
		case p.AutoAssign:
			auto = append(auto, p.Name)
		default:
			byName = append(byName, p.Name)
		}
	}
	var out []string
	if len(auto) > 0 {
		out = append(out, "pools that serve it automatically: "+strings.Join(auto, ", "))
	}
	if len(byName) > 0 {
		out = append(out, "pools that serve it when asked by name or address (autoAssign: false): "+strings.Join(byName, ", "))
	}
	if len(refuse) > 0 {
		out = append(out, "pools that refuse it: "+strings.Join(refuse, ", "))
	}
	if len(cfg.Pools) == 0 {
		out = append(out, "the configuration has no pool")
	}
	return out
}

func describeRequest(req ipam.Request) string {
	var parts []string
	if req.Pool != "" {
		parts = append(parts, "pool "+req.Pool)
	}
	if len(req.Addresses) > 0 {
		parts = append(parts, "addresses "+joinAddrs(req.Addresses))
	}
	if req.SharingKey != "" {
		parts = append(parts, fmt.Sprintf("sharing key %q", req.SharingKey))
	}
	fams := make([]string, len(req.Families))
	for i, f := range req.Families {
		fams[i] = f.String()
	}
	parts = append(parts, fmt.Sprintf("%s %s", req.Policy, strings.Join(fams, ",")))
	if len(parts) == 1 {
		parts = append([]string{"any address"}, parts...)
	}
	return strings.Join(parts, ", ")
}

func sharingKey(svc *corev1.Service) (string, bool) {
	for _, k := range []string{controller.AnnotationSharingKey, "metallb.universe.tf/allow-shared-ip", "metallb.io/allow-shared-ip"} {
		if v, ok := svc.Annotations[k]; ok {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// refine names a refused requested address a sharing conflict when the
// Service asks to share it.
func refine(reason, message string, req ipam.Request) string {
	if reason == controller.ReasonRequestedAddressUnavailable && req.SharingKey != "" && strings.Contains(message, "may not be shared") {
		return ReasonSharingConflict
	}
	return reason
}

// errReason maps an allocation error to the controller's condition reason.
func errReason(err error) string {
	switch {
	case errors.Is(err, ipam.ErrInvalidRequest):
		return controller.ReasonInvalidRequest
	case errors.Is(err, ipam.ErrPoolExhausted):
		return controller.ReasonPoolExhausted
	case errors.Is(err, ipam.ErrAddressInUse), errors.Is(err, ipam.ErrAddressNotInPool):
		return controller.ReasonRequestedAddressUnavailable
	case errors.Is(err, ipam.ErrFamilyUnavailable):
		return controller.ReasonFamilyUnavailable
	case errors.Is(err, ipam.ErrNoMatchingPool):
		return controller.ReasonNoMatchingPool
	}
	return controller.ReasonInvalidRequest
}

func recentWarnings(events []corev1.Event, n int) []string {
	evs := slices.Clone(events)
	slices.SortFunc(evs, func(a, b corev1.Event) int { return eventTime(b).Compare(eventTime(a).Time) })
	var out []string
	for _, ev := range evs {
		if ev.Type != corev1.EventTypeWarning || len(out) == n {
			continue
		}
		out = append(out, ev.Reason+": "+ev.Message)
	}
	return out
}

func eventTime(ev corev1.Event) metav1.Time {
	switch {
	case !ev.LastTimestamp.IsZero():
		return ev.LastTimestamp
	case !ev.EventTime.IsZero():
		return metav1.Time{Time: ev.EventTime.Time}
	}
	return ev.CreationTimestamp
}

// 3. Ready endpoints per node, as the speakers count them.
func (e *explainer) endpoints() Step {
	s := Step{Name: StepEndpoints}
	e.ready = map[string]int{}
	notReady, noNode := 0, 0
	for _, es := range e.slicesOf(e.svc) {
		for _, ep := range es.Endpoints {
			switch {
			case ep.Conditions.Ready == nil || !*ep.Conditions.Ready:
				notReady++
			case ep.NodeName == nil:
				noNode++
			default:
				e.ready[*ep.NodeName]++
			}
		}
	}
	nodes := sortedKeys(e.ready)
	var per []string
	total := 0
	for _, n := range nodes {
		per = append(per, fmt.Sprintf("%s: %d", n, e.ready[n]))
		total += e.ready[n]
	}
	if notReady > 0 {
		s.Details = append(s.Details, fmt.Sprintf("%d endpoints not ready", notReady))
	}
	if noNode > 0 {
		s.Details = append(s.Details, fmt.Sprintf("%d ready endpoints name no node: no speaker counts them", noNode))
	}
	if total == 0 {
		s.Result, s.Reason = ResultProblem, ReasonNoReadyEndpoint
		s.Summary = "no ready endpoint: nothing is announced, and nothing would answer"
		if len(e.svc.Spec.Selector) == 0 {
			s.Details = append(s.Details, "the Service has no selector: its EndpointSlices are kept by hand")
		}
		return s
	}
	s.Result = ResultOK
	s.Summary = fmt.Sprintf("%d ready on %s", total, strings.Join(per, ", "))
	if e.local() {
		s.Summary += "; externalTrafficPolicy Local: only " + strings.Join(nodes, ", ") + " may announce it, and traffic is not forwarded between nodes"
	} else {
		s.Summary += "; externalTrafficPolicy Cluster: any node forwards to them"
	}
	return s
}

func (e *explainer) slicesOf(svc *corev1.Service) []discoveryv1.EndpointSlice {
	var out []discoveryv1.EndpointSlice
	for _, es := range e.c.EndpointSlices {
		if es.Namespace == svc.Namespace && es.Labels[discoveryv1.LabelServiceName] == svc.Name {
			out = append(out, es)
		}
	}
	return out
}

// readyNodes lists the nodes with a ready endpoint of svc, as the speaker
// reads EndpointSlices.
func (e *explainer) readyNodes(svc *corev1.Service) []string {
	var out []string
	for _, es := range e.slicesOf(svc) {
		out = append(out, speaker.ReadyNodes(&es)...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// serviceInfos are what the speakers decide on for the Service and those
// sharing its addresses.
func (e *explainer) serviceInfos() []speaker.ServiceInfo {
	var out []speaker.ServiceInfo
	for _, s := range append([]*corev1.Service{e.svc}, e.c.sharers(e.svc)...) {
		if !e.c.serves(s) || s.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		out = append(out, speaker.ServiceInfo{
			Key:        s.Namespace + "/" + s.Name,
			Addrs:      ingressAddrs(s),
			Local:      s.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
			ReadyNodes: e.readyNodes(s),
		})
	}
	return out
}

// nodeInfos are the nodes as the speakers see them: alive when the
// majority of speakers count them as members (without speaker states: when
// a ready speaker pod runs there), settled.
func (e *explainer) nodeInfos() []speaker.NodeInfo {
	alive, _, voters := e.c.membership()
	out := make([]speaker.NodeInfo, 0, len(e.c.Nodes))
	for _, n := range e.c.Nodes {
		info := speaker.NodeInfo{Name: n.Name, Labels: n.Labels, Settled: true}
		if voters > 0 {
			info.Alive = alive[n.Name]
		} else {
			info.Alive = e.c.speakerPodReady(n.Name)
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeNetworkUnavailable && c.Status == corev1.ConditionTrue {
				info.NetworkUnavailable = true
			}
		}
		if st := e.c.speakerState(n.Name); st != nil && st.Status.DataPathDown != "" {
			info.DataPathDown = true
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b speaker.NodeInfo) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func joinAddrs(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	if len(s) == 0 {
		return "no address"
	}
	return strings.Join(s, ",")
}

func commonAddrs(a, b []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// Table writes the explanation for a terminal: one numbered line per step
// with its details under it, then the verdict.
func (x Explanation) Table(w io.Writer) error {
	fmt.Fprintf(w, "Service %s: %s\n", x.Service, dash(strings.Join(x.Addresses, ", ")))
	for i, s := range x.Steps {
		summary := s.Summary
		if s.Reason != "" {
			summary = s.Reason + ": " + summary
		}
		fmt.Fprintf(w, "%d. %-11s%-9s%s\n", i+1, s.Name, s.Result, summary)
		for _, d := range s.Details {
			fmt.Fprintf(w, "     - %s\n", d)
		}
	}
	_, err := fmt.Fprintf(w, "Verdict: %s\n", x.Verdict)
	return err
}
