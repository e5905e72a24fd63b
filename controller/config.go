package controller

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/ipam"
)

// ConfigKey is the key of the ConfigMap that holds Herald's configuration.
const ConfigKey = "config.yaml"

var everything = labels.Everything()

func (c *Controller) isConfigMap(obj any) bool {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	cm, ok := obj.(*corev1.ConfigMap)
	return ok && cm.Namespace == c.opts.Namespace && cm.Name == c.opts.ConfigName
}

// configChanged loads the ConfigMap. A valid new config replaces the pools
// (the first one also rebuilds allocations from Service status) and every
// Service is looked at again; a missing or invalid one is reported and the
// last valid config stays in force.
func (c *Controller) configChanged() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started {
		return // Run loads the config once the caches are in sync
	}
	text, cfg, err := c.readConfig()
	if err != nil {
		c.metrics.configLoaded(false)
		if err.Error() != c.cfgErr {
			c.cfgErr = err.Error()
			c.log.Error("configuration not loaded; the last valid one stays in force", zap.Error(err))
			if cm, gerr := c.configMaps.ConfigMaps(c.opts.Namespace).Get(c.opts.ConfigName); gerr == nil {
				c.recorder.Eventf(cm, corev1.EventTypeWarning, "InvalidConfig", "%s; the last valid configuration stays in force", err)
			}
		}
		c.enqueueAllLocked() // pending Services report ConfigInvalid
		return
	}
	c.metrics.configLoaded(true)
	wasBroken := c.cfgErr != ""
	c.cfgErr = ""
	if text == c.cfgText && c.alloc != nil {
		if wasBroken { // the config is back: Services waiting for it go on
			c.enqueueAllLocked()
		}
		return
	}
	c.cfgText = text
	if c.alloc == nil {
		c.alloc = ipam.New(cfg.Pools)
		c.restoreLocked()
	} else {
		moved := c.alloc.SetPools(cfg.Pools)
		for owner, addrs := range moved {
			c.log.Info("pool no longer allows addresses", zap.String("service", string(owner)), zap.Any("ip", addrs))
		}
	}
	c.metrics.observePools(c.alloc.Stats())
	c.log.Info("configuration loaded", zap.Int("pools", len(cfg.Pools)))
	if cm, err := c.configMaps.ConfigMaps(c.opts.Namespace).Get(c.opts.ConfigName); err == nil {
		c.recorder.Eventf(cm, corev1.EventTypeNormal, "ConfigLoaded", "loaded %d pools", len(cfg.Pools))
	}
	c.enqueueAllLocked()
}

func (c *Controller) readConfig() (string, *config.Config, error) {
	cm, err := c.configMaps.ConfigMaps(c.opts.Namespace).Get(c.opts.ConfigName)
	if apierrors.IsNotFound(err) {
		return "", nil, fmt.Errorf("ConfigMap %s/%s not found", c.opts.Namespace, c.opts.ConfigName)
	}
	if err != nil {
		return "", nil, err
	}
	text, ok := cm.Data[ConfigKey]
	if !ok {
		return "", nil, fmt.Errorf("ConfigMap %s/%s has no key %s", c.opts.Namespace, c.opts.ConfigName, ConfigKey)
	}
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		return "", nil, fmt.Errorf("ConfigMap %s/%s: %w", c.opts.Namespace, c.opts.ConfigName, err)
	}
	return text, cfg, nil
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
					c.conflicts[key] = err.Error()
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
