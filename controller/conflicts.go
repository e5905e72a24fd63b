package controller

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/heraldlb/herald/ipam"
	"github.com/heraldlb/herald/speaker/state"
)

// A device outside the cluster answering for a pool address (a static IP,
// an overlapping DHCP range) is reported by the speakers in their
// SpeakerStates. The rule:
//
//   - Every Service holding the address gets the condition
//     herald.dev/AddressConflict (True, naming the MAC and the node that saw
//     it) and a Warning Event; it turns False when no speaker reports the
//     device any more.
//   - The device held the address before Herald announced it (a speaker's
//     probe found it): Herald does not announce it. Unless the Service asked
//     for that address (herald.dev/ips, spec.loadBalancerIP), the controller
//     gives it another address from its pools, and keeps the address out of
//     use while it is reported and for conflictQuarantine after.
//   - The address was in service when the device appeared: the Service keeps
//     it and Herald keeps answering for it (the owner defends it, RFC 5227
//     §2.4); moving it would break every client that knows it. Someone must
//     remove the device's address.
const conflictQuarantine = 10 * time.Minute

// addrConflict is a device that is no speaker answering for an address, as
// one node reports it.
type addrConflict struct {
	Node, MAC, Kind string
	Announced       bool
}

// indexConflicts lists, per address, the devices the counted speakers
// report.
func indexConflicts(states []*state.SpeakerState) map[netip.Addr][]addrConflict {
	// A speaker that did not know another's MAC yet may take its answers
	// for a foreign device's: a MAC any speaker publishes is none.
	speakers := map[string]bool{}
	for _, s := range states {
		for _, mac := range s.Status.MACs {
			speakers[strings.ToLower(mac)] = true
		}
	}
	out := map[netip.Addr][]addrConflict{}
	for _, s := range counted(states) {
		for _, c := range s.Status.Conflicts {
			addr, err := netip.ParseAddr(c.Address)
			if err != nil || speakers[strings.ToLower(c.MAC)] {
				continue
			}
			out[addr] = append(out[addr], addrConflict{Node: s.Name, MAC: c.MAC, Kind: c.Kind, Announced: c.Announced})
		}
	}
	for addr, cs := range out {
		slices.SortFunc(cs, func(a, b addrConflict) int { return strings.Compare(a.Node+"\x00"+a.MAC, b.Node+"\x00"+b.MAC) })
		out[addr] = cs
	}
	return out
}

// noteConflicts takes a new conflict index: addresses Herald never
// announced are blocked in the allocator, those no longer reported leave
// quarantine later, and every Service is looked at again when the index
// changed (a rare event).
func (c *Controller) noteConflicts(next map[netip.Addr][]addrConflict) {
	a := c.announced
	a.mu.Lock()
	changed := !reflect.DeepEqual(a.conflicts, next)
	a.conflicts = next
	now := time.Now()
	for addr, cs := range next {
		if !slices.ContainsFunc(cs, func(x addrConflict) bool { return x.Announced }) {
			a.blocked[addr] = time.Time{} // blocked while reported
		}
	}
	for addr, until := range a.blocked {
		if _, still := next[addr]; !still && until.IsZero() {
			a.blocked[addr] = now.Add(conflictQuarantine)
		}
	}
	c.metrics.conflicts.Set(float64(len(next)))
	a.mu.Unlock()
	if changed {
		c.mu.Lock()
		c.enqueueAllLocked()
		c.mu.Unlock()
	}
}

// applyBlocks brings alloc's blocked addresses in line with the reports
// (alloc is replaced when the configuration changes).
func (c *Controller) applyBlocks(alloc *ipam.Allocator) {
	a := c.announced
	if a == nil {
		return
	}
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for addr, until := range a.blocked {
		if !until.IsZero() && now.After(until) {
			delete(a.blocked, addr)
			alloc.Unblock(addr)
			continue
		}
		alloc.Block(addr)
	}
}

// conflictNote says, for a Service moving off addresses, which of them a
// device holds ("" when none does): the words of its Event.
func (c *Controller) conflictNote(old, now []netip.Addr) string {
	a := c.announced
	if a == nil {
		return ""
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var parts []string
	for _, addr := range old {
		if cs, ok := a.conflicts[addr]; ok && !slices.Contains(now, addr) {
			parts = append(parts, fmt.Sprintf("%s is answered by a device with MAC %s (seen by node %s), so Herald does not announce it", addr, cs[0].MAC, cs[0].Node))
		}
	}
	return strings.Join(parts, "; ")
}

// setConflict sets the AddressConflict condition in st for a Service
// holding addrs, and records an Event when it turns True.
func (c *Controller) setConflict(svc *corev1.Service, st *corev1.ServiceStatus, addrs []netip.Addr) {
	a := c.announced
	if a == nil {
		return
	}
	a.mu.Lock()
	var parts []string
	for _, addr := range addrs {
		for _, x := range a.conflicts[addr] {
			what := "Herald does not announce it"
			if x.Announced {
				what = "Herald keeps answering for it (it was in service first); remove the device's address"
			}
			parts = append(parts, fmt.Sprintf("a device with MAC %s answers for %s (seen by node %s, %s); %s", x.MAC, addr, x.Node, x.Kind, what))
		}
	}
	a.mu.Unlock()
	old := meta.FindStatusCondition(svc.Status.Conditions, state.ConditionAddressConflict)
	cond := metav1.Condition{Type: state.ConditionAddressConflict, ObservedGeneration: svc.Generation}
	switch {
	case len(parts) > 0:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, state.ReasonAddressConflict, strings.Join(parts, "; ")
	case old == nil:
		return // never had one: no condition to keep
	default:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, state.ReasonNoConflict, "no device other than Herald answers for "+joinAddrs(addrs)
	}
	meta.SetStatusCondition(&st.Conditions, cond)
	if cond.Status == metav1.ConditionTrue && (old == nil || old.Status != metav1.ConditionTrue || old.Message != cond.Message) {
		c.recorder.Event(svc, corev1.EventTypeWarning, state.ReasonAddressConflict, cond.Message)
		c.metrics.conflictEvents.Inc()
	}
}
