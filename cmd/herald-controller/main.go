// Command herald-controller allocates external addresses for LoadBalancer
// Services from the pools in Herald's ConfigMap.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
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
	"github.com/heraldlb/herald/controller"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file (default: in-cluster)")
	namespace := flag.String("namespace", "herald-system", "namespace of the ConfigMap and the leader Lease")
	configName := flag.String("config-name", "herald", "name of the ConfigMap (key config.yaml)")
	lbClass := flag.String("lb-class", "", "serve only Services of this spec.loadBalancerClass (default: Services without a class)")
	metricsAddr := flag.String("metrics-addr", ":7472", "address for /metrics, /healthz and /readyz (empty: off)")
	workers := flag.Int("workers", 4, "Services synced in parallel")
	leaderElect := flag.Bool("leader-elect", true, "run only while holding the Lease herald-controller in --namespace")
	leaseDuration := flag.Duration("leader-elect-lease-duration", 15*time.Second, "how long a Lease lasts without renewal")
	renewDeadline := flag.Duration("leader-elect-renew-deadline", 10*time.Second, "how long the leader tries to renew before giving up")
	retryPeriod := flag.Duration("leader-elect-retry-period", 2*time.Second, "how often candidates try to take or renew the Lease")
	logLevel := flag.String("log-level", "info", "debug, info, warn or error")
	flag.Parse()

	log, err := serve.Logger(*logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "herald-controller:", err)
		os.Exit(2)
	}
	if err := run(log, *kubeconfig, *namespace, *configName, *lbClass, *metricsAddr, *workers, *leaderElect,
		controller.LeaderElection{Namespace: *namespace, Name: "herald-controller", LeaseDuration: *leaseDuration, RenewDeadline: *renewDeadline, RetryPeriod: *retryPeriod},
	); err != nil {
		log.Error("exiting", zap.Error(err))
		os.Exit(1)
	}
}

func run(log *zap.Logger, kubeconfig, namespace, configName, lbClass, metricsAddr string, workers int, leaderElect bool, le controller.LeaderElection) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kube, err := serve.Kube(kubeconfig, 200, 400)
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

	var ctrl atomic.Pointer[controller.Controller] // set once this replica leads
	errc := make(chan error, 1)
	go func() {
		errc <- serve.HTTP(ctx, metricsAddr, reg, func() bool { c := ctrl.Load(); return c != nil && c.Ready() }, nil)
	}()
	opts := controller.Options{Namespace: namespace, ConfigName: configName, LBClass: lbClass}
	lead := func(ctx context.Context) {
		all := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTransform(controller.Trim))
		// Herald's namespace: the ConfigMap and the controller's record of it.
		own := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(namespace))
		c := controller.New(kube, all.Core().V1().Services(), all.Core().V1().Namespaces(), own.Core().V1().ConfigMaps(),
			recorder, metrics, log.Named("controller"), opts)
		ctrl.Store(c)
		all.Start(ctx.Done())
		own.Start(ctx.Done())
		if err := c.Run(ctx, workers); err != nil {
			log.Error("controller stopped", zap.Error(err))
		}
	}
	if !leaderElect {
		lead(ctx)
		return nil
	}
	led := make(chan error, 1)
	go func() { led <- controller.RunAsLeader(ctx, kube, le, log.Named("leader"), lead) }()
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
