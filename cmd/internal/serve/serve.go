// Package serve holds the plumbing Herald's binaries share: the zap logger
// (with klog routed into it), the Kubernetes client, and the HTTP endpoint
// for /metrics, /healthz and /readyz.
package serve

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/zapr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/client-go/dynamic"
	clientfeatures "k8s.io/client-go/features"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// Logger builds the process logger at level ("debug", "info", "warn",
// "error") and routes klog (client-go's logging) into it.
func Logger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, err
	}
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	log, err := cfg.Build()
	if err != nil {
		return nil, err
	}
	klog.SetLogger(zapr.NewLogger(log.Named("klog")))
	return log, nil
}

// HTTP serves Handler(reg, ready, healthy) on addr until ctx ends. An
// empty addr serves nothing.
func HTTP(ctx context.Context, addr string, reg *prometheus.Registry, ready, healthy func() bool) error {
	if addr == "" {
		<-ctx.Done()
		return nil
	}
	mux := Handler(reg, ready, healthy)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Handler serves /metrics from reg, /healthz (healthy reports true; nil:
// the process answers) and /readyz (ready reports true). The probes call
// only their function: they must never wait behind I/O or a sync.
func Handler(reg *prometheus.Registry, ready, healthy func() bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if healthy != nil && !healthy() {
			http.Error(w, "not healthy", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// Kube builds a clientset from kubeconfig, or from the in-cluster service
// account when kubeconfig is empty; qps and burst limit its requests.
func Kube(kubeconfig string, qps float32, burst int) (*kubernetes.Clientset, error) {
	kube, _, err := Clients(kubeconfig, qps, burst)
	return kube, err
}

// Clients is Kube, and a dynamic client on the same connection settings
// (JSON: custom resources have no protobuf encoding) for Herald's own
// resources.
func Clients(kubeconfig string, qps float32, burst int) (*kubernetes.Clientset, dynamic.Interface, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, nil, err
	}
	listThenWatch()
	cfg.QPS, cfg.Burst = qps, burst
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	// Protobuf: lists of thousands of Services decode in a fraction of
	// the time and transient memory of JSON.
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	kube, err := kubernetes.NewForConfig(cfg)
	return kube, dyn, err
}

// listThenWatch has informers fill their caches with paged protobuf LISTs
// instead of client-go's default streamed watch-list: with 10,000 Services
// and their EndpointSlices a speaker's caches filled in under 2 s instead of
// about 5 s, with less memory (go run ./e2e/cmd/bench -only bgp).
func listThenWatch() {
	clientfeatures.ReplaceFeatureGates(withoutWatchList{clientfeatures.FeatureGates()})
}

type withoutWatchList struct{ clientfeatures.Gates }

func (g withoutWatchList) Enabled(f clientfeatures.Feature) bool {
	return f != clientfeatures.WatchListClient && g.Gates.Enabled(f)
}
