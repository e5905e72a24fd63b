package report

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/controller"
	"github.com/heraldlb/herald/speaker"
)

// Impact is the result of `kubectl herald validate -f FILE --cluster`: the
// validation, and when the document is valid, what applying it would do.
type Impact struct {
	Validation
	Preview *Preview `json:"preview,omitempty"` // nil when the document is invalid
}

// Preview is what putting a document in Herald's ConfigMap would do to the
// cluster as it is now. Nothing in it has been written.
type Preview struct {
	Namespace string `json:"namespace"` // Herald's
	InForce   string `json:"inForce"`   // hash of the document in force now; "" for none
	// Liveness says which nodes count as alive for the L2 election: the
	// members the speakers report, or (when none does) the Ready nodes.
	Liveness string          `json:"liveness"`
	Services []ServiceChange `json:"services,omitempty"`
	Held     []HeldService   `json:"held,omitempty"`
	Confirm  string          `json:"confirm,omitempty"` // the command that confirms what is held
	L2       []L2Change      `json:"l2,omitempty"`
	BGP      []BGPChange     `json:"bgp,omitempty"`
}

// What happens to a Service's addresses.
const (
	ChangeGets    = "gets"
	ChangeLoses   = "loses"
	ChangeChanges = "changes"
	// ChangeMaybe: whether it gets an address depends on the order the
	// controller syncs Services in.
	ChangeMaybe = "may get"
)

// ServiceChange is a Service whose addresses would change.
type ServiceChange struct {
	Service string   `json:"service"` // namespace/name
	Change  string   `json:"change"`
	Before  []string `json:"before,omitempty"`
	After   []string `json:"after,omitempty"`
	// When is "apply" (as soon as the document is in the ConfigMap) or
	// "confirm" (held by the guard until the user confirms).
	When   string `json:"when"`
	Reason string `json:"reason"`
	// OrderDependent: After is one possible outcome; which addresses the
	// Service gets depends on the order the controller syncs Services in.
	OrderDependent bool `json:"orderDependent,omitempty"`
}

// HeldService is a Service the blast-radius guard keeps as it is (addresses
// and announcements) until the user confirms the document.
type HeldService struct {
	Service string `json:"service"`
	Reason  string `json:"reason"`
}

// L2Change is an address whose answering node (ARP/NDP) would change.
type L2Change struct {
	Address  string   `json:"address"`
	Services []string `json:"services"`
	Before   string   `json:"before,omitempty"` // the node answering now; "" for none
	After    string   `json:"after,omitempty"`
	When     string   `json:"when"`
	Why      string   `json:"why,omitempty"` // why nobody answers after (or before)
}

// BGPChange is a node that would start or stop advertising a prefix to a peer.
type BGPChange struct {
	Node   string `json:"node"`
	Prefix string `json:"prefix"`
	Peer   string `json:"peer"`
	Change string `json:"change"` // start or stop
	When   string `json:"when"`
}

// ValidateInCluster validates text (as Validate does) and, when it is
// valid, previews it against the cluster: Herald's objects in namespace,
// the Services of class (nil: the class the controller's --lb-class names),
// Namespaces, Nodes, EndpointSlices and SpeakerStates. It only reads.
func ValidateInCluster(ctx context.Context, kube kubernetes.Interface, dyn dynamic.Interface, namespace string, class *string, file string, text []byte) (Impact, error) {
	v := Validate(file, text)
	if !v.Valid {
		return Impact{Validation: v}, nil
	}
	c, err := ReadCluster(ctx, kube, dyn, namespace, "")
	if err != nil {
		return Impact{}, err
	}
	es, err := kube.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return Impact{}, fmt.Errorf("list EndpointSlices: %w", err)
	}
	c.EndpointSlices = es.Items
	lbClass := c.lbClass()
	if class != nil {
		lbClass = *class
	}
	return BuildImpact(v, document(text), c, lbClass)
}

// document is the configuration text itself, also out of a ConfigMap manifest.
func document(text []byte) string {
	if doc, ok := fromConfigMap(text); ok {
		return string(doc)
	}
	return string(text)
}

// BuildImpact previews doc, whose validation is v, against a snapshot: the
// controller's own allocation (controller.PreviewDocument) and the
// speakers' own decisions, before and after.
func BuildImpact(v Validation, doc string, c *Cluster, class string) (Impact, error) {
	im := Impact{Validation: v}
	if !v.Valid {
		return im, nil
	}
	p, err := controller.PreviewDocument(controller.Options{Namespace: c.Namespace, ConfigName: ConfigName, LBClass: class}, c.controllerView(), doc)
	if err != nil {
		return im, err
	}
	out := &Preview{Namespace: c.Namespace, InForce: p.Now.Hash, Confirm: p.Confirm}
	for _, o := range p.Services {
		if sc, ok := serviceChange(o); ok {
			out.Services = append(out.Services, sc)
		}
		if o.Held != "" {
			out.Held = append(out.Held, HeldService{Service: o.Service, Reason: o.Held})
		}
	}
	nodes, liveness := c.electorate()
	out.Liveness = liveness
	ready := c.readyNodes()
	stages := []stage{
		{p.Now, infos(p.Services, ready, c, func(o controller.Outcome) []netip.Addr { return o.Before })},
		{p.Applied, infos(p.Services, ready, c, func(o controller.Outcome) []netip.Addr { return o.Applied })},
		{p.Confirmed, infos(p.Services, ready, c, func(o controller.Outcome) []netip.Addr { return o.After })},
	}
	out.L2 = l2Changes(stages, nodes)
	out.BGP = bgpChanges(stages, nodes)
	im.Preview = out
	return im, nil
}

// controllerView is what the controller's informers would hold.
func (c *Cluster) controllerView() controller.Cluster {
	out := controller.Cluster{ConfigMap: c.ConfigMap, Record: c.Record}
	for i := range c.Services {
		out.Services = append(out.Services, &c.Services[i])
	}
	for i := range c.Namespaces {
		out.Namespaces = append(out.Namespaces, &c.Namespaces[i])
	}
	return out
}

func serviceChange(o controller.Outcome) (ServiceChange, bool) {
	sc := ServiceChange{Service: o.Service, Before: addrStrings(o.Before), After: addrStrings(o.After),
		When: string(o.Stage), Reason: o.Why, OrderDependent: o.OrderDependent}
	switch {
	case o.Stage == "" && o.OrderDependent && len(o.After) == 0:
		sc.Change, sc.When = ChangeMaybe, string(controller.StageApply)
	case o.Stage == "":
		return ServiceChange{}, false
	case len(o.Before) == 0:
		sc.Change = ChangeGets
	case len(o.After) == 0:
		sc.Change = ChangeLoses
	default:
		sc.Change = ChangeChanges
	}
	return sc, true
}

func addrStrings(addrs []netip.Addr) []string {
	var out []string
	for _, a := range addrs {
		out = append(out, a.String())
	}
	return out
}

// stage is the configuration and the Services' addresses at one point.
type stage struct {
	st   config.State
	svcs []speaker.ServiceInfo
}

func whenOf(i int) string {
	if i == 1 {
		return string(controller.StageApply)
	}
	return string(controller.StageConfirm)
}

// electorate is every node as the speakers' decisions see it, and which
// liveness it uses: the members the joined speakers report (a majority
// must see a node), else the Ready nodes. Every live node counts as
// settled: the preview is of a cluster at rest.
func (c *Cluster) electorate() ([]speaker.NodeInfo, string) {
	alive, _, voters := c.membership()
	liveness := fmt.Sprintf("members the %d joined speakers report", voters)
	if voters == 0 {
		liveness = "Ready nodes, as " + cmp.Or(c.SpeakersMissing, "no speaker has joined")
	}
	var out []speaker.NodeInfo
	for _, n := range c.Nodes {
		info := speaker.NodeInfo{Name: n.Name, Labels: n.Labels}
		for _, cond := range n.Status.Conditions {
			switch {
			case cond.Type == corev1.NodeNetworkUnavailable && cond.Status == corev1.ConditionTrue:
				info.NetworkUnavailable = true
			case cond.Type == corev1.NodeReady && voters == 0:
				info.Alive = cond.Status == corev1.ConditionTrue
			}
		}
		if voters > 0 {
			info.Alive = alive[n.Name]
		}
		info.Settled = info.Alive
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b speaker.NodeInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, liveness
}

// readyNodes maps each Service (namespace/name) to the nodes with a ready
// endpoint of it, sorted, as the speakers read EndpointSlices.
func (c *Cluster) readyNodes() map[string][]string {
	out := map[string][]string{}
	for _, es := range c.EndpointSlices {
		svc := es.Labels[discoveryv1.LabelServiceName]
		if svc == "" {
			continue
		}
		key := es.Namespace + "/" + svc
		out[key] = append(out[key], speaker.ReadyNodes(&es)...)
	}
	for k, nodes := range out {
		slices.Sort(nodes)
		out[k] = slices.Compact(nodes)
	}
	return out
}

// infos describes the Services for the speakers' decisions, with the
// addresses addrs picks for them.
func infos(outcomes []controller.Outcome, ready map[string][]string, c *Cluster, addrs func(controller.Outcome) []netip.Addr) []speaker.ServiceInfo {
	var out []speaker.ServiceInfo
	for _, o := range outcomes {
		a := addrs(o)
		if len(a) == 0 {
			continue
		}
		ns, name, _ := strings.Cut(o.Service, "/")
		svc := c.Service(ns, name)
		local := svc != nil && svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
		out = append(out, speaker.ServiceInfo{Key: o.Service, Addrs: a, Local: local, ReadyNodes: ready[o.Service]})
	}
	return out
}

// l2Changes compares the L2 owner of every address now with its owner
// once the document is applied and confirmed.
func l2Changes(stages []stage, nodes []speaker.NodeInfo) []L2Change {
	owners := make([]map[netip.Addr]speaker.L2Owner, len(stages))
	all := map[netip.Addr]bool{}
	for i, s := range stages {
		if s.st.Config == nil {
			continue
		}
		owners[i] = speaker.DecideL2Kept(s.st.Config, s.st.Accepted, s.svcs, nodes)
		for a := range owners[i] {
			all[a] = true
		}
	}
	var out []L2Change
	for _, a := range slices.SortedFunc(func(yield func(netip.Addr) bool) {
		for a := range all {
			if !yield(a) {
				return
			}
		}
	}, netip.Addr.Compare) {
		first, last := owners[0][a], owners[len(owners)-1][a]
		if first.Node == last.Node {
			continue
		}
		services := last.Services
		if len(services) == 0 {
			services = first.Services
		}
		ch := L2Change{Address: a.String(), Services: services, Before: first.Node, After: last.Node,
			When: whenOf(changedAt(len(stages), func(i int) bool { return owners[i][a].Node == last.Node }))}
		switch {
		case len(last.Services) == 0:
			ch.Why = "no Service shows it any more"
		case len(first.Services) == 0:
			ch.Why = "a new address"
		case last.Node == "":
			ch.Why = last.Why
		case first.Node == "":
			ch.Why = first.Why
		}
		out = append(out, ch)
	}
	return out
}

// changedAt is the first stage from which same holds to the end.
func changedAt(n int, same func(int) bool) int {
	at := n - 1
	for i := n - 2; i > 0 && same(i); i-- {
		at = i
	}
	return at
}

// advertisement is one node sending one prefix to one peer.
type advertisement struct{ node, prefix, peer string }

// bgpChanges compares what every node advertises to which peer now with
// what it advertises once the document is applied and confirmed.
func bgpChanges(stages []stage, nodes []speaker.NodeInfo) []BGPChange {
	sets := make([]map[advertisement]bool, len(stages))
	for i, s := range stages {
		sets[i] = advertisements(s, nodes)
	}
	first, last := sets[0], sets[len(sets)-1]
	var out []BGPChange
	add := func(ad advertisement, change string, in map[advertisement]bool) {
		at := changedAt(len(sets), func(i int) bool { return sets[i][ad] == in[ad] })
		out = append(out, BGPChange{Node: ad.node, Prefix: ad.prefix, Peer: ad.peer, Change: change, When: whenOf(at)})
	}
	for ad := range last {
		if !first[ad] {
			add(ad, "start", last)
		}
	}
	for ad := range first {
		if !last[ad] {
			add(ad, "stop", last)
		}
	}
	slices.SortFunc(out, func(a, b BGPChange) int {
		return cmp.Or(strings.Compare(a.Node, b.Node), comparePrefixes(a.Prefix, b.Prefix), strings.Compare(a.Peer, b.Peer), strings.Compare(a.Change, b.Change))
	})
	return out
}

func comparePrefixes(a, b string) int {
	pa, ea := netip.ParsePrefix(a)
	pb, eb := netip.ParsePrefix(b)
	if ea != nil || eb != nil {
		return strings.Compare(a, b)
	}
	return cmp.Or(pa.Addr().Compare(pb.Addr()), cmp.Compare(pa.Bits(), pb.Bits()))
}

// advertisements is what every node sends to which peer at one stage: the
// peers of each advertisement carrying the prefix (all of the node's
// sessions when it names none).
func advertisements(s stage, nodes []speaker.NodeInfo) map[advertisement]bool {
	out := map[advertisement]bool{}
	if s.st.Config == nil {
		return out
	}
	for _, n := range nodes {
		d := speaker.DecideBGPKept(s.st.Config, s.st.Accepted, s.svcs, n)
		var sessions []string
		for _, p := range d.Peers {
			sessions = append(sessions, p.Name)
		}
		for prefix, advs := range d.Routes {
			for _, name := range advs {
				for _, peer := range peersOf(s.st, name, sessions) {
					out[advertisement{node: n.Name, prefix: prefix.String(), peer: peer}] = true
				}
			}
		}
	}
	return out
}

// peersOf is where the advertisement called name (HeldAdvertisement in
// front: the accepted document's) sends, among the node's sessions.
func peersOf(st config.State, name string, sessions []string) []string {
	cfg := st.Config
	if held, ok := strings.CutPrefix(name, speaker.HeldAdvertisement); ok && st.Accepted != nil {
		cfg, name = st.Accepted, held
	}
	i := slices.IndexFunc(cfg.BGPAdvertisements, func(a config.BGPAdvertisement) bool { return a.Name == name })
	if i < 0 || len(cfg.BGPAdvertisements[i].Peers) == 0 {
		return sessions
	}
	return slices.DeleteFunc(slices.Clone(cfg.BGPAdvertisements[i].Peers), func(p string) bool { return !slices.Contains(sessions, p) })
}

// Table writes the impact for a terminal: the validation, then what would
// change: Services, held Services and how to confirm, L2 owners, BGP.
func (im Impact) Table(w io.Writer) error {
	if err := im.Validation.Table(w); err != nil || im.Preview == nil {
		return err
	}
	p := im.Preview
	fmt.Fprintf(w, "\nAgainst the cluster: Herald in namespace %s, configuration in force %s.\nNodes alive for the L2 election: %s.\n", p.Namespace, dash(p.InForce), p.Liveness)
	if len(p.Services) == 0 && len(p.Held) == 0 && len(p.L2) == 0 && len(p.BGP) == 0 {
		_, err := fmt.Fprintln(w, "nothing would change")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if len(p.Services) > 0 {
		fmt.Fprintln(tw, "\nSERVICE\tCHANGE\tBEFORE\tAFTER\tWHEN\tREASON")
		for _, s := range p.Services {
			after := dash(strings.Join(s.After, ","))
			if s.OrderDependent {
				after += " (depends on allocation order)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Service, s.Change, dash(strings.Join(s.Before, ",")), after, s.When, s.Reason)
		}
	}
	if len(p.Held) > 0 {
		fmt.Fprintln(tw, "\nHELD UNTIL CONFIRMED\tREASON")
		for _, h := range p.Held {
			fmt.Fprintf(tw, "%s\t%s\n", h.Service, h.Reason)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if p.Confirm != "" {
		fmt.Fprintf(w, "The held Services keep their addresses and announcements until you apply the document and confirm it:\n  %s\n", p.Confirm)
	}
	if len(p.L2) > 0 {
		fmt.Fprintln(tw, "\nADDRESS\tL2 NOW\tL2 AFTER\tWHEN\tSERVICES\tWHY")
		for _, c := range p.L2 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Address, dash(c.Before), dash(c.After), c.When, strings.Join(c.Services, ","), dash(c.Why))
		}
	}
	if len(p.BGP) > 0 {
		fmt.Fprintln(tw, "\nNODE\tBGP\tPREFIX\tPEER\tWHEN")
		for _, c := range p.BGP {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Node, c.Change, c.Prefix, c.Peer, c.When)
		}
	}
	return tw.Flush()
}
