package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/heraldlb/herald/ipam"
	"github.com/heraldlb/herald/speaker/state"
)

// ConditionAllocated is the Service condition Herald keeps about its address.
const ConditionAllocated = "herald.dev/IPAllocated"

// Condition reasons (stable; users and alerts key on them).
const (
	ReasonAllocated                   = "Allocated"
	ReasonPoolExhausted               = "PoolExhausted"
	ReasonNoMatchingPool              = "NoMatchingPool"
	ReasonFamilyUnavailable           = "FamilyUnavailable"
	ReasonRequestedAddressUnavailable = "RequestedAddressUnavailable"
	ReasonInvalidRequest              = "InvalidRequest"
	ReasonConfigInvalid               = "ConfigInvalid"
	ReasonAddressChanged              = "AddressChanged"
	ReasonAddressConflict             = "AddressConflict"
	ReasonReleased                    = "Released"
	// ReasonConfigChangeHeld (guard.go) also keeps an address.
)

// sync makes one Service's address, status and annotation what they should be.
func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return &TerminalError{err}
	}
	owner := ipam.Owner(key)
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.release(owner)
		return nil
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	alloc, cfgBroken := c.alloc, c.cfgErr != ""
	c.mu.Unlock()
	if !c.serves(svc) {
		return c.releaseForeign(ctx, svc, alloc)
	}
	if alloc == nil || cfgBroken {
		// No allocations while the ConfigMap is missing or invalid; the
		// addresses Services hold are kept as they are.
		return c.reportNoConfig(ctx, svc)
	}

	c.applyBlocks(alloc)
	req, addrs, reqErr, held := c.decide(alloc, svc)
	if note := c.conflictNote(ingressAddrs(svc), addrs); note != "" {
		c.mu.Lock()
		c.conflicts[key] = note
		c.mu.Unlock()
	}
	// A Service waits for a freed address also while it keeps part of what
	// it asks for (a RequireDualStack Service keeps the family it holds).
	c.setPending(key, len(addrs) == 0 || errors.Is(reqErr, ipam.ErrAddressInUse) || errors.Is(reqErr, ipam.ErrPoolExhausted))
	want := desiredStatus(svc, addrs, reqErr)
	recheck := c.setAnnounced(&want, key, svc.Generation, addrs)
	c.setConflict(svc, &want, addrs)
	m := marks{pools: poolsOf(alloc, addrs), grant: svc.Annotations[AnnotationGrantedRequest]}
	switch {
	case len(addrs) == 0:
		m.grant = ""
	case held == nil && !errors.Is(reqErr, errInvalidRequest): // Assign judged the holdings under req
		m.grant = GrantKey(req)
	}
	if err := c.apply(ctx, svc, addrs, alloc, want, m, reqErr); err != nil {
		return err
	}
	if freed := alloc.Settle(owner); len(freed) > 0 {
		c.addressesFreed()
	}
	c.metrics.observePools(alloc.Stats())
	if recheck > 0 {
		c.queue.AddAfter(key, recheck)
	}
	if reqErr != nil {
		return &TerminalError{reqErr}
	}
	return nil
}

// desiredStatus is the Service status Herald wants for addrs and err.
func desiredStatus(svc *corev1.Service, addrs []netip.Addr, err error) corev1.ServiceStatus {
	st := *svc.Status.DeepCopy()
	st.LoadBalancer.Ingress = nil
	for _, a := range addrs {
		st.LoadBalancer.Ingress = append(st.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: a.String(), IPMode: new(corev1.LoadBalancerIPModeVIP)})
	}
	cond := metav1.Condition{Type: ConditionAllocated, Status: metav1.ConditionTrue, Reason: ReasonAllocated, ObservedGeneration: svc.Generation}
	if err != nil {
		cond.Status, cond.Reason = metav1.ConditionFalse, reasonFor(err)
	}
	cond.Message = conditionMessage(addrs, err)
	meta.SetStatusCondition(&st.Conditions, cond)
	return st
}

func conditionMessage(addrs []netip.Addr, err error) string {
	held := joinAddrs(addrs)
	switch {
	case err == nil:
		return "assigned " + held
	case len(addrs) > 0:
		return fmt.Sprintf("keeping %s: %v", held, err)
	default:
		return err.Error()
	}
}

// reasonFor maps an allocation error to a condition reason.
func reasonFor(err error) string {
	switch {
	case err == nil:
		return ReasonAllocated
	case errors.Is(err, errChangeHeld):
		return ReasonConfigChangeHeld
	case errors.Is(err, errInvalidRequest), errors.Is(err, ipam.ErrInvalidRequest):
		return ReasonInvalidRequest
	case errors.Is(err, ipam.ErrPoolExhausted):
		return ReasonPoolExhausted
	case errors.Is(err, ipam.ErrAddressInUse), errors.Is(err, ipam.ErrAddressNotInPool):
		return ReasonRequestedAddressUnavailable
	case errors.Is(err, ipam.ErrFamilyUnavailable):
		return ReasonFamilyUnavailable
	case errors.Is(err, ipam.ErrNoMatchingPool):
		return ReasonNoMatchingPool
	default:
		return ReasonInvalidRequest
	}
}

// marks are the annotations Herald keeps on a Service it serves.
type marks struct {
	pools string // AnnotationAllocatedFrom
	grant string // AnnotationGrantedRequest
}

func marksOf(svc *corev1.Service) marks {
	return marks{pools: svc.Annotations[AnnotationAllocatedFrom], grant: svc.Annotations[AnnotationGrantedRequest]}
}

// apply writes the status and Herald's annotations if any changed, in one
// status update (the status subresource of a Service takes metadata changes
// too), and records Events for what changed. An address leaves a Service's
// status before Settle lets anyone else have it.
func (c *Controller) apply(ctx context.Context, svc *corev1.Service, addrs []netip.Addr, alloc *ipam.Allocator, want corev1.ServiceStatus, m marks, reqErr error) error {
	if statusEqual(svc.Status, want) && marksOf(svc) == m {
		return nil
	}
	if err := c.write(ctx, svc, want, m); err != nil {
		return err
	}
	if !statusEqual(svc.Status, want) {
		c.statusEvents(svc, ingressAddrs(svc), addrs, alloc, want, reqErr)
	}
	return nil
}

// write updates a Service's status and Herald's annotations ("" removes one).
func (c *Controller) write(ctx context.Context, svc *corev1.Service, status corev1.ServiceStatus, m marks) error {
	upd := svc.DeepCopy()
	upd.Status = status
	for k, v := range map[string]string{AnnotationAllocatedFrom: m.pools, AnnotationGrantedRequest: m.grant} {
		if v == "" {
			delete(upd.Annotations, k)
			continue
		}
		if upd.Annotations == nil {
			upd.Annotations = map[string]string{}
		}
		upd.Annotations[k] = v
	}
	if _, err := c.kube.CoreV1().Services(svc.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update status of %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return nil
}

// statusEvents records Events for a status change: a new or changed address,
// or a new failure reason. Repeats of the same state record nothing.
func (c *Controller) statusEvents(svc *corev1.Service, old, addrs []netip.Addr, alloc *ipam.Allocator, want corev1.ServiceStatus, reqErr error) {
	key := svc.Namespace + "/" + svc.Name
	c.mu.Lock()
	conflict, hadConflict := c.conflicts[key]
	delete(c.conflicts, key)
	c.mu.Unlock()
	if !slices.Equal(old, addrs) {
		switch {
		case len(old) == 0:
			c.recorder.Eventf(svc, corev1.EventTypeNormal, ReasonAllocated, "assigned %s from pool %s", joinAddrs(addrs), poolsOf(alloc, addrs))
			for _, p := range strings.Split(poolsOf(alloc, addrs), ",") {
				c.metrics.allocations.WithLabelValues(p).Inc()
			}
		case hadConflict:
			c.recorder.Eventf(svc, corev1.EventTypeWarning, ReasonAddressConflict, "%s: %s; now %s", joinAddrs(old), conflict, joinAddrs(addrs))
		default:
			c.recorder.Eventf(svc, corev1.EventTypeNormal, ReasonAddressChanged, "%s -> %s: %s", joinAddrs(old), joinAddrs(addrs), whyMoved(alloc, old, addrs))
		}
		c.log.Info("addresses changed", zap.String("service", key), zap.Stringer("from", addrList(old)), zap.Stringer("to", addrList(addrs)))
	}
	oldCond := meta.FindStatusCondition(svc.Status.Conditions, ConditionAllocated)
	newCond := meta.FindStatusCondition(want.Conditions, ConditionAllocated)
	if reqErr != nil && (oldCond == nil || oldCond.Reason != newCond.Reason || oldCond.Message != newCond.Message) {
		c.recorder.Event(svc, corev1.EventTypeWarning, newCond.Reason, newCond.Message)
		c.metrics.failures.WithLabelValues(newCond.Reason).Inc()
	}
}

// whyMoved explains why addresses a Service held were replaced.
func whyMoved(alloc *ipam.Allocator, old, now []netip.Addr) string {
	var gone []string
	for _, a := range old {
		if !slices.Contains(now, a) && alloc.PoolOf(a) == "" {
			gone = append(gone, a.String())
		}
	}
	if len(gone) > 0 {
		return "no pool contains " + strings.Join(gone, ",") + " any more"
	}
	return "the Service's request or its pool no longer allows the old address"
}

// releaseForeign clears what Herald wrote on a Service it no longer serves
// (type changed away from LoadBalancer), then frees its addresses. A Service
// Herald never served is not touched.
func (c *Controller) releaseForeign(ctx context.Context, svc *corev1.Service, alloc *ipam.Allocator) error {
	owner := ipam.Owner(svc.Namespace + "/" + svc.Name)
	ours := svc.Annotations[AnnotationAllocatedFrom] != "" || meta.FindStatusCondition(svc.Status.Conditions, ConditionAllocated) != nil
	if ours {
		st := *svc.Status.DeepCopy()
		st.LoadBalancer.Ingress = nil
		meta.RemoveStatusCondition(&st.Conditions, ConditionAllocated)
		meta.RemoveStatusCondition(&st.Conditions, state.ConditionAnnounced)
		if err := c.write(ctx, svc, st, marks{}); err != nil {
			return err
		}
		c.recorder.Eventf(svc, corev1.EventTypeNormal, ReasonReleased, "released %s: the Service is no longer a LoadBalancer served by Herald", joinAddrs(ingressAddrs(svc)))
	}
	if alloc != nil && len(alloc.Addresses(owner)) > 0 {
		c.release(owner)
	}
	return nil
}

// reportNoConfig marks a Service without an address as waiting for a valid
// config. Addresses a Service has are never touched without one.
func (c *Controller) reportNoConfig(ctx context.Context, svc *corev1.Service) error {
	if addrs := ingressAddrs(svc); len(addrs) > 0 {
		// Only the Announced condition follows what the speakers do.
		want := *svc.Status.DeepCopy()
		key := svc.Namespace + "/" + svc.Name
		if recheck := c.setAnnounced(&want, key, svc.Generation, addrs); recheck > 0 {
			c.queue.AddAfter(key, recheck)
		}
		return c.apply(ctx, svc, addrs, nil, want, marksOf(svc), nil)
	}
	c.mu.Lock()
	why := c.cfgErr
	c.mu.Unlock()
	want := *svc.Status.DeepCopy()
	meta.SetStatusCondition(&want.Conditions, metav1.Condition{
		Type: ConditionAllocated, Status: metav1.ConditionFalse, Reason: ReasonConfigInvalid,
		Message: "no address is handed out while the configuration is invalid: " + why, ObservedGeneration: svc.Generation,
	})
	return c.apply(ctx, svc, nil, nil, want, marksOf(svc), fmt.Errorf("%s", why))
}

func (c *Controller) release(owner ipam.Owner) {
	c.forgetAnnounced(string(owner))
	c.mu.Lock()
	alloc := c.alloc
	delete(c.pending, string(owner))
	delete(c.conflicts, string(owner))
	if _, ok := c.held[string(owner)]; ok {
		delete(c.held, string(owner))
		c.metrics.heldServices.Set(float64(len(c.held)))
		if len(c.held) == 0 {
			go c.configChanged() // nothing is held any more: the document is accepted
		}
	}
	c.mu.Unlock()
	if alloc == nil {
		return
	}
	if freed := alloc.Release(owner); len(freed) > 0 {
		c.metrics.observePools(alloc.Stats())
		c.addressesFreed()
	}
}

func (c *Controller) setPending(key string, pending bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if pending {
		c.pending[key] = true
	} else {
		delete(c.pending, key)
	}
}

// addressesFreed retries every Service waiting for an address.
func (c *Controller) addressesFreed() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for key := range c.pending {
		c.queue.Add(key)
	}
}

func statusEqual(a, b corev1.ServiceStatus) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func poolsOf(alloc *ipam.Allocator, addrs []netip.Addr) string {
	var pools []string
	for _, a := range addrs {
		if alloc == nil {
			break
		}
		if p := alloc.PoolOf(a); p != "" && !slices.Contains(pools, p) {
			pools = append(pools, p)
		}
	}
	return strings.Join(pools, ",")
}

type addrList []netip.Addr

func (l addrList) String() string { return joinAddrs(l) }

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
