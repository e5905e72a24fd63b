package report

import (
	"fmt"
	"io"
	"math/big"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/controller"
	"github.com/heraldlb/herald/ipam"
	"github.com/heraldlb/herald/speaker/state"
)

const annotationAllocatedFrom = controller.AnnotationAllocatedFrom

// Status is the result of `kubectl herald status`.
type Status struct {
	Config      ConfigStatus     `json:"config"`
	Controller  ControllerStatus `json:"controller"`
	Pools       []PoolUsage      `json:"pools,omitempty"`
	Speakers    []SpeakerStatus  `json:"speakers,omitempty"`
	SpeakerNote string           `json:"speakerNote,omitempty"` // why speaker states are missing
	Services    []ServiceStatus  `json:"services,omitempty"`
}

// The states of the configuration.
const (
	ConfigValid   = "valid"
	ConfigHeld    = "held"
	ConfigInvalid = "invalid"
)

// ConfigStatus is the configuration as the controller and speakers load it.
type ConfigStatus struct {
	// State is valid (the user's document is in force), held (it is in
	// force, but what it would take from Services waits for confirmation)
	// or invalid (missing, empty or not valid: the last valid one is in force).
	State string `json:"state"`
	// Hash names the document in force ("" when none ever was valid).
	Hash string `json:"hash,omitempty"`
	// Problems say why the user's document is not in force.
	Problems []Problem `json:"problems,omitempty"`
	Warnings []string  `json:"warnings,omitempty"`
	// Accepted names the document held Services keep, Held lists them, and
	// Confirm is the command that confirms the change.
	Accepted string   `json:"accepted,omitempty"`
	Held     []string `json:"held,omitempty"`
	Confirm  string   `json:"confirm,omitempty"`
}

// ControllerStatus is the controller's Lease and pods.
type ControllerStatus struct {
	Leader   string `json:"leader,omitempty"`  // the Lease's holder; "" for none
	Renewed  string `json:"renewed,omitempty"` // how long ago, e.g. "3s"
	Expired  bool   `json:"expired,omitempty"` // not renewed within its duration
	Replicas int    `json:"replicas"`
	Ready    int    `json:"ready"`
}

// PoolUsage is one family of one pool. The figures are decimal strings:
// an IPv6 pool may hold more addresses than any integer type.
type PoolUsage struct {
	Pool   string `json:"pool"`
	Family string `json:"family"`
	Size   string `json:"size"`
	InUse  string `json:"inUse"`
	Free   string `json:"free"`
}

// SpeakerStatus is one node's speaker.
type SpeakerStatus struct {
	Node string `json:"node"`
	// Reported is false when the node's speaker has published no state.
	Reported bool `json:"reported"`
	// Alive: the majority of joined speakers see it (SeenBy of Voters).
	Alive    bool `json:"alive"`
	SeenBy   int  `json:"seenBy"`
	Voters   int  `json:"voters"`
	Joined   bool `json:"joined"`
	Isolated bool `json:"isolated,omitempty"`
	// DataPathDown says why the node announces nothing (kube-proxy unhealthy).
	DataPathDown string `json:"dataPathDown,omitempty"`
	// Conflicts are devices that are no speaker answering for addresses
	// this node owns or probed.
	Conflicts   []Conflict `json:"conflicts,omitempty"`
	Config      string     `json:"config,omitempty"`
	ConfigError string     `json:"configError,omitempty"`
	L2          int        `json:"l2"`  // addresses answered for
	BGP         int        `json:"bgp"` // prefixes advertised
	Sessions    []Session  `json:"sessions,omitempty"`
}

// Conflict is a device answering for an address, as a node saw it.
type Conflict struct {
	Address   string `json:"address"`
	MAC       string `json:"mac"`
	Announced bool   `json:"announced"` // Herald keeps answering (it was in service first)
}

// Session is one BGP session of a node.
type Session struct {
	Peer    string `json:"peer"`
	Address string `json:"address"`
	State   string `json:"state"`
	Reason  string `json:"reason,omitempty"`
}

// ServiceStatus is one Service Herald serves.
type ServiceStatus struct {
	Service    string   `json:"service"` // namespace/name
	Addresses  []string `json:"addresses,omitempty"`
	Pool       string   `json:"pool,omitempty"`
	Announced  []string `json:"announced,omitempty"`
	Conditions []string `json:"conditions,omitempty"` // Type=Status/Reason, Herald's only
}

// BuildStatus computes the status from a snapshot.
func BuildStatus(c *Cluster) Status {
	st := c.loadConfig()
	s := Status{Config: configStatus(c, st), Controller: controllerStatus(c)}
	if st.Config != nil {
		s.Pools = poolUsage(c, st.Config)
	}
	s.Speakers, s.SpeakerNote = speakerStatuses(c)
	for i := range c.Services {
		if svc := &c.Services[i]; c.serves(svc) {
			s.Services = append(s.Services, serviceStatus(c, svc))
		}
	}
	return s
}

func configStatus(c *Cluster, st config.State) ConfigStatus {
	cs := ConfigStatus{State: ConfigValid, Hash: st.Hash}
	if st.Config != nil {
		cs.Warnings = st.Config.Warnings
	}
	if st.Err != nil {
		cs.State = ConfigInvalid
		cs.Warnings = nil
		for _, p := range config.Problems(st.Err) {
			cs.Problems = append(cs.Problems, Problem{Path: p.Path, Message: p.Err.Error()})
		}
		return cs
	}
	if st.Accepted != nil {
		cs.State = ConfigHeld
		cs.Accepted = config.Hash(st.AcceptedText)
		cs.Confirm = fmt.Sprintf("kubectl -n %s annotate configmap %s %s=%s --overwrite", c.Namespace, ConfigName, config.ConfirmAnnotation, st.Hash)
		for i := range c.Services {
			svc := &c.Services[i]
			if cond := condition(svc, controller.ConditionAllocated); cond != nil && cond.Reason == controller.ReasonConfigChangeHeld {
				cs.Held = append(cs.Held, svc.Namespace+"/"+svc.Name)
			}
		}
	}
	return cs
}

func controllerStatus(c *Cluster) ControllerStatus {
	var cs ControllerStatus
	for _, p := range c.ControllerPods {
		cs.Replicas++
		if podReady(p) {
			cs.Ready++
		}
	}
	if l := c.Lease; l != nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
		cs.Leader = *l.Spec.HolderIdentity
		if r := l.Spec.RenewTime; r != nil {
			age := c.Now.Sub(r.Time)
			cs.Renewed = age.Round(time.Second).String()
			if d := l.Spec.LeaseDurationSeconds; d != nil && age > time.Duration(*d)*time.Second {
				cs.Expired = true
			}
		}
	}
	return cs
}

// poolUsage counts each pool's addresses (ipam's exact count, which leaves
// out the .0 and .255 an avoidBuggyIPs pool skips) and the distinct
// addresses Services show in their status.
func poolUsage(c *Cluster, cfg *config.Config) []PoolUsage {
	type famKey struct {
		pool string
		fam  ipam.Family
	}
	used := map[famKey]map[netip.Addr]bool{}
	for i := range c.Services {
		for _, a := range ingressAddrs(&c.Services[i]) {
			p, ok := cfg.PoolOf(a)
			if !ok {
				continue
			}
			k := famKey{p.Name, ipam.FamilyOf(a)}
			if used[k] == nil {
				used[k] = map[netip.Addr]bool{}
			}
			used[k][a] = true
		}
	}
	var out []PoolUsage
	for _, ps := range ipam.New(cfg.Pools).Stats() {
		n := big.NewInt(int64(len(used[famKey{ps.Pool, ps.Family}])))
		free := new(big.Int).Sub(ps.Size, n)
		if free.Sign() < 0 {
			free.SetInt64(0)
		}
		out = append(out, PoolUsage{Pool: ps.Pool, Family: ps.Family.String(), Size: ps.Size.String(), InUse: n.String(), Free: free.String()})
	}
	return out
}

func speakerStatuses(c *Cluster) ([]SpeakerStatus, string) {
	alive, seen, voters := c.membership()
	var out []SpeakerStatus
	for _, node := range c.nodeNames() {
		ss := SpeakerStatus{Node: node, SeenBy: seen[node], Voters: voters, Alive: alive[node]}
		if st := c.speakerState(node); st != nil {
			s := st.Status
			ss.Reported, ss.Joined, ss.Isolated = true, s.Joined, s.Isolated
			ss.Config, ss.ConfigError, ss.DataPathDown = s.Config, s.ConfigError, s.DataPathDown
			for _, c := range s.Conflicts {
				ss.Conflicts = append(ss.Conflicts, Conflict{Address: c.Address, MAC: c.MAC, Announced: c.Announced})
			}
			ss.L2, ss.BGP = len(s.L2), len(s.BGP)
			for _, se := range s.Sessions {
				ss.Sessions = append(ss.Sessions, Session{Peer: se.Peer, Address: se.Address, State: se.State, Reason: se.Reason})
			}
		}
		out = append(out, ss)
	}
	note := c.SpeakersMissing
	if note == "" && voters == 0 {
		note = "no speaker has joined the others yet"
	}
	return out, note
}

func serviceStatus(c *Cluster, svc *corev1.Service) ServiceStatus {
	key := svc.Namespace + "/" + svc.Name
	ss := ServiceStatus{Service: key, Pool: svc.Annotations[annotationAllocatedFrom]}
	for _, a := range ingressAddrs(svc) {
		ss.Addresses = append(ss.Addresses, a.String())
	}
	ss.Announced = announcedFrom(c, key)
	if len(ss.Announced) == 0 && len(c.Speakers) == 0 {
		if cond := condition(svc, state.ConditionAnnounced); cond != nil && cond.Status == "True" {
			ss.Announced = []string{cond.Message}
		}
	}
	for _, cond := range svc.Status.Conditions {
		if t, ok := strings.CutPrefix(cond.Type, "herald.dev/"); ok {
			ss.Conditions = append(ss.Conditions, fmt.Sprintf("%s=%s/%s", t, cond.Status, cond.Reason))
		}
	}
	return ss
}

// announcedFrom says where the speakers announce a Service, by their own
// report: "L2 ADDRESS node/iface" per answering node, "BGP PREFIX
// node,node -> peer,peer" per prefix.
func announcedFrom(c *Cluster, key string) []string {
	var l2 []string
	type route struct{ nodes, peers []string }
	bgp := map[string]*route{}
	for _, st := range c.Speakers {
		for _, a := range st.Status.L2 {
			if slices.Contains(a.Services, key) {
				l2 = append(l2, fmt.Sprintf("L2 %s %s/%s", a.Address, st.Name, strings.Join(a.Interfaces, ",")))
			}
		}
		for _, r := range st.Status.BGP {
			if !slices.Contains(r.Services, key) {
				continue
			}
			if bgp[r.Prefix] == nil {
				bgp[r.Prefix] = &route{}
			}
			bgp[r.Prefix].nodes = append(bgp[r.Prefix].nodes, st.Name)
			bgp[r.Prefix].peers = append(bgp[r.Prefix].peers, r.Peers...)
		}
	}
	slices.Sort(l2)
	out := l2
	prefixes := make([]string, 0, len(bgp))
	for p := range bgp {
		prefixes = append(prefixes, p)
	}
	slices.Sort(prefixes)
	for _, p := range prefixes {
		r := bgp[p]
		slices.Sort(r.nodes)
		slices.Sort(r.peers)
		out = append(out, fmt.Sprintf("BGP %s %s -> %s", p, strings.Join(slices.Compact(r.nodes), ","), strings.Join(slices.Compact(r.peers), ",")))
	}
	return out
}

// Table writes the status for a terminal: the config and controller, then
// one table each of pools, speakers and Services.
func (s Status) Table(w io.Writer) error {
	cfg := s.Config
	switch cfg.State {
	case ConfigInvalid:
		inForce := "no valid configuration has ever been loaded: no address is handed out or announced"
		if cfg.Hash != "" {
			inForce = "the last valid configuration " + cfg.Hash + " stays in force"
		}
		fmt.Fprintf(w, "Config:     invalid (%s); %s\n", plural(len(cfg.Problems), "problem"), inForce)
	case ConfigHeld:
		fmt.Fprintf(w, "Config:     held: %s is in force, but %d Services keep what %s gave them until you confirm:\n            %s\n",
			cfg.Hash, len(cfg.Held), cfg.Accepted, cfg.Confirm)
	default:
		fmt.Fprintf(w, "Config:     valid (hash %s)\n", cfg.Hash)
	}
	for _, p := range cfg.Problems {
		fmt.Fprintf(w, "            problem %s\n", strings.TrimPrefix(p.Path+": "+p.Message, ": "))
	}
	for _, h := range cfg.Held {
		fmt.Fprintf(w, "            held    %s\n", h)
	}
	for _, wn := range cfg.Warnings {
		fmt.Fprintf(w, "            warning %s\n", wn)
	}
	ctl := s.Controller
	leader := "none"
	if ctl.Leader != "" {
		leader = ctl.Leader
		if ctl.Renewed != "" {
			leader += " (renewed " + ctl.Renewed + " ago"
			if ctl.Expired {
				leader += ", expired"
			}
			leader += ")"
		}
	}
	fmt.Fprintf(w, "Controller: leader %s; %d/%d replicas ready\n", leader, ctl.Ready, ctl.Replicas)

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nPOOL\tFAMILY\tSIZE\tIN USE\tFREE")
	for _, p := range s.Pools {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Pool, p.Family, p.Size, p.InUse, p.Free)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(tw, "\nNODE\tALIVE\tJOINED\tCONFIG\tL2\tBGP\tSESSIONS")
	for _, sp := range s.Speakers {
		if !sp.Reported {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\n", sp.Node, alive(sp))
			continue
		}
		joined := yesNo(sp.Joined)
		if sp.Isolated {
			joined += " (isolated)"
		}
		if sp.DataPathDown != "" {
			joined += " (data path down)"
		}
		cfgHash := dash(sp.Config)
		if sp.ConfigError != "" {
			cfgHash += " (ConfigMap invalid)"
		}
		var sessions []string
		for _, se := range sp.Sessions {
			sessions = append(sessions, fmt.Sprintf("%s %s %s", se.Peer, se.Address, se.State))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", sp.Node, alive(sp), joined, cfgHash, sp.L2, sp.BGP, dash(strings.Join(sessions, ", ")))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if s.SpeakerNote != "" {
		fmt.Fprintf(w, "(%s)\n", s.SpeakerNote)
	}
	for _, sp := range s.Speakers {
		if sp.DataPathDown != "" {
			fmt.Fprintf(w, "node %s announces nothing: %s\n", sp.Node, sp.DataPathDown)
		}
		for _, c := range sp.Conflicts {
			what := "not announced"
			if c.Announced {
				what = "Herald keeps answering"
			}
			fmt.Fprintf(w, "address conflict: a device with MAC %s answers for %s (seen by node %s; %s)\n", c.MAC, c.Address, sp.Node, what)
		}
	}

	fmt.Fprintln(tw, "\nSERVICE\tADDRESSES\tPOOL\tANNOUNCED\tCONDITIONS")
	for _, sv := range s.Services {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", sv.Service, dash(strings.Join(sv.Addresses, ",")), dash(sv.Pool),
			dash(strings.Join(sv.Announced, "; ")), dash(strings.Join(sv.Conditions, " ")))
	}
	return tw.Flush()
}

func alive(sp SpeakerStatus) string {
	if sp.Voters == 0 {
		return "?"
	}
	return fmt.Sprintf("%s (%d/%d)", yesNo(sp.Alive), sp.SeenBy, sp.Voters)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// condition returns the Service's condition of type t, or nil.
func condition(svc *corev1.Service, t string) *metav1.Condition {
	return meta.FindStatusCondition(svc.Status.Conditions, t)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
