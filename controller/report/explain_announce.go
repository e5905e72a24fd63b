package report

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/speaker"
)

// announcedBy reports which protocols announce a under the configuration
// in force and, for what a held change keeps, under the accepted one (as
// the speakers' DecideL2Kept and DecideBGPKept do).
func (e *explainer) announcedBy(a netip.Addr) (l2, bgp bool) {
	l2, bgp = e.st.Config.Announces(a)
	if acc := e.st.Accepted; acc != nil {
		l2Was, bgpWas := acc.Announces(a)
		l2, bgp = l2 || l2Was, bgp || bgpWas
	}
	return l2, bgp
}

func (e *explainer) poolName(a netip.Addr) string {
	if p, ok := e.st.Config.PoolOf(a); ok {
		return p.Name
	}
	return "(none)"
}

// 4. Layer 2: the owner the speakers elect for each address, why each other
// node is not it, and who the speakers say answers.
func (e *explainer) l2() Step {
	s := Step{Name: StepL2, Result: ResultSkipped}
	if skip := e.announceSkip(); skip != "" {
		s.Summary = skip
		return s
	}
	var covered []netip.Addr
	for _, a := range e.addrs {
		if l2, _ := e.announcedBy(a); l2 {
			covered = append(covered, a)
		}
	}
	if len(covered) == 0 {
		pool := e.poolName(e.addrs[0])
		for _, a := range e.addrs {
			if _, bgp := e.announcedBy(a); bgp {
				s.Summary = "no L2 advertisement covers pool " + pool + ": announced by BGP only"
				return s
			}
		}
		s.Result, s.Reason = ResultProblem, ReasonNoL2Advertisement
		s.Summary = fmt.Sprintf("no L2 advertisement covers pool %s (nor a BGP one): nobody announces %s", pool, joinAddrs(e.addrs))
		return s
	}
	e.l2Used = true
	nodes := e.nodeInfos()
	infos := e.serviceInfos()
	owners := speaker.DecideL2Kept(e.st.Config, e.st.Accepted, infos, nodes)
	s.Result = ResultOK
	var summaries []string
	for _, a := range covered {
		r, summary, details := e.l2Address(a, owners[a], nodes, infos)
		summaries = append(summaries, summary)
		s.Details = append(s.Details, details...)
		if worse(r.Result, s.Result) {
			s.Result, s.Reason = r.Result, r.Reason
		}
	}
	s.Summary = strings.Join(summaries, "; ")
	if _, _, voters := e.c.membership(); voters == 0 {
		s.Details = append(s.Details, "speakers publish no state ("+dash(e.c.SpeakersMissing)+"): nodes count as alive where a ready speaker pod runs, and who answers is not confirmed")
	}
	return s
}

// l2Address explains one address.
func (e *explainer) l2Address(a netip.Addr, o speaker.L2Owner, nodes []speaker.NodeInfo, infos []speaker.ServiceInfo) (Step, string, []string) {
	var r Step
	var details []string
	reasons := map[string]nodeReason{}
	for _, n := range nodes {
		if n.Name != o.Node {
			reasons[n.Name] = e.whyNotOwner(a, n, o.Node, nodes, infos)
		}
	}
	for _, n := range nodes {
		if n.Name != o.Node {
			details = append(details, fmt.Sprintf("%s: node %s: %s", a, n.Name, reasons[n.Name].text))
		}
	}
	answering, known := e.answering(a)
	var summary string
	if o.Node == "" {
		r.Result = ResultProblem
		r.Reason, summary = e.noOwner(a, o, nodes, reasons)
	} else {
		ifaces := "every interface"
		if len(o.Interfaces) > 0 {
			ifaces = strings.Join(o.Interfaces, ",")
		}
		summary = fmt.Sprintf("%s: owner %s (on %s)", a, o.Node, ifaces)
		details = append([]string{fmt.Sprintf("%s: node %s: the elected owner among %s", a, o.Node, strings.Join(candidates(reasons, o.Node), ", "))}, details...)
		r.Result = ResultOK
	}
	switch {
	case !known:
		if o.Node != "" {
			e.l2Answered = append(e.l2Answered, fmt.Sprintf("%s from %s (L2, unconfirmed)", a, o.Node))
		}
	case len(answering) == 0 && o.Node != "":
		r.Result, r.Reason = ResultProblem, ReasonNotAnswered
		summary += "; but no speaker reports answering for it"
	case len(answering) > 0:
		names := make([]string, len(answering))
		for i, an := range answering {
			names[i] = an.node
			e.l2Answered = append(e.l2Answered, fmt.Sprintf("%s from %s on %s (L2)", a, an.node, strings.Join(an.ifaces, ",")))
		}
		if o.Node == "" || len(answering) > 1 || answering[0].node != o.Node {
			if r.Result == ResultProblem {
				// Somebody answers after all: the address is reachable.
				r.Result = ResultWarning
			} else {
				r.Result, r.Reason = ResultWarning, ReasonOtherAnswerer
			}
			summary += fmt.Sprintf("; the speakers report %s answering (a hand-over in progress, or their view differs)", strings.Join(names, " and "))
		} else {
			summary += fmt.Sprintf(", answering on %s", strings.Join(answering[0].ifaces, ","))
		}
	}
	return r, summary, details
}

type answerer struct {
	node   string
	ifaces []string
}

// answering is who the speakers report answering for a; known is false
// when no speaker publishes its state.
func (e *explainer) answering(a netip.Addr) ([]answerer, bool) {
	if len(e.c.Speakers) == 0 {
		return nil, false
	}
	var out []answerer
	for _, st := range e.c.Speakers {
		for _, l := range st.Status.L2 {
			if l.Address == a.String() {
				out = append(out, answerer{node: st.Name, ifaces: l.Interfaces})
			}
		}
	}
	return out, true
}

type nodeReason struct {
	reason, text string
}

const reasonCandidate = "Candidate"

// whyNotOwner says why node n does not own a. Whether n is a candidate at
// all is the speakers' own decision (DecideL2Kept with n the only live
// node); the words say which of its rules n fails.
func (e *explainer) whyNotOwner(a netip.Addr, n speaker.NodeInfo, owner string, nodes []speaker.NodeInfo, infos []speaker.ServiceInfo) nodeReason {
	alone := speaker.DecideL2Kept(e.st.Config, e.st.Accepted, infos, []speaker.NodeInfo{n})[a]
	if alone.Node == n.Name {
		if owner == "" {
			return nodeReason{reasonCandidate, "a candidate"}
		}
		return nodeReason{reasonCandidate, "a candidate; the election (rendezvous hash of node and address) ranks " + owner + " first"}
	}
	pool := e.poolName(a)
	switch {
	case !n.Alive && len(e.c.Speakers) == 0:
		return nodeReason{ReasonNotAlive, "no ready speaker pod runs on it"}
	case !n.Alive:
		return nodeReason{ReasonNotAlive, "its speaker is not alive in the speakers' membership"}
	case n.NetworkUnavailable:
		return nodeReason{ReasonNetworkUnavailable, "the node is NetworkUnavailable"}
	case n.DataPathDown:
		return nodeReason{ReasonDataPathDown, "its data path is down: kube-proxy's health endpoint on it does not answer healthy"}
	case n.Labels.Has(speaker.LabelExclude):
		return nodeReason{ReasonNodeExcluded, "excluded by label " + speaker.LabelExclude}
	case !e.l2Selects(a, n):
		return nodeReason{ReasonNotSelected, "no L2 advertisement of pool " + pool + " selects it"}
	case e.local() && e.ready[n.Name] == 0:
		return nodeReason{ReasonNoLocalEndpoint, "no ready endpoint on it (externalTrafficPolicy Local)"}
	}
	return nodeReason{"", "not a candidate: " + alone.Why}
}

// l2Selects reports whether an L2 advertisement covering a's pool selects
// n, in the configuration in force or, for a held address, the accepted one.
func (e *explainer) l2Selects(a netip.Addr, n speaker.NodeInfo) bool {
	for _, cfg := range []*config.Config{e.st.Config, e.st.Accepted} {
		if cfg == nil {
			continue
		}
		p, ok := cfg.PoolOf(a)
		if !ok {
			continue
		}
		for _, adv := range cfg.L2Advertisements {
			if (len(adv.Pools) == 0 || slices.Contains(adv.Pools, p.Name)) && (adv.NodeSelector == nil || adv.NodeSelector.Matches(n.Labels)) {
				return true
			}
		}
	}
	return false
}

// noOwner names the cause when no node may announce a: the reason of the
// nodes meant to announce it (selected by an advertisement and, for a
// Local Service, holding an endpoint) when they share one.
func (e *explainer) noOwner(a netip.Addr, o speaker.L2Owner, nodes []speaker.NodeInfo, reasons map[string]nodeReason) (string, string) {
	switch {
	case strings.HasPrefix(o.Why, "no L2 advertisement"):
		return ReasonNoL2Advertisement, fmt.Sprintf("%s: %s", a, o.Why)
	case o.Why == "no ready endpoint":
		return ReasonNoReadyEndpoint, fmt.Sprintf("%s: nobody announces it: no ready endpoint", a)
	case o.Why != "no eligible node":
		return ReasonNoEligibleNode, fmt.Sprintf("%s: nobody announces it: %s", a, o.Why)
	}
	var selected, meant []string
	for _, n := range nodes {
		if e.l2Selects(a, n) {
			selected = append(selected, n.Name)
		}
	}
	if len(selected) == 0 {
		return ReasonNotSelected, fmt.Sprintf("%s: no node is selected by an L2 advertisement of pool %s", a, e.poolName(a))
	}
	meant = selected
	if e.local() {
		meant = slices.DeleteFunc(slices.Clone(selected), func(n string) bool { return e.ready[n] == 0 })
		if len(meant) == 0 {
			return ReasonNoLocalEndpoint, fmt.Sprintf("%s: externalTrafficPolicy Local, and no node that may announce it (%s) has a ready endpoint (they are on %s)",
				a, strings.Join(selected, ", "), dash(strings.Join(sortedKeys(e.ready), ", ")))
		}
	}
	reason := reasons[meant[0]].reason
	var why []string
	for _, n := range meant {
		if reasons[n].reason != reason {
			reason = ReasonNoEligibleNode
		}
		why = append(why, n+": "+reasons[n].text)
	}
	return reason, fmt.Sprintf("%s: nobody may announce it: %s", a, strings.Join(why, "; "))
}

func candidates(reasons map[string]nodeReason, owner string) []string {
	out := []string{owner}
	for _, n := range sortedKeys(reasons) {
		if reasons[n].reason == reasonCandidate {
			out = append(out, n)
		}
	}
	return out
}

// announceSkip says why there is nothing to announce, or "".
func (e *explainer) announceSkip() string {
	switch {
	case len(e.addrs) == 0:
		return "no address to announce"
	case e.st.Config == nil:
		return "no valid configuration: nothing is announced"
	}
	return ""
}

// 5. BGP: what each node advertises to which peer, or why not, and the
// state of those sessions.
func (e *explainer) bgp() Step {
	s := Step{Name: StepBGP, Result: ResultSkipped}
	if skip := e.announceSkip(); skip != "" {
		s.Summary = skip
		return s
	}
	covered := false
	for _, a := range e.addrs {
		if _, bgp := e.announcedBy(a); bgp {
			covered = true
		}
	}
	if !covered {
		s.Summary = "no BGP advertisement covers pool " + e.poolName(e.addrs[0])
		return s
	}
	alive, _, voters := e.c.membership()
	info := e.serviceInfos()[:1]
	whys := map[string]string{} // reason by node, for the nodes that do not advertise
	var lines []string
	established, down, advertising := 0, []string{}, []string{}
	for _, n := range e.nodeInfos() {
		d := speaker.DecideBGPKept(e.st.Config, e.st.Accepted, info, n)
		bs := d.Services[e.key]
		if len(bs.Prefixes) == 0 {
			whys[n.Name] = bgpReason(bs.Why)
			lines = append(lines, fmt.Sprintf("node %s: does not advertise it: %s", n.Name, bs.Why))
			continue
		}
		if voters > 0 && !alive[n.Name] {
			lines = append(lines, fmt.Sprintf("node %s: would advertise it, but its speaker is not alive", n.Name))
		}
		sessions := e.sessions(n.Name)
		for _, p := range bs.Prefixes {
			var to []string
			for _, peer := range e.peersOf(d, p) {
				st, ok := sessions[peer]
				switch {
				case !ok && len(e.c.Speakers) == 0:
					to = append(to, peer+" (session state unknown)")
				case !ok:
					to = append(to, peer+" (no session reported)")
					down = append(down, n.Name+"->"+peer)
				case st.State == "Established":
					to = append(to, peer+" (Established)")
					established++
					advertising = append(advertising, fmt.Sprintf("%s from %s to %s", p, n.Name, peer))
				default:
					why := st.State
					if st.Reason != "" {
						why += ": " + st.Reason
					}
					to = append(to, fmt.Sprintf("%s (%s)", peer, why))
					down = append(down, n.Name+"->"+peer)
				}
			}
			if len(to) == 0 {
				to = []string{"no peer"}
			}
			lines = append(lines, fmt.Sprintf("node %s: %s to %s", n.Name, p, strings.Join(to, ", ")))
		}
	}
	s.Details = lines
	nodesAdv := 0
	for _, n := range e.c.Nodes {
		if _, no := whys[n.Name]; !no {
			nodesAdv++
		}
	}
	switch {
	case nodesAdv == 0:
		s.Result, s.Reason = ResultProblem, commonReason(whys, ReasonNotAdvertised)
		s.Summary = "no node advertises it"
	case len(e.c.Speakers) == 0:
		s.Result = ResultOK
		s.Summary = fmt.Sprintf("%d nodes advertise it (session states unknown: %s)", nodesAdv, dash(e.c.SpeakersMissing))
		e.bgpAdvertised = append(e.bgpAdvertised, fmt.Sprintf("advertised from %d nodes (BGP, unconfirmed)", nodesAdv))
	case established == 0:
		s.Result, s.Reason = ResultProblem, ReasonPeerDown
		s.Summary = fmt.Sprintf("%d nodes would advertise it, but no session to its peers is established: %s", nodesAdv, strings.Join(down, ", "))
	case len(down) > 0:
		s.Result, s.Reason = ResultWarning, ReasonPeerDown
		s.Summary = fmt.Sprintf("advertised over %d established sessions; down: %s", established, strings.Join(down, ", "))
		e.bgpAdvertised = advertising
	default:
		s.Result = ResultOK
		s.Summary = fmt.Sprintf("advertised over %d established sessions", established)
		e.bgpAdvertised = advertising
	}
	return s
}

// peersOf names the peers node decision d sends prefix p to: those of the
// advertisements carrying it that the node holds a session to.
func (e *explainer) peersOf(d speaker.BGPDecision, p netip.Prefix) []string {
	var held []string
	for _, peer := range d.Peers {
		held = append(held, peer.Name)
	}
	var out []string
	for _, name := range d.Routes[p] {
		cfg := e.st.Config
		if n, ok := strings.CutPrefix(name, speaker.HeldAdvertisement); ok {
			cfg, name = e.st.Accepted, n
		}
		for _, adv := range cfg.BGPAdvertisements {
			if adv.Name != name {
				continue
			}
			for _, peer := range held {
				if len(adv.Peers) == 0 || slices.Contains(adv.Peers, peer) {
					out = append(out, peer)
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

type sessionState struct{ State, Reason string }

func (e *explainer) sessions(node string) map[string]sessionState {
	out := map[string]sessionState{}
	if st := e.c.speakerState(node); st != nil {
		for _, se := range st.Status.Sessions {
			out[se.Peer] = sessionState{se.State, se.Reason}
		}
	}
	return out
}

// bgpReason gives a stable word for a reason speaker.DecideBGP gives.
func bgpReason(why string) string {
	first, _, _ := strings.Cut(why, "; ")
	switch {
	case strings.Contains(first, "excluded from external load balancers"):
		return ReasonNodeExcluded
	case strings.Contains(first, "NetworkUnavailable"):
		return ReasonNetworkUnavailable
	case strings.Contains(first, "no working data path"):
		return ReasonDataPathDown
	case strings.Contains(first, "does not select node"):
		return ReasonNotSelected
	case strings.Contains(first, "has no session to the peers"):
		return ReasonNoSession
	case strings.Contains(first, "externalTrafficPolicy: Local"):
		return ReasonNoLocalEndpoint
	case strings.Contains(first, "no ready endpoint"):
		return ReasonNoReadyEndpoint
	}
	return ReasonNotAdvertised
}

// commonReason is the reason every node gives, or fallback when they differ.
func commonReason(byNode map[string]string, fallback string) string {
	reason := ""
	for _, r := range byNode {
		if reason != "" && r != reason {
			return fallback
		}
		reason = r
	}
	return orElse(reason, fallback)
}

func orElse(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

// kubeProxyConfig is the part of kube-proxy's configuration that matters here.
type kubeProxyConfig struct {
	Mode string `json:"mode"`
	IPVS struct {
		StrictARP bool `json:"strictARP"`
	} `json:"ipvs"`
}

// 6. kube-proxy's mode: IPVS without strictARP has every node answer ARP
// for every Service address, which breaks layer 2.
func (e *explainer) kubeProxy() Step {
	s := Step{Name: StepKubeProxy}
	cm := e.c.KubeProxy
	if cm == nil || cm.Data[KubeProxyConfigKey] == "" {
		s.Result = ResultUnknown
		s.Summary = fmt.Sprintf("mode unknown: the cluster keeps no ConfigMap kube-system/%s (key %s)", KubeProxyConfigMap, KubeProxyConfigKey)
		if e.l2Used {
			s.Details = []string{"with IPVS, ipvs.strictARP must be true, or every node answers ARP for the address"}
		}
		return s
	}
	var kp kubeProxyConfig
	if err := yaml.Unmarshal([]byte(cm.Data[KubeProxyConfigKey]), &kp); err != nil {
		s.Result = ResultUnknown
		s.Summary = fmt.Sprintf("kube-system/%s %s does not read: %v", KubeProxyConfigMap, KubeProxyConfigKey, err)
		return s
	}
	mode := kp.Mode
	if mode == "" {
		mode = "iptables (the default)"
	}
	s.Result, s.Summary = ResultOK, "mode "+mode
	if kp.Mode == "ipvs" {
		if kp.IPVS.StrictARP {
			s.Summary += " with strictARP"
			return s
		}
		s.Summary += " without strictARP: every node answers ARP for Service addresses (kube-ipvs0), so L2 clients may reach any node; set ipvs.strictARP: true"
		if e.l2Used {
			s.Result, s.Reason = ResultProblem, ReasonIPVSWithoutStrictARP
			e.ipvsBad = true
		} else {
			s.Result, s.Reason = ResultWarning, ReasonIPVSWithoutStrictARP
		}
	}
	return s
}

// verdict sums the steps up in one line.
func (e *explainer) verdict(steps []Step) (bool, string) {
	announced := append(slices.Clone(e.l2Answered), e.bgpAdvertised...)
	var blocking, other *Step
	for i := range steps {
		s := &steps[i]
		if s.Result != ResultProblem {
			continue
		}
		if s.Name == StepConfig {
			other = s
			continue
		}
		if (s.Name == StepL2 || s.Name == StepBGP) && len(announced) > 0 {
			other = firstStep(other, s)
			continue
		}
		if blocking == nil {
			blocking = s
		}
	}
	if blocking == nil && len(announced) == 0 {
		for i := range steps {
			if steps[i].Result == ResultProblem {
				blocking = &steps[i]
				break
			}
		}
	}
	if blocking != nil {
		not := "not reachable"
		if blocking.Name == StepKubeProxy {
			not = "not reliably reachable"
		}
		return false, fmt.Sprintf("%s: %s: %s", not, blocking.Reason, blocking.Summary)
	}
	if len(announced) == 0 {
		return false, "not reachable: nothing announces it"
	}
	v := "reachable: " + strings.Join(announced, "; ")
	if other != nil {
		v += fmt.Sprintf("; but %s: %s", other.Reason, other.Summary)
	}
	return true, v
}

func firstStep(a, b *Step) *Step {
	if a == nil {
		return b
	}
	return a
}

// worse reports whether result a is worse than b.
func worse(a, b string) bool {
	rank := map[string]int{ResultSkipped: 0, ResultOK: 1, ResultUnknown: 2, ResultWarning: 3, ResultProblem: 4}
	return rank[a] > rank[b]
}
