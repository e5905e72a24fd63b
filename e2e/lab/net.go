package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Exec runs a command inside one of the lab's namespaces and returns its output.
func (l *Lab) Exec(ctx context.Context, ns string, argv ...string) (string, error) {
	return inNS(ctx, ns, argv...)
}

// HTTPClient returns a client whose connections start in namespace ns.
// Keep-alives are off so every request opens a new connection (and so
// follows the current ARP/route state, as a fresh client would).
func HTTPClient(ns string, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{DialContext: DialContext(ns), DisableKeepAlives: true},
	}
}

// HTTPGet fetches url from inside namespace ns and returns the body.
func (l *Lab) HTTPGet(ctx context.Context, ns, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := HTTPClient(ns, 5*time.Second).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s from %s: %s", url, ns, resp.Status)
	}
	return string(body), nil
}

// Neighbour is one entry of a namespace's neighbour (ARP/NDP) table.
type Neighbour struct {
	IP    netip.Addr
	MAC   string
	Dev   string
	State []string
}

// Neighbours reads the neighbour table of namespace ns.
func (l *Lab) Neighbours(ctx context.Context, ns string) ([]Neighbour, error) {
	out, err := inNS(ctx, ns, "ip", "-j", "neigh", "show")
	if err != nil {
		return nil, err
	}
	var raw []struct {
		Dst    string   `json:"dst"`
		Dev    string   `json:"dev"`
		LLAddr string   `json:"lladdr"`
		State  []string `json:"state"`
	}
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		return nil, fmt.Errorf("neighbours of %s: %w", ns, err)
	}
	var ns2 []Neighbour
	for _, r := range raw {
		ip, err := netip.ParseAddr(r.Dst)
		if err != nil {
			continue
		}
		ns2 = append(ns2, Neighbour{IP: ip, MAC: r.LLAddr, Dev: r.Dev, State: r.State})
	}
	return ns2, nil
}

// MAC returns the hardware address of dev inside namespace ns.
func (l *Lab) MAC(ctx context.Context, ns, dev string) (string, error) {
	out, err := inNS(ctx, ns, "cat", "/sys/class/net/"+dev+"/address")
	return strings.TrimSpace(out), err
}

// CutLink takes the node's bridge port down: the node drops off the network
// at once without sending anything, as when its cable is pulled or it loses
// power (the node sees its carrier go).
func (l *Lab) CutLink(ctx context.Context, node string) error {
	return ipBatch(ctx, l.NetNS(), []string{"link set " + node + " down"})
}

// RestoreLink brings a cut node back onto the network.
func (l *Lab) RestoreLink(ctx context.Context, node string) error {
	return ipBatch(ctx, l.NetNS(), []string{"link set " + node + " up"})
}

// labpod is the pod server binary, built into the lab's directory at Up.
func (l *Lab) labpod() string { return filepath.Join(l.Dir, "labpod") }

// buildLabPod compiles the pod server (the go build cache makes this quick).
func (l *Lab) buildLabPod(ctx context.Context) error {
	_, err := l.Build(ctx, "github.com/heraldlb/herald/e2e/cmd/labpod")
	return err
}

// Build compiles a main package of the Herald module into the lab's
// directory, once per lab, and returns the binary's path. It must run inside
// the module (tests and `go run` from the checkout do).
func (l *Lab) Build(ctx context.Context, pkg string) (string, error) {
	out := filepath.Join(l.Dir, filepath.Base(pkg))
	l.buildMu.Lock()
	defer l.buildMu.Unlock()
	if l.built[pkg] {
		return out, nil
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s (run from inside the herald module): %w: %s", pkg, err, b)
	}
	if l.built == nil {
		l.built = map[string]bool{}
	}
	l.built[pkg] = true
	return out, nil
}

// HTTPGetEventually retries HTTPGet until it succeeds or timeout passes, for
// paths that need a moment to be programmed (kube-proxy syncs at most once a second).
func (l *Lab) HTTPGetEventually(ctx context.Context, ns, url string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		body, err := l.HTTPGet(ctx, ns, url)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return body, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// HTTPGetSteady is HTTPGetEventually, then waits until GETs on new
// connections have succeeded without a miss for longer than kube-proxy's
// sync period: one success proves one path, but with ECMP or several
// nodes another node's kube-proxy may not have programmed the Service yet.
func (l *Lab) HTTPGetSteady(ctx context.Context, ns, url string, timeout time.Duration) (string, error) {
	const streak, every = 1200 * time.Millisecond, 20 * time.Millisecond
	deadline := time.Now().Add(timeout)
	for {
		body, err := l.HTTPGetEventually(ctx, ns, url, time.Until(deadline))
		if err != nil {
			return body, err
		}
		for since := time.Now(); err == nil; time.Sleep(every) {
			if time.Since(since) > streak {
				return body, nil
			}
			body, err = l.HTTPGet(ctx, ns, url)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return body, fmt.Errorf("no steady success within %v: %w", timeout, err)
		}
	}
}
