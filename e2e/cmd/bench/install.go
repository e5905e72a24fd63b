package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/heraldlb/herald/e2e/lab"
)

const (
	installPrefix     = "hbenchinst"
	installBudget     = 6 * time.Minute
	installEvery      = 20 * time.Millisecond
	installGetTimeout = time.Second
)

var installVIP = netip.MustParseAddr("198.51.100.210")

// benchInstall measures Herald installed from manifests/ into a fresh
// 3-node lab, as a user installs it: the images are in the lab registry,
// the ConfigMap is written and a Service is waiting for its address.
//
//   - install_to_first_ip_s: from the start of `kubectl apply -k` to the
//     first GET of the Service answered from the client on the bridge
//     (scheduling, image pulls, leader election, allocation, ARP, kube-proxy).
//     install_ref_kubectl_apply_ms beside it is the same apply of manifests/
//     alone (server-side dry run, Herald installed): the part of the number
//     that is kubectl and the API server.
//   - rollout_lost_gets: GETs (every 20 ms, each on a new connection, 1 s
//     timeout) lost while the speaker DaemonSet rolls every pod
//     (`kubectl rollout restart`, maxUnavailable 1), layer 2, and rollout_s
//     how long that rollout took.
func benchInstall(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, installBudget)
	defer cancel()
	l, err := lab.Up(ctx, lab.Config{Prefix: installPrefix})
	if err != nil {
		return err
	}
	defer func() {
		if err := l.Down(); err != nil {
			fmt.Fprintln(os.Stderr, "install: lab down:", err)
		}
	}()
	img, err := l.PushImages(ctx, "bench")
	if err != nil {
		return err
	}
	if err := l.ApplyHeraldConfig(ctx, l2Config); err != nil {
		return err
	}
	for _, n := range l.Nodes {
		if _, err := l.AddPod(ctx, lab.PodSpec{Namespace: l2NS, Name: "web-" + n.Name, Node: n.Name, Labels: map[string]string{"app": "web"}}); err != nil {
			return err
		}
	}
	if _, err := l.Kube().CoreV1().Services(l2NS).Create(ctx, l2Service("web", installVIP), metav1.CreateOptions{}); err != nil {
		return err
	}
	if err := l.WaitReadyEndpoints(ctx, l2NS, "web", len(l.Nodes), time.Minute); err != nil {
		return err
	}
	url := "http://" + netip.AddrPortFrom(installVIP, 80).String() + "/"
	client := lab.HTTPClient(l.ClientNS(), installGetTimeout)

	installed := make(chan error, 1)
	start := time.Now()
	go func() { installed <- l.InstallHerald(ctx, lab.Install{Images: img}) }()
	for lab.GetOK(ctx, client, url) != nil {
		select {
		case err := <-installed:
			if err != nil {
				return err
			}
			installed = nil // rolled out; keep waiting for the address
		case <-ctx.Done():
			return fmt.Errorf("no GET of %s answered: %w", url, ctx.Err())
		case <-time.After(installEvery):
		}
	}
	firstIP := time.Since(start)
	if installed != nil {
		if err := <-installed; err != nil {
			return err
		}
	}
	ref, err := applyDryRun(ctx, l)
	if err != nil {
		return err
	}
	fmt.Printf("install_to_first_ip_s=%.1f install_ref_kubectl_apply_ms=%d\n", firstIP.Seconds(), ms(ref))

	sent, lost, took, err := rollSpeakers(ctx, l, url)
	if err != nil {
		return err
	}
	fmt.Printf("rollout_lost_gets=%d rollout_gets=%d rollout_s=%.1f\n", lost, sent, took.Seconds())
	return nil
}

// applyDryRun times `kubectl apply --server-side --dry-run=server -k
// manifests/` against the installed lab.
func applyDryRun(ctx context.Context, l *lab.Lab) (time.Duration, error) {
	root, err := lab.ModuleRoot()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if out, err := l.Kubectl(ctx, "apply", "--server-side", "--dry-run=server", "--field-manager=herald-lab", "-k", filepath.Join(root, "manifests")); err != nil {
		return 0, fmt.Errorf("kubectl apply --dry-run=server: %w: %s", err, out)
	}
	return time.Since(start), nil
}

// rollSpeakers restarts the speaker DaemonSet's rollout while GETting url
// from the client every installEvery (lab.Probe) and returns the GETs sent
// and lost and how long the rollout took.
func rollSpeakers(ctx context.Context, l *lab.Lab, url string) (sent, lost int, took time.Duration, err error) {
	p := lab.StartProbe(l.ClientNS(), url, installEvery, installBudget)
	defer p.Stop()
	time.Sleep(time.Second)
	start := time.Now()
	if out, err := l.Kubectl(ctx, "-n", lab.HeraldNamespace, "rollout", "restart", "daemonset/herald-speaker"); err != nil {
		return 0, 0, 0, fmt.Errorf("rollout restart: %w: %s", err, out)
	}
	err = l.WaitRollout(ctx, 3*time.Minute)
	took = time.Since(start)
	time.Sleep(time.Second)
	return p.Sent(), p.Failed(), took, err
}
