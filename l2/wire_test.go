package l2_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"

	"github.com/heraldlb/herald/l2"
)

// wireEnv tells the test binary to act as TestWire's announcer: its value
// is "<interface> <address>...", the addresses to Set before Run.
const wireEnv = "HERALD_L2_WIRE_HELPER"

// wireReply prefixes the helper's answers on stdout.
const wireReply = "l2wire: "

// TestWireHelper is the announcer of TestWire, which runs this test binary
// inside a network namespace. It reads commands on stdin, one per line:
// "set <address>..." (Set on its interface), "eligible [<name>...]"
// (EligibleInterfaces); it answers each with one line. At EOF it stops the
// Announcer and checks that Run returns.
func TestWireHelper(t *testing.T) {
	spec := strings.Fields(os.Getenv(wireEnv))
	if len(spec) == 0 {
		t.Skip("only run by TestWire, inside a network namespace")
	}
	iface := spec[0]
	desired := func(addrs []string) map[netip.Addr][]string {
		out := map[netip.Addr][]string{}
		for _, s := range addrs {
			out[netip.MustParseAddr(s)] = []string{iface}
		}
		return out
	}
	log, err := zap.NewDevelopment() // to stderr, which TestWire shows when it fails
	if err != nil {
		t.Fatal(err)
	}
	a := l2.New(l2.Options{Log: log, GratuitousRepeat: 2, GratuitousInterval: 50 * time.Millisecond, RefreshInterval: -1})
	a.Set(desired(spec[1:])) // before Run: applied when it starts

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd := strings.Fields(in.Text())
		switch {
		case len(cmd) > 0 && cmd[0] == "set":
			a.Set(desired(cmd[1:]))
			fmt.Println(wireReply + "ok")
		case len(cmd) == 2 && cmd[0] == "probe":
			found, err := a.Probe(context.Background(), netip.MustParseAddr(cmd[1]), []string{iface}, 2, 300*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Println(wireReply + claims(found))
		case len(cmd) > 0 && cmd[0] == "conflicts":
			var seen []l2.Conflict
			for len(a.Conflicts()) > 0 {
				seen = append(seen, <-a.Conflicts())
			}
			fmt.Println(wireReply + claims(seen))
		case len(cmd) > 0 && cmd[0] == "eligible":
			names, err := l2.EligibleInterfaces(cmd[1:])
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(names)
			fmt.Println(wireReply + string(b))
		default:
			t.Fatalf("unknown command %q", in.Text())
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return 5s after its context ended")
	}
	fmt.Println(wireReply + "stopped")
}

// claims prints conflicts, without their times, as the wire test compares
// them.
func claims(cs []l2.Conflict) string {
	out := []string{}
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%s %s %s %s", c.Addr, c.Iface, c.MAC, c.Kind))
	}
	slices.Sort(out)
	out = slices.Compact(out)
	b, _ := json.Marshal(out)
	return string(b)
}

// TestWire runs an Announcer on a real link: two network namespaces joined
// by a veth pair, the Announcer (TestWireHelper) in one, the kernel of the
// other as the client. The VIPs are on no interface of the announcer's
// namespace, as a LoadBalancer IP is on no interface of a node, so every
// answer the peer gets comes from the Announcer. It proves, through the
// peer's neighbour table: broadcast ARP and multicast NS are answered with
// the announcer's MAC (and arping and ndisc6, when installed, get replies
// carrying it); unicast reachability probes are answered (the entry
// becomes REACHABLE, which only a solicited reply does); gratuitous ARP and
// unsolicited NA move an entry that points elsewhere, with no traffic from
// the peer; a removed address is not answered; the Announcer reopens its
// sockets after its link goes down and up; Probe hears the peer's kernel
// defend its own addresses (an ARP reply unicast to the announcer, an NA
// to all nodes) and nothing for a free one; the peer's duplicate address
// detection and gratuitous ARP (sent by its kernel when its MAC changes)
// for an answered address are reported as conflicts; EligibleInterfaces leaves out bridge ports and keeps bridges.
func TestWire(t *testing.T) {
	if testing.Short() {
		t.Skip("wire test skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("wire test needs root: it creates network namespaces and opens raw sockets")
	}
	for _, tool := range []string{"ip", "ping", "sysctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("wire test needs %s: %v", tool, err)
		}
	}

	sweepLeftovers(t)
	p := fmt.Sprintf("hl2t%d", os.Getpid())
	annNS, peerNS := p+"a", p+"p" // namespaces, and their veth ends
	annIf, peerIf := p+"a", p+"p"
	bridge, port, loose := p+"b", p+"x", p+"y"
	var (
		vip4a = netip.MustParseAddr("198.51.100.10")
		vip4b = netip.MustParseAddr("198.51.100.11")
		vip6a = netip.MustParseAddr("2001:db8:1::10")
		vip6b = netip.MustParseAddr("2001:db8:1::11")
	)

	ip(t, "netns", "add", annNS)
	t.Cleanup(func() { ipQuiet("netns", "del", annNS) })
	ip(t, "netns", "add", peerNS)
	t.Cleanup(func() { ipQuiet("netns", "del", peerNS) })
	for _, ns := range []string{annNS, peerNS} {
		ip(t, "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	}
	ip(t, "link", "add", annIf, "netns", annNS, "type", "veth", "peer", "name", peerIf, "netns", peerNS)
	ip(t, "-n", annNS, "addr", "add", "198.51.100.1/24", "dev", annIf)
	ip(t, "-n", annNS, "addr", "add", "2001:db8:1::1/64", "dev", annIf, "nodad")
	ip(t, "-n", peerNS, "addr", "add", "198.51.100.2/24", "dev", peerIf)
	ip(t, "-n", peerNS, "addr", "add", "2001:db8:1::2/64", "dev", peerIf, "nodad")
	ip(t, "-n", annNS, "link", "add", bridge, "type", "bridge")
	ip(t, "-n", annNS, "link", "add", port, "type", "veth", "peer", "name", loose)
	ip(t, "-n", annNS, "link", "set", port, "master", bridge)
	for _, l := range []string{"lo", annIf, bridge, port, loose} {
		ip(t, "-n", annNS, "link", "set", l, "up")
	}
	ip(t, "-n", peerNS, "link", "set", "lo", "up")
	ip(t, "-n", peerNS, "link", "set", peerIf, "up")
	// Probe a stale entry after 1s rather than 5s.
	ip(t, "netns", "exec", peerNS, "sysctl", "-qw",
		"net.ipv4.neigh."+peerIf+".delay_first_probe_time=1", "net.ipv6.neigh."+peerIf+".delay_first_probe_time=1")
	var link []struct{ Address string }
	if err := json.Unmarshal([]byte(ip(t, "-n", annNS, "-j", "link", "show", "dev", annIf)), &link); err != nil || len(link) != 1 {
		t.Fatalf("announcer MAC: %v %v", link, err)
	}
	annMAC := link[0].Address

	h := startHelper(t, annNS, annIf, vip4a, vip6a)
	peer := peerSide{ns: peerNS, dev: peerIf}

	t.Run("answers requests with its MAC", func(t *testing.T) {
		peer.ping(t, vip4a, vip6a)
		for _, vip := range []netip.Addr{vip4a, vip6a} {
			peer.waitFor(t, vip, 3*time.Second, func(n neighbour) bool { return n.LLAddr == annMAC && !n.failed() },
				"an entry with the announcer's MAC "+annMAC)
		}
	})

	t.Run("arping and ndisc6 get the announcer's MAC", func(t *testing.T) {
		tools := map[string][]string{
			"arping": {"arping", "-c1", "-w2", "-I", peerIf, vip4a.String()},
			"ndisc6": {"ndisc6", "-1", "-r1", "-w1000", vip6a.String(), peerIf},
		}
		for tool, args := range tools {
			if _, err := exec.LookPath(tool); err != nil {
				t.Logf("%s not installed: not checked", tool)
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", peerNS}, args...)...).CombinedOutput()
			cancel()
			if err != nil || !strings.Contains(strings.ToLower(string(out)), annMAC) {
				t.Errorf("%s: %v; want a reply from %s in:\n%s", tool, err, annMAC, out)
			}
		}
	})

	t.Run("answers unicast reachability probes", func(t *testing.T) {
		for _, vip := range []netip.Addr{vip4a, vip6a} {
			ip(t, "-n", peerNS, "neigh", "replace", vip.String(), "dev", peerIf, "lladdr", annMAC, "nud", "stale")
		}
		peer.ping(t, vip4a, vip6a) // STALE → DELAY → PROBE: unicast ARP request / NS to the announcer's MAC
		for _, vip := range []netip.Addr{vip4a, vip6a} {
			peer.waitFor(t, vip, 4*time.Second, func(n neighbour) bool { return n.LLAddr == annMAC && n.has("REACHABLE") },
				"REACHABLE (a solicited reply to the unicast probe)")
		}
	})

	t.Run("gratuitous ARP and unsolicited NA move the peer's entry", func(t *testing.T) {
		for _, vip := range []netip.Addr{vip4b, vip6b} {
			ip(t, "-n", peerNS, "neigh", "replace", vip.String(), "dev", peerIf, "lladdr", "02:00:00:00:00:01", "nud", "stale")
		}
		start := time.Now()
		h.do(t, "set", vip4a, vip6a, vip4b, vip6b)
		for _, vip := range []netip.Addr{vip4b, vip6b} {
			peer.waitFor(t, vip, 2*time.Second, func(n neighbour) bool { return n.LLAddr == annMAC },
				"the entry moved to the announcer's MAC "+annMAC)
		}
		t.Logf("entries moved %v after Set", time.Since(start).Round(time.Millisecond))
	})

	t.Run("a removed address is not answered", func(t *testing.T) {
		h.do(t, "set", vip4a, vip6a)
		for _, vip := range []netip.Addr{vip4b, vip6b} {
			ip(t, "-n", peerNS, "neigh", "del", vip.String(), "dev", peerIf)
		}
		peer.ping(t, vip4b, vip6b, vip4a, vip6a) // one second of resolving
		for _, vip := range []netip.Addr{vip4b, vip6b} {
			if n, ok := peer.neighbour(t, vip); ok && n.LLAddr != "" {
				t.Errorf("%s resolved to %s %v after its removal", vip, n.LLAddr, n.State)
			}
		}
		for _, vip := range []netip.Addr{vip4a, vip6a} {
			peer.waitFor(t, vip, time.Second, func(n neighbour) bool { return n.LLAddr == annMAC && !n.failed() }, "still answered")
		}
	})

	t.Run("recovers when its link goes down and up", func(t *testing.T) {
		ip(t, "-n", annNS, "link", "set", annIf, "down")
		time.Sleep(100 * time.Millisecond)
		ip(t, "-n", annNS, "link", "set", annIf, "up")
		for _, vip := range []netip.Addr{vip4a, vip6a} {
			ip(t, "-n", peerNS, "neigh", "flush", "to", vip.String(), "dev", peerIf)
		}
		deadline := time.Now().Add(8 * time.Second) // the longest wait between reopen attempts is 5s
		for _, vip := range []netip.Addr{vip4a, vip6a} {
			for {
				peer.ping(t, vip)
				if n, ok := peer.neighbour(t, vip); ok && n.LLAddr == annMAC && !n.failed() {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s not answered within 8s of the link coming back", vip)
				}
			}
		}
	})

	var peerLink []struct{ Address string }
	if err := json.Unmarshal([]byte(ip(t, "-n", peerNS, "-j", "link", "show", "dev", peerIf)), &peerLink); err != nil || len(peerLink) != 1 {
		t.Fatalf("peer MAC: %v %v", peerLink, err)
	}
	peerMAC := peerLink[0].Address

	t.Run("probe hears the owner of an address", func(t *testing.T) {
		ip(t, "-n", peerNS, "addr", "add", "198.51.100.20/32", "dev", peerIf)
		ip(t, "-n", peerNS, "addr", "add", "2001:db8:1::20/128", "dev", peerIf, "nodad")
		for addr, want := range map[string]string{
			"198.51.100.20":  jsonList([]string{"198.51.100.20 " + annIf + " " + peerMAC + " arp-reply"}),
			"2001:db8:1::20": jsonList([]string{"2001:db8:1::20 " + annIf + " " + peerMAC + " neighbor-advertisement"}),
			"198.51.100.21":  "[]",
			"2001:db8:1::21": "[]",
		} {
			if diff := cmp.Diff(want, h.do(t, "probe", addr)); diff != "" {
				t.Errorf("probe %s (-want +got):\n%s", addr, diff)
			}
		}
	})

	t.Run("reports the peer claiming an answered address", func(t *testing.T) {
		h.do(t, "conflicts") // forget the earlier ones
		ip(t, "netns", "exec", peerNS, "sysctl", "-qw", "net.ipv6.conf."+peerIf+".accept_dad=1", "net.ipv4.conf."+peerIf+".arp_notify=1")
		ip(t, "-n", peerNS, "addr", "add", vip4a.String()+"/32", "dev", peerIf)
		t.Cleanup(func() { ipQuiet("-n", peerNS, "addr", "del", vip4a.String()+"/32", "dev", peerIf) })
		// With arp_notify, a new MAC makes the kernel send gratuitous ARP
		// for each of its IPv4 addresses.
		newMAC := "02:00:00:00:00:77"
		ip(t, "-n", peerNS, "link", "set", "dev", peerIf, "address", newMAC)
		ip(t, "-n", peerNS, "addr", "add", vip6a.String()+"/128", "dev", peerIf) // the peer's kernel runs DAD for it
		t.Cleanup(func() { ipQuiet("-n", peerNS, "addr", "del", vip6a.String()+"/128", "dev", peerIf) })
		want := jsonList([]string{
			vip4a.String() + " " + annIf + " " + newMAC + " arp-request",
			vip6a.String() + " " + annIf + " " + newMAC + " dad",
		})
		var got []string
		deadline := time.Now().Add(3 * time.Second) // the kernel waits up to 1s before DAD
		for {
			var more []string
			if err := json.Unmarshal([]byte(h.do(t, "conflicts")), &more); err != nil {
				t.Fatal(err)
			}
			got = slices.Compact(slices.Sorted(slices.Values(append(got, more...))))
			if jsonList(got) == want || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if diff := cmp.Diff(want, jsonList(got)); diff != "" {
			t.Errorf("conflicts (-want +got):\n%s", diff)
		}
	})

	t.Run("eligible interfaces", func(t *testing.T) {
		want := []string{annIf, bridge, loose}
		slices.Sort(want)
		if diff := cmp.Diff(jsonList(want), h.do(t, "eligible")); diff != "" {
			t.Errorf("EligibleInterfaces(nil) (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(jsonList([]string{annIf}), h.do(t, "eligible", annIf, port, "lo", "nonexistent")); diff != "" {
			t.Errorf("EligibleInterfaces(narrowed) (-want +got):\n%s", diff)
		}
	})

	h.stop(t)
}

// sweepLeftovers deletes the namespaces of earlier runs of this test that
// were killed before their cleanup ran ("hl2t<pid>a", "hl2t<pid>p" whose
// process is gone).
func sweepLeftovers(t *testing.T) {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "hl2t")
		if !ok || len(rest) < 2 {
			continue
		}
		pid, err := strconv.Atoi(rest[:len(rest)-1])
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		t.Logf("deleting namespace %s left by a killed run", e.Name())
		ipQuiet("netns", "del", e.Name())
	}
}

func jsonList(names []string) string {
	b, _ := json.Marshal(names)
	return string(b)
}

// ip runs ip(8) and returns its output, failing the test on error.
func ip(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ipQuiet runs ip(8) for a cleanup, where a failure is no longer news.
func ipQuiet(args ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = exec.CommandContext(ctx, "ip", args...).Run()
}

// helper is TestWireHelper running in the announcer's namespace.
type helper struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	replies chan string
	exited  chan error

	mu  sync.Mutex
	log bytes.Buffer // everything it printed that is not a reply
}

func startHelper(t *testing.T, ns, iface string, addrs ...netip.Addr) *helper {
	t.Helper()
	spec := []string{iface}
	for _, a := range addrs {
		spec = append(spec, a.String())
	}
	h := &helper{replies: make(chan string, 16), exited: make(chan error, 1)}
	h.cmd = exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestWireHelper$", "-test.count=1", "-test.timeout=2m")
	h.cmd.Env = append(os.Environ(), wireEnv+"="+strings.Join(spec, " "))
	h.cmd.Stderr = writerFunc(func(b []byte) (int, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.log.Write(b)
	})
	stdout, err := h.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if h.stdin, err = h.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := h.cmd.Start(); err != nil {
		t.Fatalf("start the announcer: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if r, ok := strings.CutPrefix(sc.Text(), wireReply); ok {
				h.replies <- r
				continue
			}
			h.mu.Lock()
			h.log.WriteString(sc.Text() + "\n")
			h.mu.Unlock()
		}
		h.exited <- h.cmd.Wait()
	}()
	t.Cleanup(func() {
		h.stdin.Close()
		select {
		case <-h.exited:
		case <-time.After(5 * time.Second):
			h.cmd.Process.Kill()
			<-h.exited
		}
		if t.Failed() {
			h.mu.Lock()
			t.Logf("announcer output:\n%s", h.log.String())
			h.mu.Unlock()
		}
	})
	return h
}

// do sends a command and returns the helper's reply.
func (h *helper) do(t *testing.T, cmd string, args ...any) string {
	t.Helper()
	line := cmd
	for _, a := range args {
		line += fmt.Sprint(" ", a)
	}
	if _, err := io.WriteString(h.stdin, line+"\n"); err != nil {
		t.Fatalf("send %q: %v", line, err)
	}
	select {
	case r := <-h.replies:
		return r
	case err := <-h.exited:
		h.exited <- err
		t.Fatalf("announcer exited: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatalf("no reply to %q within 10s", line)
	}
	return ""
}

// stop ends the helper and checks that its Announcer stopped cleanly.
func (h *helper) stop(t *testing.T) {
	t.Helper()
	h.stdin.Close()
	select {
	case r := <-h.replies:
		if r != "stopped" {
			t.Errorf("announcer said %q on stopping", r)
		}
	case <-time.After(10 * time.Second):
		t.Error("announcer did not stop within 10s")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// peerSide is the client: the kernel of the other namespace.
type peerSide struct {
	ns, dev string
}

type neighbour struct {
	Dst    string   `json:"dst"`
	LLAddr string   `json:"lladdr"`
	State  []string `json:"state"`
}

func (n neighbour) has(state string) bool { return slices.Contains(n.State, state) }
func (n neighbour) failed() bool          { return n.has("FAILED") || n.has("INCOMPLETE") }

// ping sends one echo request to each address at once, which makes the
// kernel resolve or probe them; replies do not matter.
func (p peerSide) ping(t *testing.T, addrs ...netip.Addr) {
	t.Helper()
	var wg sync.WaitGroup
	for _, a := range addrs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = exec.CommandContext(ctx, "ip", "netns", "exec", p.ns, "ping", "-n", "-c1", "-W1", "-I", p.dev, a.String()).Run()
		})
	}
	wg.Wait()
}

func (p peerSide) neighbour(t *testing.T, addr netip.Addr) (neighbour, bool) {
	t.Helper()
	var ns []neighbour
	out := ip(t, "-n", p.ns, "-j", "neigh", "show", addr.String(), "dev", p.dev)
	if err := json.Unmarshal([]byte(out), &ns); err != nil {
		t.Fatalf("ip -j neigh: %v: %s", err, out)
	}
	if len(ns) == 0 {
		return neighbour{}, false
	}
	return ns[0], true
}

// waitFor polls addr's neighbour entry until ok accepts it, failing after
// limit.
func (p peerSide) waitFor(t *testing.T, addr netip.Addr, limit time.Duration, ok func(neighbour) bool, want string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		n, found := p.neighbour(t, addr)
		if found && ok(n) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: neighbour entry %+v (found %v) after %v, want %s", addr, n, found, limit, want)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
