package lab

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// container is one container of a pod the lab kubelet runs.
type container struct {
	spec     corev1.Container
	procName string // the lab process name, see ContainerProcName
	image    pulledImage
	argv     []string
	env      []string
	exec     []string // labexec flags before "--"

	mu        sync.Mutex
	proc      Proc
	running   bool
	startedAt metav1.Time
	ready     bool
	restarts  int32
	lastTerm  *corev1.ContainerStateTerminated
	waiting   string // reason while not running
	exited    chan struct{}
}

// ContainerProcName is the lab process name of a container the kubelet
// runs: a DaemonSet's pods are named by the DaemonSet and the node
// (SpeakerName(node) names Herald's speaker there), a Deployment's by the
// Deployment alone (its replicas share the name and the log; Proc returns
// the latest), other pods by the pod.
func ContainerProcName(pod *corev1.Pod, container string) string {
	name := pod.Name
	for _, o := range pod.OwnerReferences {
		if o.Controller == nil || !*o.Controller {
			continue
		}
		switch h := pod.Labels["pod-template-hash"]; {
		case o.Kind == "DaemonSet":
			name = o.Name + "-" + pod.Spec.NodeName
		case o.Kind == "ReplicaSet" && h != "":
			name = strings.TrimSuffix(o.Name, "-"+h)
		}
	}
	if len(pod.Spec.Containers) > 1 {
		name += "-" + container
	}
	return name
}

// newContainer pulls the image and resolves the command line, environment
// and security settings of spec.
func (k *kubelet) newContainer(ctx context.Context, pod *corev1.Pod, spec corev1.Container, sb sandbox) (*container, error) {
	root := filepath.Join(k.podDir(pod.UID), "containers", spec.Name)
	img, err := k.pull(ctx, spec.Image, root)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", spec.Image, err)
	}
	env, err := k.containerEnv(ctx, pod, spec, img, sb)
	if err != nil {
		return nil, err
	}
	// Kubernetes' rule: command replaces the entrypoint (and drops the
	// image's cmd), args replace the cmd.
	argv := slices.Concat(img.Entrypoint, img.Cmd)
	switch {
	case len(spec.Command) > 0:
		argv = slices.Concat(spec.Command, spec.Args)
	case len(spec.Args) > 0:
		argv = slices.Concat(img.Entrypoint, spec.Args)
	}
	if len(argv) == 0 {
		return nil, errors.New("no command: the image has no entrypoint and the spec none")
	}
	for i, a := range argv {
		argv[i] = expandVars(a, env)
	}
	flags, err := k.execFlags(pod, spec, img, sb, root)
	if err != nil {
		return nil, err
	}
	return &container{spec: spec, procName: ContainerProcName(pod, spec.Name), image: img, argv: argv, env: env, exec: flags, waiting: "ContainerCreating"}, nil
}

// execFlags are labexec's flags: the sandbox, the root, the ServiceAccount
// mounts and the security context.
func (k *kubelet) execFlags(pod *corev1.Pod, spec corev1.Container, img pulledImage, sb sandbox, root string) ([]string, error) {
	flags := []string{"-netns", filepath.Join(netnsDir, sb.ns), "-root", root, "-hostname", hostname(pod)}
	for _, m := range spec.VolumeMounts {
		if !isTokenVolume(pod, m.Name) {
			return nil, fmt.Errorf("volume %q: the lab kubelet mounts only the projected ServiceAccount token", m.Name)
		}
		flags = append(flags, "-bind", k.serviceAccountDir(pod.UID)+":"+m.MountPath)
	}
	sc := effectiveSecurity(pod, spec)
	uid, gid := imageUser(img.User)
	if sc.RunAsUser != nil {
		uid = *sc.RunAsUser
	}
	if sc.RunAsGroup != nil {
		gid = *sc.RunAsGroup
	}
	if sc.RunAsNonRoot != nil && *sc.RunAsNonRoot && uid == 0 {
		return nil, errors.New("CreateContainerConfigError: runAsNonRoot and the image runs as root")
	}
	flags = append(flags, "-uid", strconv.FormatInt(uid, 10), "-gid", strconv.FormatInt(gid, 10))
	if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		flags = append(flags, "-ro")
	}
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		flags = append(flags, "-no-new-privs")
	}
	flags = append(flags, "-caps", strings.Join(capabilities(sc), ","))
	if img.WorkingDir != "" || spec.WorkingDir != "" {
		flags = append(flags, "-workdir", cmp.Or(spec.WorkingDir, img.WorkingDir))
	}
	return flags, nil
}

// effectiveSecurity merges the pod's security context under the container's.
func effectiveSecurity(pod *corev1.Pod, spec corev1.Container) corev1.SecurityContext {
	var sc corev1.SecurityContext
	if p := pod.Spec.SecurityContext; p != nil {
		sc.RunAsUser, sc.RunAsGroup, sc.RunAsNonRoot = p.RunAsUser, p.RunAsGroup, p.RunAsNonRoot
	}
	if c := spec.SecurityContext; c != nil {
		if c.RunAsUser != nil {
			sc.RunAsUser = c.RunAsUser
		}
		if c.RunAsGroup != nil {
			sc.RunAsGroup = c.RunAsGroup
		}
		if c.RunAsNonRoot != nil {
			sc.RunAsNonRoot = c.RunAsNonRoot
		}
		sc.ReadOnlyRootFilesystem, sc.AllowPrivilegeEscalation, sc.Capabilities = c.ReadOnlyRootFilesystem, c.AllowPrivilegeEscalation, c.Capabilities
		sc.Privileged = c.Privileged
	}
	return sc
}

// defaultCaps are the capabilities a container runtime grants by default
// (containerd's list).
var defaultCaps = []string{"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"}

func capabilities(sc corev1.SecurityContext) []string {
	caps := slices.Clone(defaultCaps)
	if c := sc.Capabilities; c != nil {
		for _, d := range c.Drop {
			if d == "ALL" {
				caps = nil
				break
			}
			caps = slices.DeleteFunc(caps, func(s string) bool { return s == string(d) })
		}
		for _, a := range c.Add {
			caps = append(caps, string(a))
		}
	}
	return caps
}

// imageUser parses the image's "uid[:gid]" (names are not resolved).
func imageUser(u string) (int64, int64) {
	us, gs, _ := strings.Cut(u, ":")
	uid, _ := strconv.ParseInt(us, 10, 64)
	gid, err := strconv.ParseInt(gs, 10, 64)
	if err != nil {
		gid = uid
	}
	return uid, gid
}

// expandVars replaces $(NAME) with the variable's value and $$ with $, as
// Kubernetes does for command and args; unknown references stay.
func expandVars(s string, env []string) string {
	vals := map[string]string{}
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		vals[k] = v
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		if s[i+1] == '$' {
			b.WriteByte('$')
			i++
			continue
		}
		if s[i+1] == '(' {
			if j := strings.IndexByte(s[i:], ')'); j > 0 {
				if v, ok := vals[s[i+2:i+j]]; ok {
					b.WriteString(v)
					i += j
					continue
				}
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// loop runs the container until stop says the pod ends, restarting it
// after it exits with kubelet's backoff (unless a test holds it).
func (c *container) loop(ctx context.Context, w *podWorker, stop <-chan time.Duration) {
	for {
		retry := time.Duration(0)
		if err := c.start(w); err != nil {
			c.setWaiting("RunContainerError: "+err.Error(), w)
			retry = 2 * time.Second
		} else {
			probeCtx, cancel := context.WithCancel(ctx)
			go c.probe(probeCtx, w)
			select {
			case grace := <-stop:
				cancel()
				c.terminate(grace)
				<-c.exited
				return
			case <-c.exited:
				cancel()
			case <-ctx.Done():
				cancel()
				c.terminate(0)
				return
			}
		}
		delay := max(retry, backoff(int(c.restartCount())-1, c.lastRun()))
		if delay > 0 {
			c.setWaiting("CrashLoopBackOff", w)
		}
		timer := time.NewTimer(delay)
		for held := true; held; {
			select {
			case <-stop:
				timer.Stop()
				return
			case <-ctx.Done():
				return
			case <-timer.C:
				timer.Reset(100 * time.Millisecond)
				held = w.k.isHeld(c.procName)
			}
		}
		timer.Stop()
		if restartPolicyEnds(w.latest().Spec.RestartPolicy, c) {
			<-stop
			return
		}
	}
}

func restartPolicyEnds(p corev1.RestartPolicy, c *container) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return p == corev1.RestartPolicyNever || (p == corev1.RestartPolicyOnFailure && c.lastTerm != nil && c.lastTerm.ExitCode == 0)
}

// start runs the container's process through labexec and records it as a
// lab process (so Down ends it even if this process dies).
func (c *container) start(w *podWorker) error {
	l := w.k.l
	labexec, err := l.Build(context.Background(), "github.com/heraldlb/herald/e2e/cmd/labexec")
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(l.LogPath(c.procName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	pidfile := filepath.Join(w.k.podDir(w.latest().UID), "containers", c.spec.Name+".pid")
	_ = os.Remove(pidfile)
	cmd := exec.Command(labexec, slices.Concat(c.exec, []string{"-pidfile", pidfile, "--"}, c.argv)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = c.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	// The lab signals the entrypoint itself (PID 1 of its PID namespace),
	// not labexec, which forks it and only waits.
	pid, err := waitPIDFile(pidfile, cmd)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return err
	}
	st, _ := startTime(pid)
	p := Proc{Name: c.procName, NS: w.sb.ns, PID: pid, Start: st}
	l.mu.Lock()
	l.Procs = append(l.Procs, p)
	_ = l.saveLocked()
	l.mu.Unlock()
	exited := make(chan struct{})
	c.mu.Lock()
	c.proc, c.running, c.ready, c.waiting, c.exited = p, true, false, "", exited
	c.startedAt = metav1.Now()
	c.mu.Unlock()
	w.k.logf("%s: started pid %d: %s", c.procName, p.PID, strings.Join(c.argv, " "))
	w.markDirty()
	go func() {
		err := cmd.Wait()
		code := int32(0)
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = int32(ee.ExitCode())
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = 128 + int32(ws.Signal())
			}
		}
		l.ForgetProcess(p)
		now := metav1.Now()
		c.mu.Lock()
		reason := "Completed"
		if code != 0 {
			reason = "Error"
		}
		c.lastTerm = &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, StartedAt: c.startedAt, FinishedAt: now, ContainerID: containerID(p)}
		c.running, c.ready = false, false
		c.restarts++
		c.mu.Unlock()
		w.k.logf("%s: pid %d exited with %d", c.procName, p.PID, code)
		w.markDirty()
		close(exited)
	}()
	return nil
}

// waitPIDFile reads the entrypoint's PID that labexec writes once it has
// forked it.
func waitPIDFile(path string, labexec *exec.Cmd) (int, error) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return strconv.Atoi(string(b))
		}
		if st, err := startTime(labexec.Process.Pid); err != nil || !(Proc{PID: labexec.Process.Pid, Start: st}).Alive() {
			break
		}
	}
	return 0, fmt.Errorf("labexec did not start the entrypoint (see the container's log)")
}

func containerID(p Proc) string { return fmt.Sprintf("lab://%d-%d", p.PID, p.Start) }

// terminate sends SIGTERM, then SIGKILL after grace.
func (c *container) terminate(grace time.Duration) {
	c.mu.Lock()
	p, running, exited := c.proc, c.running, c.exited
	c.mu.Unlock()
	if !running {
		return
	}
	_ = syscall.Kill(p.PID, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(grace):
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
	}
}

func (c *container) setWaiting(reason string, w *podWorker) {
	c.mu.Lock()
	c.waiting = reason
	c.mu.Unlock()
	w.markDirty()
}

func (c *container) restartCount() int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.restarts
}

func (c *container) lastRun() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastTerm == nil {
		return 0
	}
	return c.lastTerm.FinishedAt.Sub(c.lastTerm.StartedAt.Time)
}
