// Command lab brings Herald's test lab up and down and runs commands in it.
//
//	lab [-prefix hdemo] up [-nodes 3] [-proxy-mode iptables|nftables]
//	lab [-prefix hdemo] status
//	lab [-prefix hdemo] exec <cp|client|router|ext|net|nodeN> [--] command...
//	lab [-prefix hdemo] kubectl args...
//	lab [-prefix hdemo] demo [-nodes 3] [-proxy-mode ...] [-mode l2|bgp]
//	lab [-prefix hdemo] down [-all]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/heraldlb/herald/e2e/lab"
)

func main() {
	global := flag.NewFlagSet("lab", flag.ExitOnError)
	prefix := global.String("prefix", "hdemo", "name prefix of the lab's namespaces")
	_ = global.Parse(os.Args[1:])
	if global.NArg() == 0 {
		usage()
	}
	verb, rest := global.Arg(0), global.Args()[1:]

	fs := flag.NewFlagSet(verb, flag.ExitOnError)
	nodes := fs.Int("nodes", 3, "number of nodes (up, demo)")
	mode := fs.String("proxy-mode", "iptables", "kube-proxy mode: iptables or nftables (up, demo)")
	all := fs.Bool("all", false, "remove every lab on this machine (down)")
	demoMode := fs.String("mode", "l2", "how Herald advertises in the demo: l2 (ARP/NDP) or bgp (to the lab's router)")
	if verb != "exec" && verb != "kubectl" {
		_ = fs.Parse(rest)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := lab.Config{Prefix: *prefix, Nodes: *nodes, ProxyMode: *mode}

	var err error
	switch verb {
	case "up":
		_, err = up(ctx, cfg)
	case "down":
		err = down(*prefix, *all)
	case "status":
		err = status(*prefix)
	case "exec":
		err = execIn(*prefix, rest)
	case "kubectl":
		err = execIn(*prefix, append([]string{"cp", "kubectl"}, rest...))
	case "demo":
		err = demo(ctx, cfg, *demoMode)
	default:
		usage()
	}
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			os.Exit(exit.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "lab:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: lab [-prefix P] up|down|status|exec|kubectl|demo [args]")
	os.Exit(2)
}

func up(ctx context.Context, cfg lab.Config) (*lab.Lab, error) {
	start := time.Now()
	l, err := lab.Up(ctx, cfg)
	if err != nil {
		return nil, err
	}
	fmt.Printf("lab %s up in %.1fs: %d nodes, kube-proxy %s, state in %s\n",
		l.Prefix, time.Since(start).Seconds(), len(l.Nodes), l.ProxyMode, l.Dir)
	return l, nil
}

func down(prefix string, all bool) error {
	prefixes := []string{prefix}
	if all {
		prefixes = lab.Labs("")
	}
	var errs []error
	for _, p := range prefixes {
		if err := lab.Down(p, ""); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Printf("lab %s removed\n", p)
	}
	return errors.Join(errs...)
}

func status(prefix string) error {
	l, err := lab.Open(prefix, "")
	if err != nil {
		return err
	}
	fmt.Printf("lab %s (started %s, kube-proxy %s, state %s)\n", l.Prefix, l.Started.Format(time.RFC3339), l.ProxyMode, l.Dir)
	for _, p := range l.Procs {
		state := "running"
		if !p.Alive() {
			state = "EXITED"
		}
		fmt.Printf("  %-32s pid %-7d %-16s %s\n", p.Name, p.PID, p.NS, state)
	}
	for _, n := range l.Nodes {
		fmt.Printf("  %s: %s %s pods %s %s (netns %s)\n", n.Name, n.IPv4, n.IPv6, n.Pod4, n.Pod6, n.NS)
	}
	return nil
}

// execIn runs argv[1:] in the lab namespace named by argv[0], with the lab's
// binaries on PATH and the admin kubeconfig in KUBECONFIG.
func execIn(prefix string, argv []string) error {
	if len(argv) > 1 && argv[1] == "--" {
		argv = append(argv[:1], argv[2:]...)
	}
	if len(argv) < 2 {
		return errors.New("exec: want <cp|client|router|ext|net|nodeN> [--] command...")
	}
	l, err := lab.Open(prefix, "")
	if err != nil {
		return err
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", prefix + "-" + argv[0]}, argv[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "KUBECONFIG="+l.Kubeconfig(), "PATH="+l.BinDir+":"+os.Getenv("PATH"))
	return cmd.Run()
}
