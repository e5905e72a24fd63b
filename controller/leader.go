package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaderElection configures the Lease that keeps two replicas from
// allocating at once.
type LeaderElection struct {
	// Disabled runs the work at once, without a Lease: for one replica only.
	Disabled        bool
	Namespace, Name string
	Identity        string // default: hostname_pid
	LeaseDuration   time.Duration
	RenewDeadline   time.Duration
	RetryPeriod     time.Duration
}

// Replica is one controller process under the Lease: it stands by, or leads
// and runs the work it is given. Ready makes no API call, so /readyz never
// waits behind the API server or a sync; herald_controller_leader says
// whether it leads.
type Replica struct {
	kube    kubernetes.Interface
	le      LeaderElection
	metrics *Metrics
	log     *zap.Logger

	mu      sync.Mutex
	reached time.Time // the API server last answered a read or write of the Lease
	leading bool
}

// NewReplica builds a replica for the Lease le; it starts nothing.
func NewReplica(kube kubernetes.Interface, le LeaderElection, metrics *Metrics, log *zap.Logger) *Replica {
	if le.Identity == "" {
		host, _ := os.Hostname()
		le.Identity = fmt.Sprintf("%s_%d", host, os.Getpid())
	}
	return &Replica{kube: kube, le: le, metrics: metrics, log: log}
}

// Ready reports whether this replica could do its job if asked: the API
// server answered a read or write of the Lease, made with the replica's
// own credentials, within the last LeaseDuration; and, while it leads, c
// (the controller its work runs; nil before it is built) has synced its
// caches and rebuilt its state. A standby is Ready: leadership is the Lease and a metric, not
// readiness, so that a Deployment of several replicas becomes Available.
func (r *Replica) Ready(c *Controller) bool {
	if r.le.Disabled {
		return c != nil && c.Ready()
	}
	r.mu.Lock()
	reached, leading := r.reached, r.leading
	r.mu.Unlock()
	if reached.IsZero() || time.Since(reached) > r.le.LeaseDuration {
		return false
	}
	return !leading || (c != nil && c.Ready())
}

func (r *Replica) setLeading(leading bool) {
	r.mu.Lock()
	r.leading = leading
	r.mu.Unlock()
	r.metrics.leading(leading)
}

func (r *Replica) setReached() {
	r.mu.Lock()
	r.reached = time.Now()
	r.mu.Unlock()
}

// Run runs run only while this replica holds the Lease.
//
// When ctx ends, run's context is cancelled while the Lease is still
// renewed; once run has returned, the Lease is released (its holder
// cleared), so a standby takes over at its next retry and never overlaps
// with the old leader's last writes, however slow run is to stop. If the
// Lease is lost (renewal failed), run's context is cancelled and Run
// returns an error at once, without waiting for run and without touching
// the Lease: the caller must then exit, because an old leader must stop
// writing before a new one starts, and its caches must never decide again
// (a new leader rebuilds from fresh lists). It also returns an error, after
// releasing the Lease, if run returns by itself. A Replica runs once.
// With le.Disabled, run runs at once until ctx ends.
func (r *Replica) Run(ctx context.Context, run func(ctx context.Context)) error {
	le, log, id := r.le, r.log, r.le.Identity
	if le.Disabled {
		r.setLeading(true)
		defer r.setLeading(false)
		run(ctx)
		if ctx.Err() == nil {
			return errors.New("run returned before it was asked to stop")
		}
		return nil
	}
	var lock resourcelock.Interface = &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: le.Namespace, Name: le.Name},
		Client:     r.kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	lock = reachLock{Interface: lock, reached: r.setReached}
	// client-go's Run releases the Lease (ReleaseOnCancel) as soon as its
	// context ends, without waiting for OnStartedLeading to return, and it
	// would release after a failed renewal too. So the elector gets a context
	// of its own, cancelled only once run has returned, run is started here
	// rather than by the callback, and the release is ours.
	electCtx, stopElecting := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElecting()
	leading := make(chan context.Context, 1) // OnStartedLeading runs at most once per Run
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:          lock,
		LeaseDuration: le.LeaseDuration,
		RenewDeadline: le.RenewDeadline,
		RetryPeriod:   le.RetryPeriod,
		Name:          le.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leadCtx context.Context) { leading <- leadCtx },
			OnStoppedLeading: func() {},
			OnNewLeader: func(leader string) {
				if leader != id {
					log.Info("standing by", zap.String("leader", leader))
				}
			},
		},
	})
	if err != nil {
		return err
	}
	elected := make(chan struct{})
	go func() {
		defer close(elected)
		elector.Run(electCtx)
	}()

	var stopped error // why run returned; nil for a stop through ctx
	select {
	case <-ctx.Done():
	case leadCtx := <-leading:
		// leadCtx ends when renewal fails, ctx when we are asked to stop.
		log.Info("leading", zap.String("identity", id))
		r.setLeading(true)
		defer r.setLeading(false)
		runCtx, cancel := context.WithCancel(leadCtx)
		defer cancel()
		defer context.AfterFunc(ctx, cancel)()
		ran := make(chan struct{})
		go func() {
			defer close(ran)
			run(runCtx)
		}()
		select {
		case <-ran:
		case <-leadCtx.Done():
		}
		if leadCtx.Err() != nil {
			// Another replica may take over soon: do not wait for run,
			// whose context is cancelled; the caller's exit ends it.
			return fmt.Errorf("lost the leader Lease %s/%s", le.Namespace, le.Name)
		}
		if ctx.Err() == nil {
			stopped = fmt.Errorf("stopped leading the Lease %s/%s: run returned before it was asked to stop", le.Namespace, le.Name)
		}
	}
	stopElecting()
	<-elected
	// Standbys too: the Lease may have been won just as ctx ended.
	if elector.IsLeader() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), le.RenewDeadline)
		defer cancel()
		if err := release(rctx, lock, id); err != nil {
			// The Lease then expires after LeaseDuration.
			log.Warn("could not release the leader Lease", zap.Error(err))
		} else {
			log.Info("released the leader Lease")
		}
	}
	return stopped
}

// reachLock notes each time the API server answers a read or write of the
// Lease: proof that this replica reaches it with its own credentials (a
// Lease not found is an answer too; Forbidden or a timeout is not).
type reachLock struct {
	resourcelock.Interface
	reached func()
}

func (l reachLock) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	rec, raw, err := l.Interface.Get(ctx)
	if err == nil || apierrors.IsNotFound(err) {
		l.reached()
	}
	return rec, raw, err
}

func (l reachLock) Create(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Create(ctx, ler)
	if err == nil {
		l.reached()
	}
	return err
}

func (l reachLock) Update(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Update(ctx, ler)
	if err == nil {
		l.reached()
	}
	return err
}

// release clears the holder of the Lease if it still names id, so that a
// standby takes it at its next retry instead of after LeaseDuration. The
// update is conditional on the resourceVersion just read: a Lease that
// changed hands in between is left alone.
func release(ctx context.Context, lock resourcelock.Interface, id string) error {
	for {
		rec, _, err := lock.Get(ctx)
		if err != nil {
			return fmt.Errorf("get Lease %s: %w", lock.Describe(), err)
		}
		if rec.HolderIdentity != id {
			return nil
		}
		now := metav1.Now()
		err = lock.Update(ctx, resourcelock.LeaderElectionRecord{
			LeaseDurationSeconds: 1,
			AcquireTime:          now,
			RenewTime:            now,
			LeaderTransitions:    rec.LeaderTransitions,
		})
		if !apierrors.IsConflict(err) {
			if err != nil {
				return fmt.Errorf("release Lease %s: %w", lock.Describe(), err)
			}
			return nil
		}
	}
}
