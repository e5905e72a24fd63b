package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// frrDir holds the router's private FRR configuration, sockets and pid files.
func (l *Lab) frrDir() string { return filepath.Join(l.Dir, "frr") }

// routerBGPConfig is FRR's starting configuration: an AS with no neighbours,
// which tests extend through Vtysh. eBGP routes are accepted without policy.
func routerBGPConfig() string {
	return fmt.Sprintf(`hostname router
router bgp %d
 bgp router-id %s
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 no bgp network import-check
!
`, RouterASN, Router4)
}

// startRouter runs zebra, bgpd and bfdd in the router namespace with private
// paths (so several labs, or a system FRR, never share a socket).
func (l *Lab) startRouter(ctx context.Context) error {
	d := l.frrDir()
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	files := map[string]string{
		"zebra.conf": "hostname router\n",
		"bgpd.conf":  routerBGPConfig(),
		"bfdd.conf":  "hostname router\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(d, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	if err := chownFRR(d); err != nil {
		return err
	}
	common := []string{"-u", "frr", "-g", "frr", "--vty_socket", d, "-z", filepath.Join(d, "zserv.api"), "-P", "0"}
	daemon := func(name string, extra ...string) error {
		argv := append([]string{"/usr/lib/frr/" + name}, common...)
		argv = append(argv, "-f", filepath.Join(d, name+".conf"), "-i", filepath.Join(d, name+".pid"))
		_, err := l.start("frr-"+name, l.RouterNS(), nil, append(argv, extra...)...)
		return err
	}
	if err := daemon("zebra"); err != nil {
		return err
	}
	if err := waitFile(ctx, filepath.Join(d, "zserv.api"), 10*time.Second); err != nil {
		return fmt.Errorf("zebra did not start (see %s): %w", l.LogPath("frr-zebra"), err)
	}
	if err := daemon("bgpd", "-p", "179"); err != nil {
		return err
	}
	if err := daemon("bfdd", "--bfdctl", filepath.Join(d, "bfdd.sock")); err != nil {
		return err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := l.Vtysh(ctx, "show bgp summary json")
		_, berr := l.Vtysh(ctx, "show bfd peers json")
		if err == nil && berr == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("FRR not answering: %v %v", err, berr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Vtysh runs FRR commands on the router (each argument one -c) and returns the output.
func (l *Lab) Vtysh(ctx context.Context, cmds ...string) (string, error) {
	args := []string{"--vty_socket", l.frrDir()}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := run(ctx, "vtysh", args...)
	if err != nil {
		return out, err
	}
	if strings.Contains(out, "% ") { // vtysh exits 0 on some command errors
		return out, fmt.Errorf("vtysh %q: %s", cmds, strings.TrimSpace(out))
	}
	return out, nil
}

// VtyshJSON runs one `show ... json` command on the router and decodes its output into v.
func (l *Lab) VtyshJSON(ctx context.Context, cmd string, v any) error {
	out, err := l.Vtysh(ctx, cmd)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("vtysh %q: decode: %w", cmd, err)
	}
	return nil
}

// ConfigureRouter applies configuration lines in FRR's configure mode.
func (l *Lab) ConfigureRouter(ctx context.Context, lines ...string) error {
	_, err := l.Vtysh(ctx, append([]string{"configure terminal"}, lines...)...)
	return err
}

func chownFRR(dir string) error {
	u, err := user.Lookup("frr")
	if err != nil {
		return fmt.Errorf("FRR's user: %w (is frr installed?)", err)
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

func waitFile(ctx context.Context, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s did not appear", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
