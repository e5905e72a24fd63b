// Command herald-speaker runs on every node: it answers ARP/NDP for the
// Service addresses this node is elected to announce, and advertises
// addresses to BGP peers.
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
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/heraldlb/herald/bgp"
	"github.com/heraldlb/herald/cmd/internal/serve"
	"github.com/heraldlb/herald/cmd/internal/version"
	"github.com/heraldlb/herald/l2"
	"github.com/heraldlb/herald/speaker"
	"github.com/heraldlb/herald/speaker/state"
)

type flags struct {
	kubeconfig, node, bind, namespace, configName, lbClass, secret, metricsAddr, logLevel, kubeProxy string
	memberPort, gratuitousRepeat                                                                     int
	holdDown, probeInterval, probeTimeout, handBack, refresh, gratuitousInterval                     time.Duration
	suspicionMult                                                                                    int
}

func main() {
	d := speaker.DefaultMemberOptions()
	var f flags
	flag.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster)")
	flag.StringVar(&f.node, "node-name", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME)")
	flag.StringVar(&f.bind, "bind-address", "", "address memberlist binds to (default: the node's first InternalIP)")
	flag.StringVar(&f.namespace, "namespace", "herald-system", "namespace of the ConfigMap and the memberlist Secret")
	flag.StringVar(&f.configName, "config-name", "herald", "name of the ConfigMap (key config.yaml)")
	flag.StringVar(&f.lbClass, "lb-class", "", "serve only Services of this spec.loadBalancerClass")
	flag.StringVar(&f.secret, "memberlist-secret", "herald-memberlist", "Secret whose key secretkey encrypts memberlist (16, 24 or 32 bytes)")
	flag.IntVar(&f.memberPort, "memberlist-port", d.Port, "memberlist port (TCP and UDP)")
	flag.DurationVar(&f.holdDown, "hold-down", d.HoldDown, "how long a returning node must be a member before it takes its addresses back")
	flag.DurationVar(&f.probeInterval, "probe-interval", d.ProbeInterval, "memberlist probe interval")
	flag.DurationVar(&f.probeTimeout, "probe-timeout", d.ProbeTimeout, "memberlist probe timeout")
	flag.IntVar(&f.suspicionMult, "suspicion-mult", d.SuspicionMult, "probe intervals a suspected node has to refute before it is declared dead")
	flag.DurationVar(&f.handBack, "hand-back", time.Second, "how long a node keeps answering for an address it hands to another")
	flag.DurationVar(&f.refresh, "refresh", 30*time.Second, "period of gratuitous ARP/NA for owned addresses")
	flag.IntVar(&f.gratuitousRepeat, "gratuitous-repeat", 3, "gratuitous ARP/NA sent after the first on takeover")
	flag.DurationVar(&f.gratuitousInterval, "gratuitous-interval", 200*time.Millisecond, "between takeover gratuitous ARP/NA")
	flag.StringVar(&f.kubeProxy, "kube-proxy-healthz", "http://127.0.0.1:10256/healthz",
		"kube-proxy's health endpoint on the node: a new address is announced once kube-proxy has programmed it (empty: no kube-proxy, announce at once)")
	flag.StringVar(&f.metricsAddr, "metrics-addr", ":7473", "address for /metrics, /healthz and /readyz (empty: off)")
	flag.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	printVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *printVersion {
		fmt.Println(version.String("herald-speaker"))
		return
	}

	log, err := serve.Logger(f.logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "herald-speaker:", err)
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
	if f.node == "" {
		return fmt.Errorf("--node-name (or $NODE_NAME) is required")
	}
	kube, dyn, err := serve.Clients(f.kubeconfig, 50, 100)
	if err != nil {
		return err
	}
	return runWith(ctx, log, f, kube, dyn)
}

// runWith runs the speaker with the clients kube and dyn until ctx ends.
func runWith(ctx context.Context, log *zap.Logger, f flags, kube kubernetes.Interface, dyn dynamic.Interface) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// The probes answer from the start: while Bootstrap waits for the
	// memberlist key the speaker is alive (a restart would not bring the
	// key) but not ready; then the Speaker's own answers.
	var running atomic.Pointer[speaker.Speaker]
	ready := func() bool { s := running.Load(); return s != nil && s.Ready() }
	healthy := func() bool { s := running.Load(); return s == nil || s.Healthy() }
	served := make(chan error, 1)
	go func() {
		err := serve.HTTP(ctx, f.metricsAddr, reg, ready, healthy)
		if err != nil {
			stop() // no speaker without its probes
		}
		served <- err
	}()
	bind, key, err := speaker.Bootstrap(ctx, kube, f.node, f.bind, f.namespace, f.secret, log)
	if err != nil {
		// Bootstrap gives up only when ctx ends: asked to stop, or no HTTP.
		stop()
		return <-served
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "herald-speaker", Host: f.node})

	members := speaker.NewMembers(speaker.MemberOptions{
		Node: f.node, Bind: bind, Port: f.memberPort, SecretKey: key, HoldDown: f.holdDown,
		ProbeInterval: f.probeInterval, ProbeTimeout: f.probeTimeout, SuspicionMult: f.suspicionMult, MACs: l2.LocalMACs, Log: log,
	})
	announcer := l2.New(l2.Options{Log: log.Named("l2"), Registerer: reg, GratuitousRepeat: f.gratuitousRepeat,
		GratuitousInterval: f.gratuitousInterval, RefreshInterval: f.refresh})
	all := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTransform(speaker.Trim))
	// Herald's namespace: the ConfigMap and the controller's record of it.
	own := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(f.namespace))
	bgpServer := bgp.New(bgp.Options{Log: log.Named("bgp"), Registerer: reg})
	inf := speaker.Informers{Services: all.Core().V1().Services(), EndpointSlices: all.Discovery().V1().EndpointSlices(),
		Nodes: all.Core().V1().Nodes(), ConfigMaps: own.Core().V1().ConfigMaps(), Secrets: speaker.NewSecrets(kube, f.namespace)}
	var states dynamic.ResourceInterface // nil: publish nothing (tests)
	if dyn != nil {
		states = dyn.Resource(state.GVR).Namespace(f.namespace)
	}
	sp := speaker.New(inf, members, announcer, bgpServer, recorder, speaker.NewMetrics(reg), log.Named("speaker"),
		speaker.Options{Node: f.node, Namespace: f.namespace, ConfigName: f.configName, LBClass: f.lbClass, HandBack: f.handBack,
			Links: l2.ReadLinks, States: states, Version: version.Version, ProxySync: speaker.NewProxySync(f.kubeProxy)})
	running.Store(sp)
	for _, factory := range []informers.SharedInformerFactory{all, own} {
		factory.Start(ctx.Done())
	}

	errc := make(chan error, 5)
	go func() { errc <- <-served }()
	go func() { errc <- announcer.Run(ctx) }()
	go func() { errc <- members.Run(ctx) }()
	go func() { errc <- bgpServer.Run(ctx) }()
	go func() { errc <- sp.Run(ctx) }()
	err = <-errc
	stop()
	for range 4 {
		if e := <-errc; err == nil {
			err = e
		}
	}
	return err
}
