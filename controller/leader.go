package controller

import (
	"context"
	"fmt"
	"os"
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
	Namespace, Name string
	Identity        string // default: hostname_pid
	LeaseDuration   time.Duration
	RenewDeadline   time.Duration
	RetryPeriod     time.Duration
}

// RunAsLeader runs run only while this process holds the Lease.
//
// When ctx ends, run's context is cancelled while the Lease is still
// renewed; once run has returned, the Lease is released (its holder
// cleared), so a standby takes over at its next retry and never overlaps
// with the old leader's last writes, however slow run is to stop. If the
// Lease is lost (renewal failed), run's context is cancelled and RunAsLeader
// returns an error at once, without waiting for run and without touching
// the Lease: the caller must then exit, because an old leader must stop
// writing before a new one starts, and its caches must never decide again
// (a new leader rebuilds from fresh lists). It also returns an error, after
// releasing the Lease, if run returns by itself.
func RunAsLeader(ctx context.Context, kube kubernetes.Interface, le LeaderElection, log *zap.Logger, run func(ctx context.Context)) error {
	id := le.Identity
	if id == "" {
		host, _ := os.Hostname()
		id = fmt.Sprintf("%s_%d", host, os.Getpid())
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: le.Namespace, Name: le.Name},
		Client:     kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
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
