// Command herald-controller allocates external addresses for LoadBalancer
// Services from the pools in Herald's ConfigMap.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/heraldlb/herald/cmd/internal/serve"
	"github.com/heraldlb/herald/cmd/internal/version"
	"github.com/heraldlb/herald/controller"
	"github.com/heraldlb/herald/speaker/state"
)

type flags struct {
	kubeconfig, namespace, configName, lbClass, memberlistSecret, metricsAddr, logLevel string
	workers                                                                             int
	leaderElect                                                                         bool
	leaseDuration, renewDeadline, retryPeriod                                           time.Duration
}

func main() {
	var f flags
	flag.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster)")
	flag.StringVar(&f.namespace, "namespace", "herald-system", "namespace of the ConfigMap, the leader Lease and the memberlist Secret")
	flag.StringVar(&f.configName, "config-name", "herald", "name of the ConfigMap (key config.yaml)")
	flag.StringVar(&f.lbClass, "lb-class", "", "serve only Services of this spec.loadBalancerClass (default: Services without a class)")
	flag.StringVar(&f.memberlistSecret, "memberlist-secret", "herald-memberlist", "Secret holding the speakers' memberlist key (key secretkey), created with a random key when missing, never overwritten; empty: never created")
	flag.StringVar(&f.metricsAddr, "metrics-addr", ":7472", "address for /metrics, /healthz and /readyz (empty: off)")
	flag.IntVar(&f.workers, "workers", 4, "Services synced in parallel")
	flag.BoolVar(&f.leaderElect, "leader-elect", true, "run only while holding the Lease herald-controller in --namespace")
	flag.DurationVar(&f.leaseDuration, "leader-elect-lease-duration", 15*time.Second, "how long a Lease lasts without renewal")
	flag.DurationVar(&f.renewDeadline, "leader-elect-renew-deadline", 10*time.Second, "how long the leader tries to renew before giving up")
	flag.DurationVar(&f.retryPeriod, "leader-elect-retry-period", 2*time.Second, "how often candidates try to take or renew the Lease")
	flag.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	printVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *printVersion {
		fmt.Println(version.String("herald-controller"))
		return
	}

	log, err := serve.Logger(f.logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "herald-controller:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, f); err != nil {
		log.Error("exiting", zap.Error(err))
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, log *zap.Logger, f flags) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	kube, dyn, err := serve.Clients(f.kubeconfig, 200, 400)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := controller.NewMetrics(reg)
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "herald-controller"})

	replica := controller.NewReplica(kube, controller.LeaderElection{
		Disabled: !f.leaderElect, Namespace: f.namespace, Name: "herald-controller",
		LeaseDuration: f.leaseDuration, RenewDeadline: f.renewDeadline, RetryPeriod: f.retryPeriod,
	}, metrics, log.Named("leader"))
	var ctrl atomic.Pointer[controller.Controller] // set once this replica leads
	errc := make(chan error, 1)
	go func() {
		errc <- serve.HTTP(ctx, f.metricsAddr, reg, func() bool { return replica.Ready(ctrl.Load()) }, nil)
	}()
	opts := controller.Options{Namespace: f.namespace, ConfigName: f.configName, LBClass: f.lbClass}
	lead := func(ctx context.Context) {
		var wg sync.WaitGroup
		defer wg.Wait()
		if f.memberlistSecret != "" {
			wg.Go(func() {
				// It gives up only when ctx ends.
				_ = controller.EnsureMemberlistKey(ctx, kube, f.namespace, f.memberlistSecret, log.Named("memberlist"))
			})
		}
		all := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTransform(controller.Trim))
		// Herald's namespace: the ConfigMap and the controller's record of it.
		own := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(f.namespace))
		c := controller.New(kube, all.Core().V1().Services(), all.Core().V1().Namespaces(), own.Core().V1().ConfigMaps(),
			recorder, metrics, log.Named("controller"), opts)
		ctrl.Store(c)
		states, err := controller.SpeakerStateInformers(kube.Discovery(), dyn, f.namespace)
		switch {
		case err != nil:
			log.Error("speaker states not watched: Announced conditions are not kept", zap.Error(err))
		case states == nil:
			log.Warn("the SpeakerState resource is not installed (manifests/crd-speakerstates.yaml): Announced conditions are not kept")
		default:
			c.WatchSpeakerStates(states.ForResource(state.GVR).Informer())
			states.Start(ctx.Done())
		}
		all.Start(ctx.Done())
		own.Start(ctx.Done())
		if err := c.Run(ctx, f.workers); err != nil {
			log.Error("controller stopped", zap.Error(err))
		}
	}
	led := make(chan error, 1)
	go func() { led <- replica.Run(ctx, lead) }()
	select {
	case err := <-led:
		return err
	case err := <-errc:
		// Stopping (or a failed HTTP server): exit only once the workers have
		// returned and the Lease is released, or a standby would overlap them.
		stop()
		if lerr := <-led; lerr != nil {
			return lerr
		}
		return err
	}
}
