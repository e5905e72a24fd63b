// Package lab builds a real Kubernetes test lab on one machine without
// containers: a bridge, a control plane (etcd, kube-apiserver,
// kube-controller-manager), nodes running kube-proxy, a client, and an FRR
// router (and, if asked, a BIRD router) with an external client behind it,
// each in its own network namespace.
// The lab plays kubelet for Pods. Herald's end-to-end tests and `make demo` run on it.
package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Config says what lab to build.
type Config struct {
	// Prefix names every namespace of the lab ("<prefix>-node1"). Up first
	// removes whatever a previous lab of the same prefix left behind.
	Prefix string
	// Nodes is the number of node namespaces (default 3).
	Nodes int
	// ProxyMode is kube-proxy's mode: "iptables" (default) or "nftables".
	ProxyMode string
	// BinDir holds etcd and the Kubernetes binaries (default: $HERALD_CACHE/bin,
	// ~/.cache/herald/bin; `make tools` builds them).
	BinDir string
	// StateRoot holds each lab's directory (default /run/herald-lab).
	StateRoot string
	// ControlPlaneOnly builds just the bridge and the control plane: no
	// nodes, router or clients (for controller tests).
	ControlPlaneOnly bool
	// BIRD adds a second router next to FRR: BIRD 2 in its own namespace on
	// the bridge (BIRD4, BIRD6) with a client behind it (BIRDExternalNS).
	BIRD bool
}

func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = "hlab"
	}
	if c.Nodes == 0 && !c.ControlPlaneOnly {
		c.Nodes = 3
	}
	if c.ProxyMode == "" {
		c.ProxyMode = "iptables"
	}
	if c.BinDir == "" {
		c.BinDir = DefaultBinDir()
	}
	if c.StateRoot == "" {
		c.StateRoot = "/run/herald-lab"
	}
	return c
}

// DefaultBinDir is where hack/tools/build.sh puts the binaries.
func DefaultBinDir() string {
	cache := os.Getenv("HERALD_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "herald")
	}
	return filepath.Join(cache, "bin")
}

// Lab is a running lab. Its state is saved in Dir/lab.json after every change,
// so another process (the CLI, a later test run) can inspect or remove it.
type Lab struct {
	Prefix    string    `json:"prefix"`
	Dir       string    `json:"dir"`
	ProxyMode string    `json:"proxyMode"`
	Minimal   bool      `json:"minimal"` // ControlPlaneOnly
	BIRD      bool      `json:"bird"`    // Config.BIRD
	BinDir    string    `json:"binDir"`
	Nodes     []Node    `json:"nodes"`
	Started   time.Time `json:"started"`
	// Owner is the process that brought the lab up. While it lives, no other
	// process's Up replaces the lab (a CLI's lab outlives its owner).
	Owner Proc `json:"owner"`

	mu      sync.Mutex
	buildMu sync.Mutex
	built   map[string]bool // packages Build compiled for this lab
	Procs   []Proc          `json:"procs"`
	Pods    map[string]Pod  `json:"pods"` // by namespace/name
	// Install is what InstallHerald applied (nil: Herald runs as processes).
	Install *Install `json:"install,omitempty"`

	kube    *kubernetes.Clientset
	rest    *rest.Config
	kubelet *kubelet // plays kubelet for scheduled pods (Herald installed from manifests)
	// stopKubelet ends the kubelet's goroutines (the processes it started
	// are lab processes: Down ends them).
	stopKubelet context.CancelFunc
}

// Requirements reports why this machine cannot run a lab, or nil if it can.
// Tests skip with this message instead of hanging.
func Requirements(binDir string) error {
	if os.Geteuid() != 0 {
		return errors.New("the lab needs root (network namespaces, veths, iptables)")
	}
	var missing []string
	for _, tool := range []string{"ip", "iptables", "nft", "sysctl", "/usr/lib/frr/zebra", "/usr/lib/frr/bgpd", "/usr/lib/frr/bfdd", "vtysh"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if binDir == "" {
		binDir = DefaultBinDir()
	}
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-proxy", "kube-scheduler", "kubectl", "herald-images"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			missing = append(missing, filepath.Join(binDir, b)+" (run `make tools`)")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the lab needs these missing tools (run `make deps tools`): %v", missing)
	}
	return nil
}

// Up builds a lab, replacing any leftover lab of the same prefix. On failure
// it removes what it built.
func Up(ctx context.Context, cfg Config) (*Lab, error) {
	cfg = cfg.withDefaults()
	if err := Requirements(cfg.BinDir); err != nil {
		return nil, err
	}
	if cfg.ProxyMode != "iptables" && cfg.ProxyMode != "nftables" {
		return nil, fmt.Errorf("proxy mode %q: want iptables or nftables", cfg.ProxyMode)
	}
	withBIRD := cfg.BIRD && !cfg.ControlPlaneOnly
	if withBIRD {
		if err := birdRequirements(); err != nil {
			return nil, err
		}
	}
	prefix, err := freePrefix(cfg.Prefix, cfg.StateRoot)
	if err != nil {
		return nil, err
	}
	if err := Down(prefix, cfg.StateRoot); err != nil {
		return nil, fmt.Errorf("remove stale lab %s: %w", prefix, err)
	}
	self, err := startTime(os.Getpid())
	if err != nil {
		return nil, err
	}
	l := &Lab{
		Prefix:    prefix,
		Dir:       filepath.Join(cfg.StateRoot, prefix),
		ProxyMode: cfg.ProxyMode,
		BinDir:    cfg.BinDir,
		Minimal:   cfg.ControlPlaneOnly,
		BIRD:      withBIRD,
		Started:   time.Now(),
		Owner:     Proc{Name: "owner", PID: os.Getpid(), Start: self},
		Pods:      map[string]Pod{},
	}
	for i := 1; i <= cfg.Nodes; i++ {
		l.Nodes = append(l.Nodes, newNode(prefix, i))
	}
	if err := l.up(ctx); err != nil {
		_ = l.Down()
		return nil, fmt.Errorf("lab %s up: %w", prefix, err)
	}
	return l, nil
}

func (l *Lab) up(ctx context.Context) error {
	if err := os.RemoveAll(l.Dir); err != nil { // logs kept by HERALD_LAB_KEEP
		return err
	}
	if err := os.MkdirAll(filepath.Join(l.Dir, "logs"), 0o755); err != nil {
		return err
	}
	if err := l.save(); err != nil {
		return err
	}
	if err := l.buildLabPod(ctx); err != nil {
		return err
	}
	if err := l.buildNetwork(ctx); err != nil {
		return err
	}
	if l.Minimal {
		return l.startControlPlane(ctx)
	}
	frr := make(chan error, 1)
	go func() { frr <- l.startRouter(ctx) }()
	bird := make(chan error, 1)
	go func() {
		if l.BIRD {
			bird <- l.startBIRD(ctx)
		}
		close(bird)
	}()
	if err := l.startControlPlane(ctx); err != nil {
		return err
	}
	if err := l.registerNodes(ctx); err != nil {
		return err
	}
	if err := l.startProxies(ctx); err != nil {
		return err
	}
	kctx, stop := context.WithCancel(context.Background())
	l.stopKubelet = stop
	if err := l.startKubelet(kctx); err != nil {
		return err
	}
	return errors.Join(<-frr, <-bird)
}

// freePrefix returns prefix, or prefix with a letter appended, whichever
// first names no lab whose owner still runs: a leftover is replaced, a lab in
// use by another live process (a concurrent test run) is left alone.
func freePrefix(prefix, stateRoot string) (string, error) {
	for _, suffix := range []string{"", "b", "c", "d", "e", "f"} {
		p := prefix + suffix
		l, err := Open(p, stateRoot)
		if err != nil || l.Owner.PID == 0 || l.Owner.PID == os.Getpid() || !l.Owner.Alive() {
			return p, nil
		}
	}
	return "", fmt.Errorf("labs %s..%sf are all in use by live processes", prefix, prefix)
}

// Open attaches to a running lab by prefix.
func Open(prefix, stateRoot string) (*Lab, error) {
	if stateRoot == "" {
		stateRoot = Config{}.withDefaults().StateRoot
	}
	b, err := os.ReadFile(filepath.Join(stateRoot, prefix, "lab.json"))
	if err != nil {
		return nil, fmt.Errorf("open lab %s: %w", prefix, err)
	}
	l := &Lab{}
	if err := json.Unmarshal(b, l); err != nil {
		return nil, fmt.Errorf("open lab %s: %w", prefix, err)
	}
	return l, nil
}

// save writes the lab's state; callers hold no lock.
func (l *Lab) save() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.saveLocked()
}

func (l *Lab) saveLocked() error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(l.Dir, "lab.json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(l.Dir, "lab.json"))
}

// start starts a process in ns and records it before returning.
func (l *Lab) start(name, ns string, env []string, argv ...string) (Proc, error) {
	p, err := startProc(name, ns, l.LogPath(name), env, argv...)
	if err != nil {
		return p, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.Procs = append(l.Procs, p)
	return p, l.saveLocked()
}

// StartProcess starts argv inside namespace ns as a lab process: its output
// goes to LogPath(name) and Down ends it.
func (l *Lab) StartProcess(name, ns string, argv ...string) (Proc, error) {
	return l.start(name, ns, nil, argv...)
}

// ForgetProcess drops a process that has ended from the lab's records.
func (l *Lab) ForgetProcess(p Proc) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.Procs = slices.DeleteFunc(l.Procs, func(q Proc) bool { return q == p })
	_ = l.saveLocked()
}

// LogPath is where the output of the lab process name goes.
func (l *Lab) LogPath(name string) string { return filepath.Join(l.Dir, "logs", name+".log") }

// Proc returns the recorded process of that name.
func (l *Lab) Proc(name string) (Proc, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.Procs) - 1; i >= 0; i-- {
		if l.Procs[i].Name == name {
			return l.Procs[i], true
		}
	}
	return Proc{}, false
}

// Bin is the path of a lab binary (etcd, kube-apiserver, ...).
func (l *Lab) Bin(name string) string { return filepath.Join(l.BinDir, name) }

// Kubeconfig is the admin kubeconfig (for kubectl inside the lab namespaces).
func (l *Lab) Kubeconfig() string { return filepath.Join(l.Dir, "admin.kubeconfig") }

// RESTConfig is an admin client configuration that works from the root
// namespace: its connections are made inside the control-plane namespace.
func (l *Lab) RESTConfig() (*rest.Config, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rest != nil {
		return rest.CopyConfig(l.rest), nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", l.Kubeconfig())
	if err != nil {
		return nil, err
	}
	cfg.Dial = DialContext(l.ControlPlaneNS())
	cfg.QPS, cfg.Burst = 500, 1000
	l.rest = cfg
	return rest.CopyConfig(cfg), nil
}

// Kube is an admin clientset for the lab's API server.
func (l *Lab) Kube() *kubernetes.Clientset {
	l.mu.Lock()
	k := l.kube
	l.mu.Unlock()
	if k != nil {
		return k
	}
	cfg, err := l.RESTConfig()
	if err != nil {
		panic(fmt.Sprintf("lab %s: admin kubeconfig: %v", l.Prefix, err)) // written by Up
	}
	k = kubernetes.NewForConfigOrDie(cfg)
	l.mu.Lock()
	l.kube = k
	l.mu.Unlock()
	return k
}

// Detach ends this process's part of the lab (its kubelet) and leaves the
// lab running, as when the process that brought it up exits.
func (l *Lab) Detach() {
	if l.stopKubelet != nil {
		l.stopKubelet()
	}
}

// Down removes the lab: it ends every process it started and deletes every namespace.
func (l *Lab) Down() error {
	if l.stopKubelet != nil {
		l.stopKubelet()
	}
	return Down(l.Prefix, filepath.Dir(l.Dir))
}

// TestPrefix is a lab prefix for a test package: name plus a hash of the
// working directory, so two checkouts testing at once never share a lab while
// a rerun in one checkout replaces its own leftovers.
func TestPrefix(name string) string {
	wd, _ := os.Getwd()
	h := fnv.New32a()
	h.Write([]byte(wd))
	return fmt.Sprintf("%s%04x", name, h.Sum32()&0xffff)
}
