package speaker

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	coreinformers "k8s.io/client-go/informers/core/v1"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/l2"
)

// Announcer is what the speaker drives for layer 2 (l2.Announcer).
type Announcer interface {
	Set(desired map[netip.Addr][]string)
	// SetQuiet names the addresses answered only to a neighbour asking
	// this node directly: those being handed over.
	SetQuiet(addrs map[netip.Addr]bool)
	// Announce sends addr's gratuitous ARP / unsolicited NA again now.
	Announce(addr netip.Addr)
	// Conflicts reports frames from other MACs claiming an answered or
	// probed address; Probe asks the link whether another device answers
	// for an address before this node takes it.
	Conflicts() <-chan l2.Conflict
	Probe(ctx context.Context, addr netip.Addr, ifaces []string, count int, wait time.Duration) ([]l2.Conflict, error)
}

// Options configure a speaker.
type Options struct {
	Node string // this node's Kubernetes name
	// Namespace and ConfigName locate Herald's ConfigMap (key config.yaml).
	Namespace, ConfigName string
	LBClass               string // as the controller's --lb-class
	// HandBack is how long a node keeps answering for an address it hands
	// to another live node, after the new owner has started: clients move on
	// the new owner's gratuitous ARP/NA and nothing in flight is lost.
	HandBack time.Duration
	// Links reads this node's interfaces (l2.ReadLinks; at most once a
	// second, see linksFor):
	// where to answer for each address, and the MACs the other speakers
	// know this node by.
	Links func() (*l2.Links, error)
	// States is where this node's SpeakerState is written (the
	// speakerstates resource in Herald's namespace); nil writes nothing.
	States  dynamic.ResourceInterface
	Version string // of this binary, published in the SpeakerState
	// ProxySync tells when kube-proxy on this node has programmed a new
	// address (proxysync.go); nil announces new addresses at once.
	ProxySync *ProxySync
}

// Informers are the speaker's views of the API; Services and EndpointSlices
// should come from a factory with the transform Trim.
type Informers struct {
	Services       coreinformers.ServiceInformer
	EndpointSlices discoveryinformers.EndpointSliceInformer
	Nodes          coreinformers.NodeInformer
	ConfigMaps     coreinformers.ConfigMapInformer // Herald's ConfigMap
	Secrets        *Secrets                        // BGP password Secrets, each read by name
}

// Speaker decides what this node announces and keeps l2, bgp and the
// Services' status in line with it. Build it with New, then Run it.
type Speaker struct {
	opts       Options
	services   corelisters.ServiceLister
	slices     cache.Indexer // EndpointSlices, indexed byService
	nodes      corelisters.NodeLister
	configMaps corelisters.ConfigMapLister
	secrets    *Secrets
	synced     []cache.InformerSynced
	early      []cache.InformerSynced // what BGP sessions need: Nodes, config
	members    *Members
	l2         Announcer
	bgp        BGP
	bgpState   bgpState // only the loop touches it
	report     *reporter
	metrics    *Metrics
	log        *zap.Logger
	trigger    chan struct{}
	api        chan struct{} // API changes (apiChanged)

	recorder record.EventRecorder
	loader   config.Loader // only the loop touches it
	gate     programGate   // only the loop touches it
	// gateHolds: the gate holds addresses back; the kube-proxy poller
	// then asks for a decision at each answer, so that the gate judges
	// kube-proxy's latest word (a loop timer out of step with the polls
	// added 90 ms to every new address).
	gateHolds atomic.Bool
	cfgErr    string // the configuration problem last reported

	l2s l2State // only the loop touches it

	mu          sync.Mutex
	owned       map[netip.Addr]ownership // what this node answers for now
	conflicts   conflicts                // other MACs answering for addresses (conflicts.go)
	dataPathWhy string                   // why the data path is down ("" while it works)
	probeDone   []probeOutcome           // probes ended since the last decision
	ready       bool
	lastLoop    time.Time // when the loop last decided
}

// New builds a speaker from informers; it starts nothing.
func New(inf Informers, members *Members, l2 Announcer, bgp BGP,
	recorder record.EventRecorder, metrics *Metrics, log *zap.Logger, opts Options,
) *Speaker {
	informers := []cache.SharedIndexInformer{inf.Services.Informer(), inf.EndpointSlices.Informer(),
		inf.Nodes.Informer(), inf.ConfigMaps.Informer()}
	s := &Speaker{
		opts:       opts,
		services:   inf.Services.Lister(),
		slices:     inf.EndpointSlices.Informer().GetIndexer(),
		nodes:      inf.Nodes.Lister(),
		configMaps: inf.ConfigMaps.Lister(),
		secrets:    inf.Secrets,
		members:    members,
		l2:         l2,
		bgp:        bgp,
		bgpState:   bgpState{passwords: map[config.SecretRef]string{}},
		report:     newReporter(recorder, opts.States, opts.Node, log.Named("state")),
		metrics:    metrics,
		log:        log,
		recorder:   recorder,
		trigger:    make(chan struct{}, 1),
		api:        make(chan struct{}, 1),
		owned:      map[netip.Addr]ownership{},
		conflicts:  newConflicts(),
		l2s:        newL2State(),
		gate:       newProgramGate(opts.ProxySync),
	}
	// Finding a Service's slices by label would scan every slice of the
	// namespace: O(n²) per decision with n Services.
	_ = inf.EndpointSlices.Informer().AddIndexers(cache.Indexers{byService: sliceService})
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { s.apiChanged() },
		UpdateFunc: func(old, cur any) {
			if !sameForSpeaker(old, cur) {
				s.apiChanged()
			}
		},
		DeleteFunc: func(any) { s.apiChanged() },
	}
	for _, i := range informers {
		s.synced = append(s.synced, i.HasSynced)
		_, _ = i.AddEventHandler(handler)
	}
	s.early = []cache.InformerSynced{inf.Nodes.Informer().HasSynced, inf.ConfigMaps.Informer().HasSynced}
	return s
}

// poke asks the loop to decide again (coalesced).
func (s *Speaker) poke() {
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// apiChanged tells the loop that something it reads from the API changed
// (coalesced, and at most one decision per apiSettle for these).
func (s *Speaker) apiChanged() {
	select {
	case s.api <- struct{}{}:
	default:
	}
}

// apiSettle spaces the decisions that API changes call for. A new Service
// makes three or four changes (created, given its address, its endpoints,
// their readiness) and each used to cost a decision on every node: under
// make bench's churn (a Service created or deleted every 100 ms) the
// speakers wanted more CPU than a loaded node gave them, waited for it,
// and memberlist took them for dead. A new address waits for kube-proxy
// for over a second anyway; a withdrawn one goes at most this much later.
// Changes of members, conflicts and the data path are decided at once.
const apiSettle = 100 * time.Millisecond

// Ready reports whether the speaker has made its first decision among the
// other speakers (after joining them).
func (s *Speaker) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

// Healthy reports whether the decision loop is alive: it decides at least
// every 10 s, so a loop silent for 30 s is wedged and the process should be
// restarted (a stuck speaker may be answering for addresses it lost).
func (s *Speaker) Healthy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.ready || time.Since(s.lastLoop) < 30*time.Second
}

// Run decides and applies until ctx ends. With the API server gone the
// informers keep their caches, so the speaker keeps answering for what it owns.
func (s *Speaker) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), s.early...) {
		return errors.New("caches did not sync")
	}
	s.secrets.Start(ctx, s.poke)
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	s.loadFamilies(lctx)
	cancel()
	s.openSessions(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		return errors.New("caches did not sync")
	}
	go s.report.run(ctx)
	go s.watchDataPath(ctx)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := s.reconcile(ctx)
		joined := s.members.Joined()
		s.mu.Lock()
		// Ready once it decides among the others: a rolling update then
		// waits for this speaker to have joined before it stops the next.
		s.ready = s.ready || joined
		s.lastLoop = time.Now()
		s.mu.Unlock()
		timer.Reset(next)
		// A wake-up and the end can come together (select picks either):
		// no decision may start once the end has come, or it could set
		// BGP up again while the BGP server stops for a graceful restart.
		if !s.wait(ctx, timer, time.Now()) || ctx.Err() != nil {
			// Stop answering before exiting; memberlist's Leave (Members.Run)
			// has told the others to take over.
			s.l2.Set(nil)
			return nil
		}
	}
}

// wait blocks until something calls for a decision (false: ctx ended); the
// last one was made at decided. A
// claim seen on the wire is noted without one: noteConflict asks for a
// decision when the claim matters. Deciding at every claim cost a node
// handing 500 of 3,000 addresses back some 6 CPU-seconds, one decision per
// gratuitous ARP of the new owner.
func (s *Speaker) wait(ctx context.Context, timer *time.Timer, decided time.Time) bool {
	var settle <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return false
		case c := <-s.l2.Conflicts():
			s.noteConflict(c, false)
		case <-s.api:
			d := apiSettle - time.Since(decided)
			if d <= 0 {
				return true
			}
			if settle == nil {
				settle = time.After(d)
			}
		case <-settle:
			return true
		case <-s.trigger:
			return true
		case <-s.members.Changes():
			return true
		case <-s.bgpChanges():
			return true
		case <-timer.C:
			return true
		}
	}
}

// reconcile makes one decision and applies it; it returns when to look
// again at the latest (a hand-back ending, a hold-down passing).
func (s *Speaker) reconcile(ctx context.Context) time.Duration {
	start := time.Now()
	var took [4]time.Duration // kube-proxy gate, BGP, L2, publish
	lap := func(i int, since time.Time) time.Time {
		now := time.Now()
		took[i] = now.Sub(since)
		return now
	}
	cfg := s.loadConfig()
	next := time.Second // nothing is announced before a first valid config
	var nodes []NodeInfo
	if cfg.Config != nil {
		svcs, held, wait := s.gate.filter(s.serviceInfos(), s.log)
		s.gateHolds.Store(len(held) > 0)
		t := lap(0, start)
		nodes = s.nodeInfos()
		s.reconcileBGP(ctx, cfg, svcs, nodes)
		t = lap(1, t)
		next = s.reconcileL2(ctx, cfg, svcs, held, nodes)
		lap(2, t)
		if wait > 0 {
			next = min(next, wait)
		}
	}
	t := time.Now()
	s.publish(cfg, nodes)
	lap(3, t)
	d := time.Since(start)
	s.metrics.decisions.Observe(d.Seconds())
	if d > slowDecision {
		// A decision that takes this long delays a failover as much.
		s.log.Warn("slow decision", zap.Duration("took", d), zap.Duration("kubeProxyGate", took[0]),
			zap.Duration("bgp", took[1]), zap.Duration("l2", took[2]), zap.Duration("publish", took[3]))
	}
	return next
}

// slowDecision: a decision taking longer is logged with where its time went.
const slowDecision = 200 * time.Millisecond

// loadConfig returns the configuration in force, read the one way the
// controller reads it too (config.Loader): a missing, empty or invalid
// ConfigMap never drops an announcement, also across restarts.
func (s *Speaker) loadConfig() config.State {
	cms := s.configMaps.ConfigMaps(s.opts.Namespace)
	user, _ := cms.Get(s.opts.ConfigName)
	record, _ := cms.Get(config.RecordName(s.opts.ConfigName))
	st := s.loader.Load(user, record)
	if st.Err == nil {
		s.metrics.configValid.Set(1)
		s.cfgErr = ""
		return st
	}
	s.metrics.configValid.Set(0)
	if msg := st.Err.Error(); msg != s.cfgErr {
		s.cfgErr = msg
		instead := "no valid configuration yet: nothing is announced"
		if st.Config != nil {
			instead = "announcing under the last valid configuration " + st.Hash
		}
		s.log.Error("configuration not loaded", zap.Error(st.Err), zap.String("inForce", st.Hash))
		if user != nil {
			s.recorder.Eventf(user, corev1.EventTypeWarning, "InvalidConfig", "speaker on node %s: %v; %s", s.opts.Node, st.Err, instead)
		}
	}
	return st
}

// serviceInfos collects our Services that show addresses, with the nodes
// that have a ready endpoint for each.
func (s *Speaker) serviceInfos() []ServiceInfo {
	svcs, err := s.services.List(labels.Everything())
	if err != nil {
		return nil
	}
	var out []ServiceInfo
	for _, svc := range svcs {
		if !s.serves(svc) || len(svc.Status.LoadBalancer.Ingress) == 0 {
			continue
		}
		info := ServiceInfo{Key: svc.Namespace + "/" + svc.Name, Local: svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal}
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(in.IP); err == nil {
				info.Addrs = append(info.Addrs, a)
			}
		}
		info.ReadyNodes = s.readyNodes(svc)
		out = append(out, info)
	}
	return out
}

func (s *Speaker) serves(svc *corev1.Service) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	class := ""
	if svc.Spec.LoadBalancerClass != nil {
		class = *svc.Spec.LoadBalancerClass
	}
	return class == s.opts.LBClass
}

// byService indexes EndpointSlices by their Service's namespace/name.
const byService = "byService"

func sliceService(obj any) ([]string, error) {
	es, ok := asReadyEndpoints(obj)
	if !ok || es.service == "" {
		return nil, nil
	}
	return []string{es.Namespace + "/" + es.service}, nil
}

// readyNodes lists the nodes with a ready endpoint of svc, sorted.
func (s *Speaker) readyNodes(svc *corev1.Service) []string {
	objs, err := s.slices.ByIndex(byService, svc.Namespace+"/"+svc.Name)
	if err != nil {
		return nil
	}
	if len(objs) == 1 {
		if es, ok := asReadyEndpoints(objs[0]); ok {
			return es.nodes // sorted already; callers only read it
		}
	}
	var nodes []string
	for _, obj := range objs {
		if es, ok := asReadyEndpoints(obj); ok {
			nodes = append(nodes, es.nodes...)
		}
	}
	slices.Sort(nodes)
	return slices.Compact(nodes)
}

// asReadyEndpoints reads a cached EndpointSlice, which Trim has made a
// readyEndpoints unless the informer was built without it.
func asReadyEndpoints(obj any) (*readyEndpoints, bool) {
	switch o := obj.(type) {
	case *readyEndpoints:
		return o, true
	case *discoveryv1.EndpointSlice:
		return trimSlice(o), true
	}
	return nil, false
}

// nodeInfos joins Node objects with memberlist's view of who is alive.
func (s *Speaker) nodeInfos() []NodeInfo {
	nodes, err := s.nodes.List(labels.Everything())
	if err != nil {
		return nil
	}
	alive := s.members.Alive()
	down := s.members.DataPathDown()
	var peers []string
	out := make([]NodeInfo, 0, len(nodes))
	for _, n := range nodes {
		settled, isAlive := alive[n.Name]
		info := NodeInfo{Name: n.Name, Labels: n.Labels, Alive: isAlive, Settled: settled, DataPathDown: down[n.Name]}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeNetworkUnavailable && c.Status == corev1.ConditionTrue {
				info.NetworkUnavailable = true
			}
		}
		out = append(out, info)
		if n.Name != s.opts.Node {
			for _, a := range n.Status.Addresses {
				if a.Type == corev1.NodeInternalIP {
					peers = append(peers, a.Address)
					break
				}
			}
		}
	}
	s.members.SetPeers(peers)
	return out
}

// membersView says how this node sees the others, for the log of an
// ownership change: each live node by name, "*" after the settled ones,
// "!" after those whose data path is down.
func membersView(nodes []NodeInfo) string {
	var names []string
	for _, n := range nodes {
		if !n.Alive {
			continue
		}
		name := n.Name
		if n.Settled {
			name += "*"
		}
		if n.DataPathDown {
			name += "!"
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return strings.Join(names, " ")
}
