package controller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"

	"github.com/heraldlb/herald/controller"
)

// kind is what a churned Service asks for; edits keep a Service within its kind.
type kind int

const (
	plainKind     kind = iota // nothing: SingleStack IPv4 from "main"
	familyKind                // SingleStack IPv6, PreferDualStack or RequireDualStack
	tightKind                 // herald.dev/pool: tight (mostly exhausted)
	requestedKind             // herald.dev/ips or spec.loadBalancerIP from "fixed", some with sharing key "fixed"
	sharedKind                // sharing key grp-N, random ports, some Local with the group's or their own selector
	brokenKind                // an invalid request or a pool that does not exist
)

// churnLimits bound one run of churn: Services created first (in
// parallel), then at most so many of each operation.
type churnLimits struct{ initial, creates, deletes, edits, retypes int }

func (l churnLimits) total() int { return l.initial + l.creates + l.deletes + l.edits + l.retypes }

// churn creates, deletes and edits Services at random.
type churn struct {
	e     *env
	rnd   *rand.Rand
	live  []string        // LoadBalancer Services of ours
	kinds map[string]kind // by name
	seq   int
	// counts over all runs; edits change a request, touches do not
	created, deleted, edits, touches, retyped int
	initialTook                               time.Duration
	progress                                  atomic.Int64 // operations done, for the restarter
}

func newChurn(e *env, rnd *rand.Rand) *churn {
	return &churn{e: e, rnd: rnd, kinds: map[string]kind{}}
}

// run creates the initial Services, then churns until ctx ends or every
// limit is reached.
func (c *churn) run(ctx context.Context, l churnLimits) {
	var initial []*corev1.Service
	for range l.initial {
		initial = append(initial, c.newSpec())
	}
	begin := time.Now()
	work := make(chan *corev1.Service)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for s := range work {
				if err := c.create(ctx, s); err != nil && ctx.Err() == nil {
					c.e.t.Error(err)
				}
				c.progress.Add(1)
			}
		})
	}
	for _, s := range initial {
		work <- s
	}
	close(work)
	wg.Wait()
	c.created += len(initial)
	if len(initial) > 0 {
		c.initialTook = time.Since(begin)
	}

	l.creates += c.created
	l.deletes += c.deleted
	l.edits += c.edits + c.touches
	l.retypes += c.retyped
	for ctx.Err() == nil {
		canCreate, canDelete := c.created < l.creates, c.deleted < l.deletes && len(c.live) > 0
		canEdit, canRetype := c.edits+c.touches < l.edits && len(c.live) > 0, c.retyped < l.retypes && len(c.live) > 0
		if !canCreate && !canDelete && !canEdit && !canRetype {
			return
		}
		var err error
		switch n := c.rnd.IntN(100); {
		case n < 25 && canCreate:
			s := c.newSpec()
			if err = c.create(ctx, s); err == nil {
				c.created++
			}
		case n < 45 && canDelete:
			name := c.pick()
			if err = c.delete(ctx, name); err == nil {
				c.forget(name)
				c.deleted++
			}
		case n < 48 && canRetype:
			err = c.retype(ctx)
		case canEdit:
			err = c.edit(ctx)
		default:
			continue
		}
		if err != nil && ctx.Err() == nil {
			c.e.t.Errorf("churn: %v", err)
		}
		c.progress.Add(1)
		sleep(ctx, time.Duration(30+c.rnd.IntN(90))*time.Millisecond)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (c *churn) pick() string { return c.live[c.rnd.IntN(len(c.live))] }

func (c *churn) forget(name string) {
	c.live = slices.DeleteFunc(c.live, func(n string) bool { return n == name })
}

var portChoices = []corev1.ServicePort{
	{Protocol: corev1.ProtocolTCP, Port: 80}, {Protocol: corev1.ProtocolTCP, Port: 443},
	{Protocol: corev1.ProtocolUDP, Port: 53}, {Protocol: corev1.ProtocolTCP, Port: 53},
	{Protocol: corev1.ProtocolTCP, Port: 8080}, {Protocol: corev1.ProtocolUDP, Port: 9000},
	{Protocol: corev1.ProtocolTCP, Port: 9001}, {Protocol: corev1.ProtocolTCP, Port: 9002},
}

// randomPorts picks one or two ports; few choices make clashes within a sharing group common.
func (c *churn) randomPorts() svcOpt {
	idx := c.rnd.Perm(len(portChoices))[:1+c.rnd.IntN(2)]
	return func(s *corev1.Service) {
		s.Spec.Ports = nil
		for _, i := range idx {
			p := portChoices[i]
			p.Name = strings.ToLower(fmt.Sprintf("%s-%d", p.Protocol, p.Port))
			p.TargetPort = intstr.FromInt32(8080)
			s.Spec.Ports = append(s.Spec.Ports, p)
		}
	}
}

func withSelector(app string) svcOpt {
	return func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": app} }
}

// newService is a LoadBalancer Service of e's class that allocates no node ports.
func newService(e *env, name string, opts ...svcOpt) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
		Spec: corev1.ServiceSpec{
			Type:                          corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass:             &e.class,
			AllocateLoadBalancerNodePorts: new(false),
			Selector:                      map[string]string{"app": name},
			Ports:                         []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// newSpec makes a random Service and records it as live.
func (c *churn) newSpec() *corev1.Service {
	c.seq++
	name := fmt.Sprintf("s%03d", c.seq)
	var k kind
	var opts []svcOpt
	switch n := c.rnd.IntN(100); {
	case n < 27:
		k = plainKind
	case n < 45:
		k = familyKind
		opts = append(opts, c.randomFamilies(true))
	case n < 53:
		k = tightKind
		opts = append(opts, withAnnotation(controller.AnnotationPool, "tight"), c.randomFamilies(false))
	case n < 67:
		k = requestedKind
		opts = append(opts, c.randomRequest())
		if c.rnd.IntN(2) == 0 {
			opts = append(opts, withAnnotation(controller.AnnotationSharingKey, "fixed"), c.randomPorts())
		}
	case n < 97:
		k = sharedKind
		group := fmt.Sprint("grp-", c.rnd.IntN(6))
		opts = append(opts, withAnnotation(controller.AnnotationSharingKey, group), c.randomPorts())
		if c.rnd.IntN(10) < 3 {
			opts = append(opts, withLocal())
		}
		if c.rnd.IntN(10) < 6 {
			opts = append(opts, withSelector(group))
		}
	default:
		k = brokenKind
		switch c.rnd.IntN(3) {
		case 0:
			opts = append(opts, withAnnotation(controller.AnnotationIPs, "not-an-ip"))
		case 1:
			opts = append(opts, withAnnotation(controller.AnnotationPool, "nope"))
		default:
			opts = append(opts, withLoadBalancerIP("198.18.8.1"), withAnnotation(controller.AnnotationIPs, "198.18.8.2"))
		}
	}
	c.live = append(c.live, name)
	c.kinds[name] = k
	return newService(c.e, name, opts...)
}

// randomFamilies: SingleStack IPv6, PreferDualStack either way round, or
// (with require) RequireDualStack; without require sometimes SingleStack IPv4.
func (c *churn) randomFamilies(require bool) svcOpt {
	v4, v6 := corev1.IPv4Protocol, corev1.IPv6Protocol
	switch n := c.rnd.IntN(4); {
	case n == 0:
		return withFamilies(corev1.IPFamilyPolicySingleStack, v6)
	case n == 1:
		return withFamilies(corev1.IPFamilyPolicyPreferDualStack, v4, v6)
	case n == 2:
		return withFamilies(corev1.IPFamilyPolicyPreferDualStack, v6, v4)
	case require:
		if c.rnd.IntN(2) == 0 {
			return withFamilies(corev1.IPFamilyPolicyRequireDualStack, v6, v4)
		}
		return withFamilies(corev1.IPFamilyPolicyRequireDualStack, v4, v6)
	default:
		return withFamilies(corev1.IPFamilyPolicySingleStack, v4)
	}
}

// randomRequest asks for addresses of pool "fixed": 30 of its addresses per
// family for about 60 Services, so some requests clash.
func (c *churn) randomRequest() svcOpt {
	n := 1 + c.rnd.IntN(30)
	v4, v6 := fmt.Sprintf("198.18.8.%d", n), fmt.Sprintf("2001:db8:72::%x", n)
	switch c.rnd.IntN(5) {
	case 0:
		return func(s *corev1.Service) {
			withFamilies(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol)(s)
			withAnnotation(controller.AnnotationIPs, v6)(s)
		}
	case 1:
		return func(s *corev1.Service) {
			withFamilies(corev1.IPFamilyPolicyRequireDualStack, corev1.IPv4Protocol, corev1.IPv6Protocol)(s)
			withAnnotation(controller.AnnotationIPs, v4+","+v6)(s)
		}
	case 2:
		return withLoadBalancerIP(v4)
	default:
		return withAnnotation(controller.AnnotationIPs, v4)
	}
}

// edit changes one live Service's request within its kind, or touches an
// annotation Herald does not read (which must move nothing).
func (c *churn) edit(ctx context.Context) error {
	name := c.pick()
	if c.rnd.IntN(100) < 15 || c.kinds[name] == brokenKind {
		c.touches++
		return c.annotate(ctx, name, "example.com/touched", strconv.Itoa(c.touches))
	}
	c.edits++
	switch c.kinds[name] {
	case plainKind, familyKind, tightKind:
		return c.update(ctx, name, func(s *corev1.Service) {
			if s.Annotations[controller.AnnotationPool] == "tight" {
				delete(s.Annotations, controller.AnnotationPool)
			} else {
				withAnnotation(controller.AnnotationPool, "tight")(s)
			}
		})
	case requestedKind:
		n := 1 + c.rnd.IntN(30)
		toggleKey, ports := c.rnd.IntN(3) == 0, c.randomPorts()
		return c.update(ctx, name, func(s *corev1.Service) {
			switch {
			case toggleKey && s.Annotations[controller.AnnotationSharingKey] != "":
				delete(s.Annotations, controller.AnnotationSharingKey)
			case toggleKey:
				withAnnotation(controller.AnnotationSharingKey, "fixed")(s)
				ports(s)
			case s.Spec.LoadBalancerIP != "":
				s.Spec.LoadBalancerIP = fmt.Sprintf("198.18.8.%d", n)
			default:
				var ips []string
				for _, f := range s.Spec.IPFamilies {
					if f == corev1.IPv4Protocol {
						ips = append(ips, fmt.Sprintf("198.18.8.%d", n))
					} else {
						ips = append(ips, fmt.Sprintf("2001:db8:72::%x", n))
					}
				}
				if len(s.Spec.IPFamilies) == 2 && s.Spec.IPFamilies[0] == corev1.IPv6Protocol {
					slices.Reverse(ips)
				}
				s.Annotations[controller.AnnotationIPs] = strings.Join(ips, ",")
			}
		})
	default: // sharedKind
		choice, group, ports := c.rnd.IntN(10), fmt.Sprint("grp-", c.rnd.IntN(6)), c.randomPorts()
		return c.update(ctx, name, func(s *corev1.Service) {
			switch {
			case choice < 4:
				s.Annotations[controller.AnnotationSharingKey] = group
			case choice < 7:
				ports(s)
			case choice < 9:
				if s.Spec.Selector["app"] == s.Name {
					withSelector(s.Annotations[controller.AnnotationSharingKey])(s)
				} else {
					withSelector(s.Name)(s)
				}
			case s.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal:
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
				s.Spec.HealthCheckNodePort = 0
			default:
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			}
		})
	}
}

// retype turns a plain or family Service into a ClusterIP Service, which
// releases its addresses.
func (c *churn) retype(ctx context.Context) error {
	var cands []string
	for _, n := range c.live {
		if k := c.kinds[n]; k == plainKind || k == familyKind {
			cands = append(cands, n)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	name := cands[c.rnd.IntN(len(cands))]
	c.forget(name)
	c.retyped++
	return c.update(ctx, name, func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeClusterIP
		s.Spec.LoadBalancerClass = nil
		s.Spec.AllocateLoadBalancerNodePorts = nil
		s.Spec.ExternalTrafficPolicy = ""
		s.Spec.HealthCheckNodePort = 0
		for i := range s.Spec.Ports {
			s.Spec.Ports[i].NodePort = 0
		}
	})
}

// The API calls retry what a busy API server may answer: conflicts with the
// controller's status writes, timeouts, throttling.
var churnBackoff = wait.Backoff{Steps: 30, Duration: 20 * time.Millisecond, Factor: 1.3, Jitter: 0.2, Cap: time.Second}

func transient(err error) bool {
	return apierrors.IsConflict(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err)
}

func (c *churn) create(ctx context.Context, s *corev1.Service) error {
	tries := 0
	err := retry.OnError(churnBackoff, transient, func() error {
		tries++
		_, err := c.e.kube.CoreV1().Services(c.e.ns).Create(ctx, s, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) && tries > 1 {
			return nil // an earlier try that timed out made it
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("create %s: %w", s.Name, err)
	}
	return nil
}

func (c *churn) delete(ctx context.Context, name string) error {
	tries := 0
	err := retry.OnError(churnBackoff, transient, func() error {
		tries++
		err := c.e.kube.CoreV1().Services(c.e.ns).Delete(ctx, name, metav1.DeleteOptions{})
		if apierrors.IsNotFound(err) && tries > 1 {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// update applies mutate to the latest version of a Service.
func (c *churn) update(ctx context.Context, name string, mutate func(*corev1.Service)) error {
	err := retry.OnError(churnBackoff, transient, func() error {
		s, err := c.e.kube.CoreV1().Services(c.e.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		mutate(s)
		_, err = c.e.kube.CoreV1().Services(c.e.ns).Update(ctx, s, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("update %s: %w", name, err)
	}
	return nil
}

func (c *churn) annotate(ctx context.Context, name, key, value string) error {
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{key: value}}})
	err := retry.OnError(churnBackoff, transient, func() error {
		_, err := c.e.kube.CoreV1().Services(c.e.ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("annotate %s: %w", name, err)
	}
	return nil
}
