package controller

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/ipam"
)

// The blast-radius guard. A valid new document that would take an address
// from a Service holding it (its pool removed, narrowed or no longer
// serving the Service) or stop announcing it (no L2 or no BGP advertisement
// left for it) is held for those Services until the user confirms it by
// annotating the ConfigMap with the document's hash: they keep their
// addresses (here) and announcements (the speakers keep the accepted
// document for them), and everything else follows the new document.

// ReasonConfigChangeHeld is the condition reason and Event reason of a
// Service kept as it was by a held change, and of the Event on the ConfigMap.
const ReasonConfigChangeHeld = "ConfigChangeHeld"

var errChangeHeld = errors.New("configuration change held")

// guardLocked returns the Services that the configuration in force would
// take an address from or stop announcing, with why, unless the user has
// confirmed it. moved is what SetPools reported.
func (c *Controller) guardLocked(st config.State, moved map[ipam.Owner][]netip.Addr) map[string]string {
	if st.Accepted == nil {
		return nil
	}
	held := map[string]string{}
	add := func(key string, a netip.Addr, why string) {
		if _, ok := held[key]; !ok {
			held[key] = a.String() + ": " + why
		}
	}
	for owner, addrs := range moved {
		for _, a := range addrs {
			why := "no pool contains it any more"
			if p := c.alloc.PoolOf(a); p != "" {
				why = "pool " + p + " would no longer serve the Service"
			}
			add(string(owner), a, why)
		}
	}
	svcs, _ := c.services.List(everything)
	for _, svc := range svcs {
		if !c.serves(svc) {
			continue
		}
		for _, a := range ingressAddrs(svc) {
			l2Was, bgpWas := st.Accepted.Announces(a)
			l2, bgp := st.Config.Announces(a)
			switch {
			case l2Was && !l2:
				add(svc.Namespace+"/"+svc.Name, a, "no L2 advertisement would announce it")
			case bgpWas && !bgp:
				add(svc.Namespace+"/"+svc.Name, a, "no BGP advertisement would announce it")
			}
		}
	}
	return held
}

// maxNamed bounds the Services an Event on the ConfigMap names.
const maxNamed = 5

// reportHeldLocked reports a held change (once per document and count) and
// its confirmation.
func (c *Controller) reportHeldLocked(st config.State, user *corev1.ConfigMap) {
	c.metrics.heldServices.Set(float64(len(c.held)))
	report := fmt.Sprintf("%s/%d", st.Hash, len(c.held))
	if len(c.held) == 0 {
		if c.heldReport != "" && user != nil && st.Confirmed(user) {
			c.recorder.Eventf(user, corev1.EventTypeNormal, "ConfigChangeConfirmed", "configuration %s confirmed: Services it takes addresses from move or lose them now", st.Hash)
		}
		c.heldReport = ""
		return
	}
	if report == c.heldReport {
		return
	}
	c.heldReport = report
	keys := make([]string, 0, len(c.held))
	for k := range c.held {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	c.log.Warn("configuration change held: Services keep their addresses and announcements until it is confirmed",
		zap.String("hash", st.Hash), zap.Int("services", len(keys)), zap.Strings("service", keys[:min(len(keys), 100)]),
		zap.String("confirm", c.confirmCommand(st.Hash)))
	if user == nil {
		return
	}
	named := make([]string, 0, maxNamed)
	for _, k := range keys[:min(len(keys), maxNamed)] {
		named = append(named, fmt.Sprintf("%s (%s)", k, c.held[k]))
	}
	more := ""
	if len(keys) > maxNamed {
		more = fmt.Sprintf(" and %d more", len(keys)-maxNamed)
	}
	c.recorder.Eventf(user, corev1.EventTypeWarning, ReasonConfigChangeHeld,
		"configuration %s would take addresses from or stop announcing %d Services, which keep them until you confirm: %s. Kept: %s%s",
		st.Hash, len(keys), c.confirmCommand(st.Hash), strings.Join(named, ", "), more)
}

// confirmCommand is the one kubectl command that confirms document hash.
func (c *Controller) confirmCommand(hash string) string {
	return fmt.Sprintf("kubectl -n %s annotate configmap %s %s=%s --overwrite", c.opts.Namespace, c.opts.ConfigName, config.ConfirmAnnotation, hash)
}

// heldError says why a held Service keeps its address.
func (c *Controller) heldError(key string) error {
	c.mu.Lock()
	why, hash := c.held[key], c.inForce.Hash
	c.mu.Unlock()
	if why == "" {
		return nil
	}
	return fmt.Errorf("%w: configuration %s would change it (%s); confirm with: %s", errChangeHeld, hash, why, c.confirmCommand(hash))
}
