// Command labexec starts one container process for the lab's kubelet: it
// enters the pod's network namespace, gives the process a mount namespace of
// its own whose root is the unpacked image (with /proc, /sys, a minimal /dev
// and the pod's ServiceAccount files bound in), drops every capability the
// container spec does not add, switches user and execs the entrypoint.
//
//	labexec -netns /run/netns/NS -root DIR [-bind SRC:DST]... [-ro] [-uid N -gid N]
//	        [-caps NET_RAW,...] [-no-new-privs] [-workdir DIR] [-hostname H]
//	        [-pidfile FILE] -- ARGV...
//
// Every step runs on the main OS thread, which is locked, so the namespaces
// it enters are the ones the entrypoint inherits. The entrypoint runs as
// PID 1 of a PID namespace of its own, as in a container: labexec forks it
// there, writes its host PID to -pidfile (the lab signals that process
// directly), forwards the signals it gets and exits with its status.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

func init() { runtime.LockOSThread() }

type binds []string

func (b *binds) String() string     { return strings.Join(*b, ",") }
func (b *binds) Set(s string) error { *b = append(*b, s); return nil }

type options struct {
	netns, root, caps, workdir string
	pidfile, hostname          string
	binds                      binds
	ro, noNewPrivs             bool
	uid, gid                   int
	argv                       []string
}

func main() {
	var o options
	flag.StringVar(&o.netns, "netns", "", "network namespace file to enter")
	flag.StringVar(&o.root, "root", "", "the container's root filesystem (required)")
	flag.Var(&o.binds, "bind", "SRC:DST bind mount, DST inside the root (repeatable; read-only)")
	flag.BoolVar(&o.ro, "ro", false, "mount the root read-only")
	flag.IntVar(&o.uid, "uid", -1, "user to run as")
	flag.IntVar(&o.gid, "gid", -1, "group to run as")
	flag.StringVar(&o.caps, "caps", "", "capabilities to keep, e.g. NET_RAW (all others are dropped)")
	flag.BoolVar(&o.noNewPrivs, "no-new-privs", false, "set no_new_privs")
	flag.StringVar(&o.workdir, "workdir", "/", "working directory inside the root")
	flag.StringVar(&o.hostname, "hostname", "", "the container's hostname (a UTS namespace of its own)")
	flag.StringVar(&o.pidfile, "pidfile", "", "file to write the entrypoint's host PID to")
	flag.Parse()
	o.argv = flag.Args()
	if o.root == "" || len(o.argv) == 0 {
		fmt.Fprintln(os.Stderr, "labexec: need -root and a command")
		os.Exit(2)
	}
	code, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "labexec:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(o options) (int, error) {
	if o.netns != "" {
		if err := enterNetNS(o.netns); err != nil {
			return 0, err
		}
	}
	if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
		return 0, fmt.Errorf("unshare mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return 0, fmt.Errorf("make mounts private: %w", err)
	}
	if err := mountRoot(o); err != nil {
		return 0, err
	}
	if o.hostname != "" {
		if err := unix.Unshare(unix.CLONE_NEWUTS); err != nil {
			return 0, fmt.Errorf("unshare UTS namespace: %w", err)
		}
		if err := unix.Sethostname([]byte(o.hostname)); err != nil {
			return 0, fmt.Errorf("hostname: %w", err)
		}
	}
	if err := dropCapabilities(o); err != nil {
		return 0, err
	}
	// The path is the image's: no lookup on the host.
	cmd := &exec.Cmd{Path: o.argv[0], Args: o.argv, Env: os.Environ(), Stdout: os.Stdout, Stderr: os.Stderr}
	cmd.Dir = o.workdir
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: o.root, Cloneflags: syscall.CLONE_NEWPID}
	if o.uid >= 0 || o.gid >= 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(max(o.uid, 0)), Gid: uint32(max(o.gid, 0)), Groups: []uint32{}}
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	if o.pidfile != "" {
		if err := os.WriteFile(o.pidfile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
			_ = cmd.Process.Kill()
			return 0, err
		}
	}
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()
	err := cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	return 0, err
}

func enterNetNS(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter %s: %w", path, err)
	}
	return nil
}

// mountRoot makes the root a mount point and mounts what a container sees
// besides its image: /proc, /sys (of the pod's network namespace), a /dev
// with null, zero, random and urandom, and the bind mounts.
func mountRoot(o options) error {
	r := o.root
	steps := []struct {
		src, dst, fstype string
		flags            uintptr
	}{
		{r, r, "", unix.MS_BIND | unix.MS_REC},
		{"proc", "proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"sysfs", "sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_RDONLY},
		{"tmpfs", "dev", "tmpfs", unix.MS_NOSUID | unix.MS_NOEXEC},
	}
	for _, s := range steps {
		dst := s.dst
		if dst != r {
			dst = filepath.Join(r, dst)
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		}
		if err := unix.Mount(s.src, dst, s.fstype, s.flags, ""); err != nil {
			return fmt.Errorf("mount %s on %s: %w", s.src, dst, err)
		}
	}
	for _, d := range []string{"null", "zero", "random", "urandom"} {
		if err := bind("/dev/"+d, filepath.Join(r, "dev", d), false); err != nil {
			return err
		}
	}
	for _, b := range o.binds {
		src, dst, ok := strings.Cut(b, ":")
		if !ok {
			return fmt.Errorf("bind %q: want SRC:DST", b)
		}
		if err := bind(src, filepath.Join(r, dst), true); err != nil {
			return err
		}
	}
	if o.ro {
		if err := unix.Mount("", r, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("remount %s read-only: %w", r, err)
		}
	}
	return nil
}

// bind mounts src (a file or a directory) on dst, creating dst.
func bind(src, dst string, ro bool) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if st.IsDir() {
		err = os.MkdirAll(dst, 0o755)
	} else if err = os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
		var f *os.File
		if f, err = os.OpenFile(dst, os.O_CREATE, 0o644); err == nil {
			f.Close()
		}
	}
	if err != nil {
		return err
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", src, dst, err)
	}
	if ro {
		if err := unix.Mount("", dst, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("remount %s read-only: %w", dst, err)
		}
	}
	return nil
}

// dropCapabilities keeps only the listed capabilities in the bounding set
// (a root process then holds exactly those after exec; others hold none)
// and sets no_new_privs; the child inherits both. Its user is set at fork.
func dropCapabilities(o options) error {
	keep := map[int]bool{}
	for c := range strings.SplitSeq(o.caps, ",") {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		n, ok := capNumbers[strings.TrimPrefix(strings.ToUpper(c), "CAP_")]
		if !ok {
			return fmt.Errorf("unknown capability %q", c)
		}
		keep[n] = true
	}
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		if keep[c] {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("drop capability %d: %w", c, err)
		}
	}
	if o.noNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("no_new_privs: %w", err)
		}
	}
	return nil
}

// capNumbers are the Linux capabilities a pod spec may name.
var capNumbers = map[string]int{
	"CHOWN": unix.CAP_CHOWN, "DAC_OVERRIDE": unix.CAP_DAC_OVERRIDE, "FOWNER": unix.CAP_FOWNER,
	"FSETID": unix.CAP_FSETID, "KILL": unix.CAP_KILL, "SETGID": unix.CAP_SETGID, "SETUID": unix.CAP_SETUID,
	"SETPCAP": unix.CAP_SETPCAP, "NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE, "NET_BROADCAST": unix.CAP_NET_BROADCAST,
	"NET_ADMIN": unix.CAP_NET_ADMIN, "NET_RAW": unix.CAP_NET_RAW, "IPC_LOCK": unix.CAP_IPC_LOCK,
	"SYS_CHROOT": unix.CAP_SYS_CHROOT, "SYS_PTRACE": unix.CAP_SYS_PTRACE, "SYS_ADMIN": unix.CAP_SYS_ADMIN,
	"SYS_NICE": unix.CAP_SYS_NICE, "SYS_RESOURCE": unix.CAP_SYS_RESOURCE, "SYS_TIME": unix.CAP_SYS_TIME,
	"MKNOD": unix.CAP_MKNOD, "AUDIT_WRITE": unix.CAP_AUDIT_WRITE, "SETFCAP": unix.CAP_SETFCAP,
	"BPF": unix.CAP_BPF, "PERFMON": unix.CAP_PERFMON,
}
