package controller

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/heraldlb/herald/speaker/state"
)

// notAnnouncedAfter is how long a Service may show no announcer before its
// Announced condition turns False: an address moving from one node to
// another leaves one SpeakerState before it shows in the next.
const notAnnouncedAfter = 2 * time.Second

// announcer is one node announcing one of a Service's addresses.
type announcer struct {
	Node  string
	Addr  string   // the address (L2) or the prefix (BGP)
	Iface string   // L2: the first interface answered on
	Peers []string // BGP: the peers with an Established session it goes to
}

// announcements index what the speakers report, per Service.
type announcements struct {
	mu        sync.Mutex
	byService map[string][]announcer
	unseen    map[string]time.Time // Services announced before and not now, since when
	conflicts map[netip.Addr][]addrConflict
	blocked   map[netip.Addr]time.Time // blocked in the allocator: while reported (zero), else until
}

// WatchSpeakerStates has the controller keep every Service's
// herald.dev/Announced condition from the speakers' SpeakerStates (an
// informer on speakerstates in Herald's namespace). Call it before Run.
func (c *Controller) WatchSpeakerStates(inf cache.SharedIndexInformer) {
	c.announced = &announcements{byService: map[string][]announcer{}, unseen: map[string]time.Time{},
		conflicts: map[netip.Addr][]addrConflict{}, blocked: map[netip.Addr]time.Time{}}
	c.synced = append(c.synced, inf.HasSynced)
	reindex := func(any) { c.reindex(inf.GetStore()) }
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    reindex,
		UpdateFunc: func(_, obj any) { reindex(obj) },
		DeleteFunc: reindex,
	})
}

// reindex rebuilds the index from every SpeakerState and queues the
// Services whose announcers changed.
func (c *Controller) reindex(store cache.Store) {
	var states []*state.SpeakerState
	for _, obj := range store.List() {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		if s, err := state.FromUnstructured(u); err == nil {
			states = append(states, s)
		}
	}
	c.noteConflicts(indexConflicts(states))
	next := indexStates(states)
	a := c.announced
	a.mu.Lock()
	prev := a.byService
	a.byService = next
	a.mu.Unlock()
	for key, v := range next {
		if !reflect.DeepEqual(prev[key], v) {
			c.queue.Add(key)
		}
	}
	for key := range prev {
		if _, still := next[key]; !still {
			c.queue.Add(key)
		}
	}
}

// indexStates lists, per Service, the nodes announcing its addresses. A
// node counts only while most of the joined speakers see it alive: the
// SpeakerState of a node that died stays behind, saying what it did last.
func indexStates(states []*state.SpeakerState) map[string][]announcer {
	out := map[string][]announcer{}
	for _, s := range counted(states) {
		node := s.Name
		for _, l := range s.Status.L2 {
			a := announcer{Node: node, Addr: l.Address}
			if len(l.Interfaces) > 0 {
				a.Iface = l.Interfaces[0]
			}
			for _, key := range l.Services {
				out[key] = append(out[key], a)
			}
		}
		up := map[string]bool{}
		for _, ss := range s.Status.Sessions {
			up[ss.Peer] = ss.State == state.SessionEstablished
		}
		for _, r := range s.Status.BGP {
			var peers []string
			for _, p := range r.Peers {
				if up[p] {
					peers = append(peers, p)
				}
			}
			if len(peers) == 0 {
				continue
			}
			for _, key := range r.Services {
				out[key] = append(out[key], announcer{Node: node, Addr: r.Prefix, Peers: peers})
			}
		}
	}
	for key, as := range out {
		slices.SortFunc(as, func(a, b announcer) int {
			return strings.Compare(a.Addr+"\x00"+a.Node, b.Addr+"\x00"+b.Node)
		})
		out[key] = as
	}
	return out
}

// counted returns the states of the nodes that most joined speakers see
// alive: the SpeakerState of a node that died stays behind, saying what it
// did last.
func counted(states []*state.SpeakerState) []*state.SpeakerState {
	joined, seen := 0, map[string]int{}
	for _, s := range states {
		if !s.Status.Joined {
			continue
		}
		joined++
		for _, m := range s.Status.Members {
			seen[m]++
		}
	}
	var out []*state.SpeakerState
	for _, s := range states {
		if 2*seen[s.Name] > joined {
			out = append(out, s)
		}
	}
	return out
}

// setAnnounced sets the Announced condition in st for a Service holding
// addrs; it returns when to look again (0: no need).
func (c *Controller) setAnnounced(st *corev1.ServiceStatus, key string, generation int64, addrs []netip.Addr) time.Duration {
	a := c.announced
	if a == nil {
		return 0 // not watching SpeakerStates: leave the condition alone
	}
	if len(addrs) == 0 {
		meta.RemoveStatusCondition(&st.Conditions, state.ConditionAnnounced)
		return 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	cond, ok := announcedCondition(a.byService[key], addrs)
	cond.ObservedGeneration = generation
	if ok {
		delete(a.unseen, key)
		meta.SetStatusCondition(&st.Conditions, cond)
		return 0
	}
	if old := meta.FindStatusCondition(st.Conditions, state.ConditionAnnounced); old != nil && old.Status == metav1.ConditionTrue {
		since, noted := a.unseen[key]
		if !noted {
			since = time.Now()
			a.unseen[key] = since
		}
		if wait := notAnnouncedAfter - time.Since(since); wait > 0 {
			return wait // keep it True a moment: the next owner may be about to report
		}
	}
	delete(a.unseen, key)
	meta.SetStatusCondition(&st.Conditions, cond)
	return 0
}

// forgetAnnounced drops what is kept about a Service that is gone.
func (c *Controller) forgetAnnounced(key string) {
	if a := c.announced; a != nil {
		a.mu.Lock()
		delete(a.unseen, key)
		a.mu.Unlock()
	}
}

// announcedCondition words the condition for a Service's addresses from
// the nodes announcing them; ok is false when nobody announces any.
func announcedCondition(as []announcer, addrs []netip.Addr) (metav1.Condition, bool) {
	var l2, bgp, missing []string
	bgpFrom := map[string][]string{} // prefix → "node to peers"
	for _, addr := range addrs {
		var nodes []string
		var iface string
		found := false
		for _, a := range as {
			if a.Peers != nil {
				if p, err := netip.ParsePrefix(a.Addr); err == nil && p.Contains(addr) {
					found = true
					if !slices.Contains(bgp, a.Addr) {
						bgp = append(bgp, a.Addr)
					}
					bgpFrom[a.Addr] = append(bgpFrom[a.Addr], a.Node+" to "+strings.Join(a.Peers, ", "))
				}
				continue
			}
			if a.Addr == addr.String() {
				found = true
				nodes = append(nodes, a.Node)
				iface = a.Iface
			}
		}
		switch {
		case len(nodes) == 1:
			l2 = append(l2, fmt.Sprintf("%s announced from node %s on %s via L2", addr, nodes[0], iface))
		case len(nodes) > 1:
			l2 = append(l2, fmt.Sprintf("%s announced from nodes %s via L2 (more than one node answers)", addr, strings.Join(nodes, ", ")))
		}
		if !found {
			missing = append(missing, addr.String())
		}
	}
	var parts []string
	parts = append(parts, l2...)
	for _, p := range bgp {
		from := slices.Compact(bgpFrom[p])
		parts = append(parts, fmt.Sprintf("%s advertised via BGP from %s", p, strings.Join(from, "; ")))
	}
	if len(parts) == 0 {
		return metav1.Condition{Type: state.ConditionAnnounced, Status: metav1.ConditionFalse, Reason: state.ReasonNotAnnounced,
			Message: fmt.Sprintf("no node announces %s (kubectl herald explain tells why)", strings.Join(missing, ", "))}, false
	}
	if len(missing) > 0 {
		parts = append(parts, strings.Join(missing, ", ")+" not announced")
	}
	reason := state.ReasonAnnouncedL2
	if len(l2) == 0 {
		reason = state.ReasonAnnouncedBGP
	}
	return metav1.Condition{Type: state.ConditionAnnounced, Status: metav1.ConditionTrue, Reason: reason, Message: strings.Join(parts, "; ")}, true
}

// SpeakerStateInformers returns an informer factory for the SpeakerStates
// in namespace, or nil when the API server does not serve the resource
// (the CRD is not installed: Announced conditions are then not kept, and
// nothing waits for a cache that never fills).
func SpeakerStateInformers(disco discovery.DiscoveryInterface, dyn dynamic.Interface, namespace string) (dynamicinformer.DynamicSharedInformerFactory, error) {
	list, err := disco.ServerResourcesForGroupVersion(state.Group + "/" + state.Version)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("discover %s: %w", state.GVR.GroupResource(), err)
	}
	if !slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == state.Resource }) {
		return nil, nil
	}
	return dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, namespace, nil), nil
}
