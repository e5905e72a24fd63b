package bgp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The integration tests run the whole test binary inside a network
// namespace (GoBGP dials from its own goroutines, so a per-thread setns
// would not do), joined by a veth pair to a second namespace running FRR.
//
//	test ns: veth h0  198.51.100.1, .11  2001:db8::1
//	FRR ns:  veth r0  198.51.100.2, .3   2001:db8::2   AS 64512
const (
	envInside = "HERALD_BGP_TEST_NS"
	envFRR    = "HERALD_BGP_TEST_FRR"
	envSkip   = "HERALD_BGP_TEST_SKIP"

	routerASN = 64512
)

func TestMain(m *testing.M) {
	if os.Getenv(envInside) != "" || os.Getenv(envSkip) != "" {
		os.Exit(m.Run())
	}
	why := ""
	if os.Geteuid() != 0 {
		why = "not root"
	} else if _, err := os.Stat("/usr/lib/frr/bgpd"); err != nil {
		why = "FRR (/usr/lib/frr/bgpd) not installed"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "iproute2 not installed"
	}
	if why != "" {
		os.Setenv(envSkip, why)
		os.Exit(m.Run())
	}
	os.Exit(runInNamespace())
}

func sh(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func runInNamespace() int {
	suffix := fmt.Sprintf("%x", os.Getpid()&0xffffff)
	host, router := "hbgp"+suffix+"h", "hbgp"+suffix+"r"
	dir, err := os.MkdirTemp("", "hbgp-frr-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var procs []*exec.Cmd
	cleanup := func() {
		for _, p := range procs {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
		_ = sh("ip", "netns", "del", host)
		_ = sh("ip", "netns", "del", router)
		os.RemoveAll(dir)
	}
	defer cleanup()
	setup := [][]string{
		{"ip", "netns", "add", host},
		{"ip", "netns", "add", router},
		{"ip", "-n", host, "link", "set", "lo", "up"},
		{"ip", "-n", router, "link", "set", "lo", "up"},
		{"ip", "-n", host, "link", "add", "h0", "type", "veth", "peer", "name", "r0", "netns", router},
		{"ip", "-n", host, "addr", "add", "198.51.100.1/24", "dev", "h0"},
		{"ip", "-n", host, "addr", "add", "198.51.100.11/24", "dev", "h0"},
		{"ip", "-n", host, "addr", "add", "2001:db8::1/64", "dev", "h0", "nodad"},
		{"ip", "-n", router, "addr", "add", "198.51.100.2/24", "dev", "r0"},
		{"ip", "-n", router, "addr", "add", "198.51.100.3/24", "dev", "r0"},
		{"ip", "-n", router, "addr", "add", "2001:db8::2/64", "dev", "r0", "nodad"},
		{"ip", "-n", host, "link", "set", "h0", "up"},
		{"ip", "-n", router, "link", "set", "r0", "up"},
	}
	for _, c := range setup {
		if err := sh(c...); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	confs := map[string]string{
		"zebra.conf": "hostname router\n",
		"bfdd.conf":  "hostname router\n",
		"bgpd.conf": fmt.Sprintf(`hostname router
router bgp %d
 bgp router-id 198.51.100.2
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 no bgp network import-check
!
`, routerASN),
	}
	for n, body := range confs {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(body), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	if err := chownFRR(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	log, err := os.Create(filepath.Join(dir, "frr.log"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer log.Close()
	common := []string{"-u", "frr", "-g", "frr", "--vty_socket", dir, "-z", filepath.Join(dir, "zserv.api"), "-P", "0"}
	daemon := func(name string, extra ...string) error {
		args := append([]string{"netns", "exec", router, "/usr/lib/frr/" + name}, common...)
		args = append(args, "-f", filepath.Join(dir, name+".conf"), "-i", filepath.Join(dir, name+".pid"))
		c := exec.Command("ip", append(args, extra...)...)
		c.Stdout, c.Stderr = log, log
		if err := c.Start(); err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		procs = append(procs, c)
		return nil
	}
	if err := daemon("zebra"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for i := 0; ; i++ {
		if _, err := os.Stat(filepath.Join(dir, "zserv.api")); err == nil {
			break
		}
		if i > 200 {
			fmt.Fprintln(os.Stderr, "zebra did not start")
			return 1
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := daemon("bgpd", "-p", "179"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := daemon("bfdd", "--bfdctl", filepath.Join(dir, "bfdd.sock")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.Setenv(envFRR, dir)
	for i := 0; ; i++ {
		if _, err := vtysh("show bgp summary json"); err == nil {
			break
		}
		if i > 300 {
			fmt.Fprintln(os.Stderr, "FRR not answering")
			return 1
		}
		time.Sleep(50 * time.Millisecond)
	}
	child := exec.Command("ip", append([]string{"netns", "exec", host, os.Args[0]}, os.Args[1:]...)...)
	child.Env = append(os.Environ(), envInside+"=1")
	child.Stdout, child.Stderr = os.Stdout, os.Stderr
	if err := child.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			if out, err := os.ReadFile(filepath.Join(dir, "frr.log")); err == nil && len(out) > 0 {
				fmt.Fprintf(os.Stderr, "--- FRR output ---\n%s\n", out)
			}
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func chownFRR(dir string) error {
	u, err := user.Lookup("frr")
	if err != nil {
		return fmt.Errorf("FRR's user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(path, uid, gid)
	})
}

// needFRR skips a test outside the lab namespace.
func needFRR(t *testing.T) {
	t.Helper()
	if why := os.Getenv(envSkip); why != "" {
		t.Skipf("needs root and FRR in a network namespace: %s", why)
	}
}

func vtysh(cmds ...string) (string, error) {
	args := []string{"--vty_socket", os.Getenv(envFRR)}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "vtysh", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("vtysh %q: %w: %s", cmds, err, out)
	}
	if strings.Contains(string(out), "% ") {
		return string(out), fmt.Errorf("vtysh %q: %s", cmds, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func vtyshJSON(cmd string, v any) error {
	out, err := vtysh(cmd)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("vtysh %q: decode: %w (%s)", cmd, err, out)
	}
	return nil
}
