package controller

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/ipam"
)

var everything = labels.Everything()

func (c *Controller) isConfigMap(obj any) bool {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	cm, ok := obj.(*corev1.ConfigMap)
	return ok && cm.Namespace == c.opts.Namespace && (cm.Name == c.opts.ConfigName || cm.Name == config.RecordName(c.opts.ConfigName))
}

// configChanged loads the configuration (config.Loader: the user's
// ConfigMap, else the record's last valid document) and puts it in force:
// the first one also rebuilds allocations from Service status, under the
// document the addresses were accepted under. What a new document would
// take from Services that hold addresses is held until the user confirms
// it (see guard.go). Every Service is looked at again.
func (c *Controller) configChanged() {
	c.mu.Lock()
	if !c.started {
		c.mu.Unlock()
		return // Run loads the config once the caches are in sync
	}
	user, record := c.configMapsNow()
	st := c.loader.Load(user, record)
	c.reportLoadLocked(st, user)
	if st.Config != nil && (st.Text != c.inForce.Text || st.AcceptedText != c.inForce.AcceptedText || c.alloc == nil) {
		c.applyLocked(st, user)
	}
	rec := c.recordWantLocked(record)
	c.enqueueAllLocked()
	c.mu.Unlock()
	if rec != nil {
		c.writeRecord(*rec)
	}
}

// configMapsNow returns the user's ConfigMap and the record, nil when absent.
func (c *Controller) configMapsNow() (user, record *corev1.ConfigMap) {
	cms := c.configMaps.ConfigMaps(c.opts.Namespace)
	user, _ = cms.Get(c.opts.ConfigName)
	record, _ = cms.Get(config.RecordName(c.opts.ConfigName))
	return user, record
}

// reportLoadLocked reports, once per distinct problem, that the user's
// document is not in force and what runs instead.
func (c *Controller) reportLoadLocked(st config.State, user *corev1.ConfigMap) {
	c.metrics.configLoaded(st.Err == nil)
	if st.Err == nil {
		c.cfgErr = ""
		return
	}
	msg := fmt.Sprintf("ConfigMap %s/%s: %v", c.opts.Namespace, c.opts.ConfigName, st.Err)
	if msg == c.cfgErr {
		return
	}
	c.cfgErr = msg
	instead := "no valid configuration has been loaded yet, so no address is handed out"
	if st.Config != nil {
		instead = fmt.Sprintf("the last valid configuration (%s) stays in force: Services keep their addresses, new ones wait", st.Hash)
	}
	c.log.Error("configuration not loaded", zap.Error(st.Err), zap.String("inForce", st.Hash))
	if user != nil {
		c.recorder.Eventf(user, corev1.EventTypeWarning, "InvalidConfig", "%v; %s", st.Err, instead)
	}
}

// applyLocked puts a configuration in force.
func (c *Controller) applyLocked(st config.State, user *corev1.ConfigMap) {
	var moved map[ipam.Owner][]netip.Addr
	if c.alloc == nil {
		base := st.Config
		if st.Accepted != nil {
			base = st.Accepted // the addresses in status were granted under it
		}
		c.alloc = ipam.New(base.Pools)
		c.restoreLocked()
		if base != st.Config {
			moved = c.alloc.SetPools(st.Config.Pools)
		}
	} else {
		moved = c.alloc.SetPools(st.Config.Pools)
	}
	c.held = c.guardLocked(st, moved)
	c.reportHeldLocked(st, user)
	if st.Text != c.inForce.Text {
		c.log.Info("configuration in force", zap.String("hash", st.Hash), zap.Int("pools", len(st.Config.Pools)))
		if user != nil && st.Err == nil {
			c.recorder.Eventf(user, corev1.EventTypeNormal, "ConfigLoaded", "configuration %s in force: %d pools", st.Hash, len(st.Config.Pools))
		}
		if w := st.Config.Warnings; len(w) > 0 {
			c.log.Warn("configuration valid, with warnings", zap.String("hash", st.Hash), zap.Strings("warnings", w))
			if user != nil && st.Err == nil {
				c.recorder.Eventf(user, corev1.EventTypeWarning, "ConfigWarning", "configuration %s is valid, but: %s", st.Hash, strings.Join(w, "; "))
			}
		}
	}
	c.inForce = st
	c.metrics.observePools(c.alloc.Stats())
}

// restoreLocked claims every address our Services already show, so that no
// worker can hand one of them out again: unchanged Services first, then
// edited ones, each oldest first. A Service whose address is held by one
// restored before it is remembered; its sync moves it.
func (c *Controller) restoreLocked() {
	svcs, err := c.services.List(everything)
	if err != nil {
		return
	}
	slices.SortFunc(svcs, func(a, b *corev1.Service) int {
		if d := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); d != 0 {
			return d
		}
		return cmp.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	// Services whose request is still the one their addresses were granted
	// under go first: when an edit made while no controller ran broke a
	// sharing, the edited Service is the one that moves.
	restored := 0
	for _, unchanged := range []bool{true, false} {
		for _, svc := range svcs {
			addrs := ingressAddrs(svc)
			if !c.serves(svc) || len(addrs) == 0 {
				continue
			}
			req, _ := RequestFor(svc, c.namespaceLabels(svc.Namespace))
			if (svc.Annotations[AnnotationGrantedRequest] == GrantKey(req)) != unchanged {
				continue
			}
			key := svc.Namespace + "/" + svc.Name
			if err := c.alloc.Restore(ipam.Owner(key), addrs, req); err != nil {
				c.log.Warn("address not restored", zap.String("service", key), zap.Error(err))
				if errors.Is(err, ipam.ErrAddressInUse) {
					c.conflicts[key] = "claimed by an older Service (" + err.Error() + ")"
				}
				continue
			}
			restored++
		}
	}
	c.log.Info("allocations restored from Service status", zap.Int("services", restored))
}

// enqueueAllLocked queues every Service we serve.
func (c *Controller) enqueueAllLocked() {
	svcs, err := c.services.List(everything)
	if err != nil {
		return
	}
	for _, s := range svcs {
		if c.serves(s) || s.Annotations[AnnotationAllocatedFrom] != "" {
			c.enqueue(s)
		}
	}
}

func (c *Controller) namespaceLabels(ns string) map[string]string {
	n, err := c.namespaces.Get(ns)
	if err != nil {
		return nil
	}
	return n.Labels
}

// ingressAddrs are the addresses in a Service's status.
func ingressAddrs(svc *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(in.IP); err == nil {
			out = append(out, a)
		}
	}
	return out
}
