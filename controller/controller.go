// Package controller hands out, keeps and releases the external addresses of
// LoadBalancer Services. It watches Services, Namespaces and Herald's
// ConfigMap, allocates through ipam, and writes status.loadBalancer.ingress,
// a condition, an annotation and Events. Service status is the source of
// truth: the allocator is rebuilt from it before any worker runs.
package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/ipam"
)

// Options say which Services and which ConfigMap the controller serves.
type Options struct {
	// Namespace and ConfigName locate the ConfigMap (key config.yaml).
	Namespace, ConfigName string
	// LBClass: "" serves Services without spec.loadBalancerClass; otherwise
	// exactly the Services of that class.
	LBClass string
}

// Controller allocates Service addresses. Build it with New, then Run it.
type Controller struct {
	kube       kubernetes.Interface
	services   corelisters.ServiceLister
	namespaces corelisters.NamespaceLister
	configMaps corelisters.ConfigMapLister
	synced     []cache.InformerSynced
	queue      workqueue.TypedRateLimitingInterface[string]
	recorder   record.EventRecorder
	metrics    *Metrics
	log        *zap.Logger
	opts       Options

	mu         sync.Mutex
	started    bool              // Run is between its initial config load and its end; handlers may reload
	loader     config.Loader     // the one way configuration is read, shared with the speakers
	inForce    config.State      // the configuration in force
	alloc      *ipam.Allocator   // nil until the first valid config
	cfgErr     string            // last problem reported on the ConfigMap
	held       map[string]string // Services a held change keeps as they are, and why
	heldReport string            // the held change last reported
	conflicts  map[string]string // why a Service lost an address: an older Service claimed it, a device answers for it
	pending    map[string]bool   // Services waiting for an address
	announced  *announcements    // nil unless WatchSpeakerStates
	ready      bool
}

// New builds a controller from shared informers; it starts nothing.
func New(kube kubernetes.Interface, services coreinformers.ServiceInformer, namespaces coreinformers.NamespaceInformer,
	configMaps coreinformers.ConfigMapInformer, recorder record.EventRecorder, metrics *Metrics, log *zap.Logger, opts Options,
) *Controller {
	c := &Controller{
		kube:       kube,
		services:   services.Lister(),
		namespaces: namespaces.Lister(),
		configMaps: configMaps.Lister(),
		synced:     []cache.InformerSynced{services.Informer().HasSynced, namespaces.Informer().HasSynced, configMaps.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "services"}),
		recorder:  recorder,
		metrics:   metrics,
		log:       log,
		opts:      opts,
		conflicts: map[string]string{},
		pending:   map[string]bool{},
	}
	_, _ = services.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		DeleteFunc: c.enqueue,
	})
	_, _ = namespaces.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(old, obj any) { c.namespaceChanged(old.(*corev1.Namespace), obj.(*corev1.Namespace)) },
	})
	_, _ = configMaps.Informer().AddEventHandler(cache.FilteringResourceEventHandler{
		FilterFunc: c.isConfigMap,
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { c.configChanged() },
			UpdateFunc: func(any, any) { c.configChanged() },
			DeleteFunc: func(any) { c.configChanged() },
		},
	})
	return c
}

func (c *Controller) enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	c.queue.Add(key)
}

// namespaceChanged re-checks the namespace's Services when its labels change
// (pools may select namespaces by label).
func (c *Controller) namespaceChanged(old, ns *corev1.Namespace) {
	if fmt.Sprint(old.Labels) == fmt.Sprint(ns.Labels) {
		return
	}
	svcs, err := c.services.Services(ns.Name).List(everything)
	if err != nil {
		return
	}
	for _, s := range svcs {
		c.enqueue(s)
	}
}

// Run waits for the caches, loads the config and rebuilds allocations from
// Service status, then runs workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	defer utilruntime.HandleCrash()
	defer c.queue.ShutDown()
	c.log.Info("waiting for caches")
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return errors.New("caches did not sync")
	}
	c.mu.Lock()
	c.started = true
	c.mu.Unlock()
	c.configChanged()
	c.mu.Lock()
	c.ready = true
	c.mu.Unlock()
	c.log.Info("starting workers", zap.Int("workers", workers))
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() { wait.UntilWithContext(ctx, c.runWorker, time.Second) })
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
	c.mu.Lock()
	c.started = false // no late reload writes the record for a stopped controller
	c.mu.Unlock()
	return nil
}

// Ready reports whether the controller has rebuilt its state and runs workers.
func (c *Controller) Ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ready
}

func (c *Controller) runWorker(ctx context.Context) {
	for c.processNext(ctx) {
	}
}

func (c *Controller) processNext(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	err := c.sync(ctx, key)
	var term *TerminalError
	switch {
	case err == nil:
		c.queue.Forget(key)
	case errors.As(err, &term):
		c.queue.Forget(key)
		c.log.Debug("not retried", zap.String("service", key), zap.Error(err))
	default:
		c.log.Info("sync failed, will retry", zap.String("service", key), zap.Error(err))
		c.queue.AddRateLimited(key)
	}
	return true
}

// TerminalError is a sync failure that retrying cannot fix; the Service is
// looked at again when it, the config or the pools change.
type TerminalError struct{ Err error }

func (e *TerminalError) Error() string { return e.Err.Error() }
func (e *TerminalError) Unwrap() error { return e.Err }

// serves reports whether svc is one of ours.
func (c *Controller) serves(svc *corev1.Service) bool {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	class := ""
	if svc.Spec.LoadBalancerClass != nil {
		class = *svc.Spec.LoadBalancerClass
	}
	return class == c.opts.LBClass
}

// Trim is an informer transform that drops managedFields, which the
// controller never reads and which are a large part of a cached object.
func Trim(obj any) (any, error) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}
