package speaker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// PasswordSecret is the Secret for BGP passwords (a key per peer) that
// manifests/ lets the speaker read; other names must be added to Role
// herald-speaker.
const PasswordSecret = "herald-bgp-passwords"

// Secrets reads the BGP password Secrets the configuration names, each
// with its own name-selected watch, so the speaker never lists the
// namespace's other Secrets and its Role can name exactly the Secrets it
// may read (resourceNames: Kubernetes authorizes a list or watch with a
// metadata.name field selector against them).
type Secrets struct {
	kube      kubernetes.Interface
	namespace string
	changed   func()

	mu      sync.Mutex
	ctx     context.Context
	watches map[string]*secretWatch
}

type secretWatch struct {
	informer cache.SharedIndexInformer
	stop     context.CancelFunc
	mu       sync.Mutex
	err      error // the last list or watch error (Forbidden: not in the Role)
}

// NewSecrets reads Secrets of namespace; changed runs when one changes.
func NewSecrets(kube kubernetes.Interface, namespace string) *Secrets {
	return &Secrets{kube: kube, namespace: namespace, watches: map[string]*secretWatch{}, ctx: context.Background()}
}

// Start sets the context the watches run in (until it ends).
func (s *Secrets) Start(ctx context.Context, changed func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ctx, s.changed = ctx, changed
}

// errNotRead is returned until a Secret's first list completes.
var errNotRead = errors.New("not read yet")

// Get returns the named Secret, starting its watch on first use.
func (s *Secrets) Get(name string) (*corev1.Secret, error) {
	w := s.watch(name)
	if !w.informer.HasSynced() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.err != nil {
			return nil, w.err
		}
		return nil, errNotRead
	}
	obj, found, err := w.informer.GetStore().GetByKey(s.namespace + "/" + name)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, apierrors.NewNotFound(corev1.Resource("secrets"), name)
	}
	return obj.(*corev1.Secret), nil
}

// Wait starts the named Secret's watch and waits (at most timeout) until
// it was read once or could not be: sessions opened right after start have
// their passwords.
func (s *Secrets) Wait(ctx context.Context, name string, timeout time.Duration) {
	w := s.watch(name)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for !w.informer.HasSynced() {
		w.mu.Lock()
		failed := w.err != nil
		w.mu.Unlock()
		if failed {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Retain stops the watches of Secrets no longer named.
func (s *Secrets) Retain(names map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, w := range s.watches {
		if !names[name] {
			w.stop()
			delete(s.watches, name)
		}
	}
}

func (s *Secrets) watch(name string) *secretWatch {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w, ok := s.watches[name]; ok {
		return w
	}
	secrets := s.kube.CoreV1().Secrets(s.namespace)
	byName := fields.OneTermEqualSelector("metadata.name", name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = byName
			return secrets.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = byName
			return secrets.Watch(ctx, o)
		},
	}
	w := &secretWatch{informer: cache.NewSharedIndexInformer(lw, &corev1.Secret{}, 0, cache.Indexers{})}
	_ = w.informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		if apierrors.IsForbidden(err) {
			err = fmt.Errorf("the speaker may not read it: add %q to the resourceNames of Role herald-speaker (docs/operating.md)", name)
		}
		w.mu.Lock()
		w.err = err
		w.mu.Unlock()
		s.poke()
	})
	poke := func(any) { s.poke() }
	_, _ = w.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: poke, UpdateFunc: func(_, o any) { poke(o) }, DeleteFunc: poke})
	ctx, stop := context.WithCancel(s.ctx)
	w.stop = stop
	go w.informer.RunWithContext(ctx)
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), w.informer.HasSynced) {
			w.mu.Lock()
			w.err = nil
			w.mu.Unlock()
			s.poke()
		}
	}()
	s.watches[name] = w
	return w
}

func (s *Secrets) poke() {
	s.mu.Lock()
	changed := s.changed
	s.mu.Unlock()
	if changed != nil {
		changed()
	}
}
