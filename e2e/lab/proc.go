package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is a process the lab started, recorded so that any later `down` (also
// from another process, after a crash) can end exactly it and nothing else.
type Proc struct {
	Name  string `json:"name"`
	NS    string `json:"ns"`
	PID   int    `json:"pid"`
	Start uint64 `json:"start"` // /proc/<pid>/stat starttime: guards against PID reuse
}

// startProc starts argv inside namespace ns in its own session, with output
// appended to logPath.
func startProc(name, ns, logPath string, env []string, argv ...string) (Proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return Proc{}, err
	}
	defer logf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return Proc{}, fmt.Errorf("start %s: %w", name, err)
	}
	go cmd.Wait() // reap it if this process outlives it
	start, err := startTime(cmd.Process.Pid)
	if err != nil {
		return Proc{}, fmt.Errorf("start %s: %w", name, err)
	}
	return Proc{Name: name, NS: ns, PID: cmd.Process.Pid, Start: start}, nil
}

// startTime reads the kernel's start time of pid (field 22 of /proc/pid/stat).
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	// The command name may hold spaces; fields start after its closing paren.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// Alive reports whether the recorded process still runs (and is the same one).
func (p Proc) Alive() bool {
	st, err := startTime(p.PID)
	if err != nil || st != p.Start {
		return false
	}
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && !strings.HasPrefix(strings.TrimSpace(string(b[i+1:])), "Z")
}

// Signal sends sig to the process if it is still the recorded one.
func (p Proc) Signal(sig syscall.Signal) error {
	if !p.Alive() {
		return errors.New(p.Name + " is not running")
	}
	return syscall.Kill(p.PID, sig)
}

// Stop ends the process: SIGTERM, then SIGKILL after grace.
func (p Proc) Stop(grace time.Duration) {
	if p.Signal(syscall.SIGTERM) != nil {
		return
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !p.Alive() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = p.Signal(syscall.SIGKILL)
	for i := 0; i < 100 && p.Alive(); i++ {
		time.Sleep(10 * time.Millisecond)
	}
}
