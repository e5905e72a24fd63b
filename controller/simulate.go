package controller

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/ipam"
)

// A preview runs this controller's own code (restore, guard, sync's
// decision) on a copy of the cluster's objects, with an allocator of its
// own and no client: `kubectl herald validate --cluster` shows what a
// document would do, and nothing is written.

// Cluster is what the controller's informers would hold.
type Cluster struct {
	Services   []*corev1.Service
	Namespaces []*corev1.Namespace
	ConfigMap  *corev1.ConfigMap // the user's; nil when absent
	Record     *corev1.ConfigMap // config.RecordName's; nil when absent
}

// Stage says when a previewed change happens.
type Stage string

const (
	// StageApply: as soon as the document is in the ConfigMap.
	StageApply Stage = "apply"
	// StageConfirm: once the user confirms a held change.
	StageConfirm Stage = "confirm"
)

// Outcome is what the controller would do with one Service it serves.
type Outcome struct {
	Service string       // namespace/name
	Before  []netip.Addr // in its status now
	Applied []netip.Addr // once the document is applied, before any confirmation
	After   []netip.Addr // once the document is applied and confirmed
	Stage   Stage        // when After first shows; "" when the addresses stay
	Held    string       // why the guard keeps it as it is until confirmed; "" when not held
	Why     string       // why its addresses change, or why it has none
	// OrderDependent: which addresses it gets (or whether it gets one)
	// depends on the order the controller happens to sync Services in.
	OrderDependent bool
}

// Preview is what putting a document in the ConfigMap would do.
type Preview struct {
	// Now, Applied and Confirmed are the configuration states (in force,
	// accepted) before the edit, once it is applied, once it is confirmed.
	Now, Applied, Confirmed config.State
	// Confirm is the command that confirms the held change; "" when nothing is held.
	Confirm  string
	Services []Outcome // every Service Herald serves, by key
}

// PreviewDocument runs the controller, as Options say it is configured, on
// a copy of cl and reports what putting text in the user's ConfigMap would
// do: restore every address in status under the configuration in force (as
// a starting controller does), load the new document with the guard, sync
// every Service until nothing changes, then confirm and sync again. Services
// are synced oldest first; where another order could give another result,
// the Outcome says so. It fails when text is not a valid document.
func PreviewDocument(opts Options, cl Cluster, text string) (Preview, error) {
	c := offline(opts, cl)
	var p Preview
	p.Now = c.loader.Load(cl.ConfigMap, cl.Record)
	if p.Now.Config != nil {
		c.applyLocked(p.Now, cl.ConfigMap)
	}
	before := c.statusNow()
	record := c.recordAfter(cl.Record)

	user := withDocument(opts, cl.ConfigMap, text)
	p.Applied = c.loader.Load(user, record)
	if p.Applied.Err != nil || p.Applied.Text != text {
		return Preview{}, fmt.Errorf("preview: the document is not valid: %w", cmp.Or(p.Applied.Err, errors.New("not in force")))
	}
	c.applyLocked(p.Applied, user)
	whys := c.reasons(p.Now.Config, p.Applied)
	held := c.held
	if len(held) > 0 {
		p.Confirm = c.confirmCommand(p.Applied.Hash)
	}
	applied, orderApplied := c.settle()

	record = c.recordAfter(record)
	user = user.DeepCopy()
	if user.Annotations == nil {
		user.Annotations = map[string]string{}
	}
	user.Annotations[config.ConfirmAnnotation] = p.Applied.Hash
	p.Confirmed = c.loader.Load(user, record)
	c.applyLocked(p.Confirmed, user)
	after, orderConfirmed := c.settle()

	for _, key := range slices.Sorted(maps.Keys(after)) {
		o := Outcome{Service: key, Before: before[key], Applied: applied[key].addrs, After: after[key].addrs, Held: held[key],
			OrderDependent: orderApplied[key] || orderConfirmed[key]}
		switch {
		case !slices.Equal(o.Before, o.Applied):
			o.Stage = StageApply
		case !slices.Equal(o.Applied, o.After):
			o.Stage = StageConfirm
		}
		o.Why = c.why(o, whys[key], after[key].err)
		p.Services = append(p.Services, o)
	}
	return p, nil
}

// offline builds a controller over a copy of cl that has no client: it can
// allocate and judge, never write.
func offline(opts Options, cl Cluster) *Controller {
	services := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, s := range cl.Services {
		_ = services.Add(s.DeepCopy())
	}
	namespaces := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, n := range cl.Namespaces {
		_ = namespaces.Add(n.DeepCopy())
	}
	configMaps := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	return &Controller{
		services:   corelisters.NewServiceLister(services),
		namespaces: corelisters.NewNamespaceLister(namespaces),
		configMaps: corelisters.NewConfigMapLister(configMaps),
		recorder:   &record.FakeRecorder{}, // drops Events
		metrics:    NewMetrics(prometheus.NewRegistry()),
		log:        zap.NewNop(),
		opts:       opts,
		conflicts:  map[string]string{},
		pending:    map[string]bool{},
	}
}

// withDocument is the user's ConfigMap holding text.
func withDocument(opts Options, user *corev1.ConfigMap, text string) *corev1.ConfigMap {
	if user == nil {
		user = &corev1.ConfigMap{}
		user.Namespace, user.Name = opts.Namespace, opts.ConfigName
	} else {
		user = user.DeepCopy()
	}
	if user.Data == nil {
		user.Data = map[string]string{}
	}
	user.Data[config.Key] = text
	return user
}

// recordAfter is the record once the controller has written what the
// configuration in force calls for.
func (c *Controller) recordAfter(record *corev1.ConfigMap) *corev1.ConfigMap {
	want := c.recordWantLocked(record)
	if want == nil {
		return record
	}
	out := &corev1.ConfigMap{}
	out.Namespace, out.Name = c.opts.Namespace, config.RecordName(c.opts.ConfigName)
	out.Data = map[string]string{config.RecordLatest: want.latest, config.RecordAccepted: want.accepted}
	return out
}

// reasons says, for every Service the applied document would take an
// address from or stop announcing, why, as the guard would say it were the
// change held (also when it is not: confirmed already, or nothing accepted).
func (c *Controller) reasons(was *config.Config, st config.State) map[string]string {
	if c.alloc == nil || was == nil {
		return nil
	}
	moved := c.alloc.SetPools(st.Config.Pools) // the same pools again: reports, changes nothing
	st.Accepted = was
	return c.guardLocked(st, moved)
}

// synced is what one Service shows after the controller synced it.
type synced struct {
	addrs []netip.Addr
	err   error
}

// statusNow is every served Service's addresses as its status shows them.
func (c *Controller) statusNow() map[string][]netip.Addr {
	out := map[string][]netip.Addr{}
	svcs, _ := c.services.List(everything)
	for _, svc := range svcs {
		if c.serves(svc) {
			out[svc.Namespace+"/"+svc.Name] = ingressAddrs(svc)
		}
	}
	return out
}

// settle syncs every served Service, oldest first, and again while a sync
// freed addresses that a Service still waiting might take (the controller
// retries those), until nothing changes. It returns what each Service then
// shows, and which of them another sync order could have given another
// result.
func (c *Controller) settle() (map[string]synced, map[string]bool) {
	svcs := c.servedOldestFirst()
	out := map[string]synced{}
	orderDependent := map[string]bool{}
	for range len(svcs) + 1 {
		var round contest
		for _, svc := range svcs {
			key := svc.Namespace + "/" + svc.Name
			had := c.alloc.Addresses(ipam.Owner(key))
			_, addrs, err, _ := c.decide(c.alloc, svc)
			round.note(key, had, addrs, err, c.alloc)
			for _, a := range c.alloc.Settle(ipam.Owner(key)) {
				round.freed(c.alloc.PoolOf(a))
			}
			out[key] = synced{addrs: addrs, err: err}
		}
		for key := range round.dependent() {
			orderDependent[key] = true
		}
		if !round.changed {
			break
		}
	}
	return out, orderDependent
}

func (c *Controller) servedOldestFirst() []*corev1.Service {
	all, _ := c.services.List(everything)
	svcs := slices.DeleteFunc(all, func(s *corev1.Service) bool { return !c.serves(s) })
	slices.SortFunc(svcs, func(a, b *corev1.Service) int {
		return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time), cmp.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name))
	})
	return svcs
}

// contest tracks, in one round of syncs, who took new addresses from which
// pool, who was refused one, and which pools got addresses back. Two
// Services taking from one pool, one taking from a pool that got an address
// back, or one refused while others took, could end otherwise in another order.
type contest struct {
	picks   map[string][]string // pool: Services that took a new address from it
	freedIn map[string]bool     // pools that got an address back
	refused []string            // Services that wanted an address and got none
	changed bool                // some Service's addresses changed
}

func (r *contest) note(key string, had, now []netip.Addr, err error, alloc *ipam.Allocator) {
	if r.picks == nil {
		r.picks, r.freedIn = map[string][]string{}, map[string]bool{}
	}
	for _, a := range now {
		if !slices.Contains(had, a) {
			p := alloc.PoolOf(a)
			r.picks[p] = append(r.picks[p], key)
		}
	}
	r.changed = r.changed || !slices.Equal(had, now)
	if err != nil && (errors.Is(err, ipam.ErrPoolExhausted) || errors.Is(err, ipam.ErrAddressInUse)) {
		r.refused = append(r.refused, key)
	}
}

func (r *contest) freed(pool string) {
	if pool != "" {
		r.freedIn[pool] = true
	}
}

func (r *contest) dependent() map[string]bool {
	out := map[string]bool{}
	for pool, keys := range r.picks {
		if len(keys) > 1 || r.freedIn[pool] || len(r.refused) > 0 {
			for _, k := range keys {
				out[k] = true
			}
		}
	}
	if len(r.picks) > 0 {
		for _, k := range r.refused {
			out[k] = true
		}
	}
	return out
}

// decide is sync's judgement of one Service we serve, without writing: the
// request, the addresses its status should show, the error its condition
// reports, and the held change that keeps it as it is (nil: none).
func (c *Controller) decide(alloc *ipam.Allocator, svc *corev1.Service) (ipam.Request, []netip.Addr, error, error) {
	key := svc.Namespace + "/" + svc.Name
	owner := ipam.Owner(key)
	req, reqErr := RequestFor(svc, c.namespaceLabels(svc.Namespace))
	held := c.heldError(key)
	var addrs []netip.Addr
	switch {
	case held != nil:
		// A change the user has not confirmed takes nothing away.
		addrs, reqErr = alloc.Addresses(owner), held
	case reqErr != nil:
		// Bad input never takes away what works: keep what the Service holds.
		addrs = alloc.Addresses(owner)
	default:
		addrs, reqErr = alloc.Assign(owner, req)
	}
	return req, addrs, reqErr, held
}

// why explains an outcome: the guard's reason for what the document takes
// away, else the allocation error, else what the controller's Event says.
func (c *Controller) why(o Outcome, guard string, err error) string {
	switch {
	case guard != "" && err != nil && len(o.After) == 0 && o.Stage != "":
		return guard + "; then " + err.Error()
	case guard != "" && (o.Stage != "" || o.Held != ""):
		return guard
	case err != nil && len(o.After) == 0 && (o.Stage != "" || len(o.Before) == 0):
		return err.Error()
	case o.Stage == "":
		return ""
	case len(o.Before) == 0:
		return "it was waiting for an address"
	}
	return whyMoved(c.alloc, o.Before, o.After)
}
