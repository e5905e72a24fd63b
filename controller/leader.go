package controller

import (
	"context"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"
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

// RunAsLeader runs run only while this process holds the Lease, and returns
// as soon as it loses it: the caller must then exit, because an old leader's
// caches must never decide again (a new leader rebuilds from fresh lists).
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
	lost := make(chan struct{})
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   le.LeaseDuration,
		RenewDeadline:   le.RenewDeadline,
		RetryPeriod:     le.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            le.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				log.Info("leading", zap.String("identity", id))
				run(ctx)
			},
			OnStoppedLeading: func() { close(lost) },
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
	elector.Run(ctx)
	<-lost
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("lost the leader Lease %s/%s", le.Namespace, le.Name)
}
