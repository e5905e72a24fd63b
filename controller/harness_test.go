package controller_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/controller"
	"github.com/heraldlb/herald/e2e/lab"
)

// Integration tests share one control-plane-only lab: a real etcd and
// kube-apiserver. Each test uses its own namespaces, ConfigMap and lb class
// so tests cannot see each other's Services.
var (
	shared     *lab.Lab
	skipReason string
)

func TestMain(m *testing.M) {
	os.Exit(lab.TestMain(m, lab.Config{Prefix: "hct", ControlPlaneOnly: true}, installRBAC, func(l *lab.Lab, skip string) { shared, skipReason = l, skip }))
}

// installRBAC applies the controller's ServiceAccount and permissions from
// manifests/: the controllers under test run with exactly those.
func installRBAC(ctx context.Context, l *lab.Lab) error {
	return l.ApplyManifests(ctx, "namespace.yaml", "rbac-controller.yaml")
}

// controllerClient authenticates as the ServiceAccount herald-controller.
var controllerClient = sync.OnceValues(func() (kubernetes.Interface, error) {
	return shared.ServiceAccountClient(context.Background(), "herald-system", "herald-controller")
})

// grantController gives herald-controller in ns what manifests/ gives it in
// herald-system (the tests keep their ConfigMap and Lease in ns).
func grantController(t *testing.T, ns string) {
	t.Helper()
	if err := shared.CopyRole(t.Context(), "herald-system", "herald-controller", ns); err != nil {
		t.Fatal(err)
	}
}

// env is one test's corner of the cluster: its config namespace, lb class
// and a running controller. The test acts as admin (kube); the controller
// runs as its ServiceAccount (ctl).
type env struct {
	t       *testing.T
	kube    kubernetes.Interface
	ctl     kubernetes.Interface
	ns      string // holds the ConfigMap; also the default namespace for Services
	class   string
	metrics *prometheus.Registry
	stop    context.CancelFunc
	done    chan struct{}
}

// newEnv starts a controller for a fresh namespace and lb class. With
// cfgYAML "" no ConfigMap is created.
func newEnv(t *testing.T, cfgYAML string) *env {
	t.Helper()
	if shared == nil {
		t.Skip("no lab: " + skipReason)
	}
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	e := &env{t: t, kube: shared.Kube(), ns: name, class: "herald.dev/" + name}
	e.createNamespace(e.ns, nil)
	grantController(t, e.ns)
	ctl, err := controllerClient()
	if err != nil {
		t.Fatal(err)
	}
	e.ctl = ctl
	if cfgYAML != "" {
		e.setConfig(cfgYAML)
	}
	e.start()
	t.Cleanup(func() {
		e.stopController()
		_ = e.kube.CoreV1().Namespaces().Delete(context.Background(), e.ns, metav1.DeleteOptions{})
	})
	return e
}

func (e *env) start() {
	ctx, cancel := context.WithCancel(context.Background())
	e.stop, e.done = cancel, make(chan struct{})
	e.metrics = prometheus.NewRegistry()
	all := informers.NewSharedInformerFactory(e.ctl, 0)
	own := informers.NewSharedInformerFactoryWithOptions(e.ctl, 0, informers.WithNamespace(e.ns))
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: e.ctl.CoreV1().Events("")})
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "herald-controller"})
	c := controller.New(e.ctl, all.Core().V1().Services(), all.Core().V1().Namespaces(), own.Core().V1().ConfigMaps(),
		recorder, controller.NewMetrics(e.metrics), zaptest.NewLogger(e.t).Named(e.ns),
		controller.Options{Namespace: e.ns, ConfigName: "herald", LBClass: e.class})
	all.Start(ctx.Done())
	own.Start(ctx.Done())
	go func() {
		defer close(e.done)
		defer broadcaster.Shutdown()
		_ = c.Run(ctx, 4)
		all.Shutdown()
		own.Shutdown()
	}()
}

func (e *env) stopController() {
	e.stop()
	<-e.done
}

func (e *env) createNamespace(name string, labels map[string]string) {
	e.t.Helper()
	_, err := e.kube.CoreV1().Namespaces().Create(e.t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		e.t.Fatal(err)
	}
	if name != e.ns {
		e.t.Cleanup(func() { _ = e.kube.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}
}

func (e *env) setConfig(text string) {
	e.t.Helper()
	cms := e.kube.CoreV1().ConfigMaps(e.ns)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "herald", Namespace: e.ns}, Data: map[string]string{"config.yaml": text}}
	if _, err := cms.Update(e.t.Context(), cm, metav1.UpdateOptions{}); apierrors.IsNotFound(err) {
		_, err = cms.Create(e.t.Context(), cm, metav1.CreateOptions{})
		if err != nil {
			e.t.Fatal(err)
		}
	} else if err != nil {
		e.t.Fatal(err)
	}
}

// confirm annotates the ConfigMap as the held-change Event tells users to.
func (e *env) confirm(hash string) {
	e.t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, config.ConfirmAnnotation, hash)
	if _, err := e.kube.CoreV1().ConfigMaps(e.ns).Patch(e.t.Context(), "herald", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// svcOpt changes a Service fixture.
type svcOpt func(*corev1.Service)

func withAnnotation(k, v string) svcOpt {
	return func(s *corev1.Service) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[k] = v
	}
}
func withPorts(ports ...int32) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Ports = nil
		for _, p := range ports {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: fmt.Sprint("p", p), Port: p, TargetPort: intstr.FromInt32(8080)})
		}
	}
}
func withFamilies(policy corev1.IPFamilyPolicy, fams ...corev1.IPFamily) svcOpt {
	return func(s *corev1.Service) { s.Spec.IPFamilyPolicy, s.Spec.IPFamilies = &policy, fams }
}
func withNamespace(ns string) svcOpt { return func(s *corev1.Service) { s.Namespace = ns } }
func withLabels(l map[string]string) svcOpt {
	return func(s *corev1.Service) { s.Labels = l }
}
func withLoadBalancerIP(ip string) svcOpt {
	return func(s *corev1.Service) { s.Spec.LoadBalancerIP = ip }
}
func withClass(c string) svcOpt { return func(s *corev1.Service) { s.Spec.LoadBalancerClass = &c } }
func withLocal() svcOpt {
	return func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
}

// svc creates a LoadBalancer Service of this env's class.
func (e *env) svc(name string, opts ...svcOpt) *corev1.Service {
	e.t.Helper()
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns},
		Spec: corev1.ServiceSpec{
			Type:              corev1.ServiceTypeLoadBalancer,
			LoadBalancerClass: &e.class,
			Selector:          map[string]string{"app": name},
			Ports:             []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	for _, o := range opts {
		o(s)
	}
	out, err := e.kube.CoreV1().Services(s.Namespace).Create(e.t.Context(), s, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// waitFor polls the Service until cond holds, failing after 15 s.
func (e *env) waitFor(ns, name string, what string, cond func(*corev1.Service) bool) *corev1.Service {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last *corev1.Service
	for time.Now().Before(deadline) {
		s, err := e.kube.CoreV1().Services(ns).Get(e.t.Context(), name, metav1.GetOptions{})
		if err == nil {
			last = s
			if cond(s) {
				return s
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Fatalf("service %s/%s: %s not reached; status %+v annotations %v", ns, name, what, statusOf(last), annotationsOf(last))
	return nil
}

// waitIPs waits until the Service shows exactly these addresses with condition True.
func (e *env) waitIPs(ns, name string, want ...string) *corev1.Service {
	e.t.Helper()
	return e.waitFor(ns, name, fmt.Sprintf("addresses %v", want), func(s *corev1.Service) bool {
		c := meta.FindStatusCondition(s.Status.Conditions, controller.ConditionAllocated)
		return slices.Equal(ips(s), want) && c != nil && c.Status == metav1.ConditionTrue
	})
}

// waitReason waits until the condition has this reason (and the Service these addresses).
func (e *env) waitReason(ns, name, reason string, want ...string) *corev1.Service {
	e.t.Helper()
	return e.waitFor(ns, name, "reason "+reason, func(s *corev1.Service) bool {
		c := meta.FindStatusCondition(s.Status.Conditions, controller.ConditionAllocated)
		return c != nil && c.Reason == reason && slices.Equal(ips(s), want)
	})
}

// stays checks that the Service keeps exactly these addresses for d.
func (e *env) stays(ns, name string, d time.Duration, want ...string) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		s, err := e.kube.CoreV1().Services(ns).Get(e.t.Context(), name, metav1.GetOptions{})
		if err != nil {
			e.t.Fatal(err)
		}
		if got := ips(s); !slices.Equal(got, want) {
			e.t.Fatalf("service %s/%s: addresses %v, want them to stay %v", ns, name, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// events lists the Events about a Service (or ConfigMap) of this env.
func (e *env) events(ns, name string) []corev1.Event {
	list, err := e.kube.CoreV1().Events(ns).List(e.t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		e.t.Fatal(err)
	}
	return list.Items
}

// waitEvent waits for an Event with this reason whose message contains substr.
func (e *env) waitEvent(ns, name, reason, substr string) {
	e.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var seen []string
	for time.Now().Before(deadline) {
		seen = nil
		for _, ev := range e.events(ns, name) {
			if ev.Reason == reason && strings.Contains(ev.Message, substr) {
				return
			}
			seen = append(seen, ev.Reason+": "+ev.Message)
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.t.Fatalf("no %s event containing %q on %s/%s; seen %q", reason, substr, ns, name, seen)
}

func ips(s *corev1.Service) []string {
	var out []string
	for _, in := range s.Status.LoadBalancer.Ingress {
		out = append(out, in.IP)
	}
	return out
}

func statusOf(s *corev1.Service) any {
	if s == nil {
		return nil
	}
	return s.Status
}

func annotationsOf(s *corev1.Service) any {
	if s == nil {
		return nil
	}
	return s.Annotations
}

// gauge reads one sample of a metric from the env's registry.
func (e *env) gauge(name string, labels map[string]string) (float64, bool) {
	mfs, err := e.metrics.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue(), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}
