package lab

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// status is the pod status the worker reports: phase, IPs, conditions and
// one status per container, keeping each condition's transition time.
func (w *podWorker) status(cur *corev1.Pod) corev1.PodStatus {
	w.mu.Lock()
	sb, cs, setupErr := w.sb, w.containers, w.setupErr
	w.mu.Unlock()
	st := corev1.PodStatus{Phase: corev1.PodPending, QOSClass: cur.Status.QOSClass, StartTime: &w.started}
	if sb.ns != "" {
		st.HostIP = sb.node.IPv4.String()
		st.HostIPs = []corev1.HostIP{{IP: sb.node.IPv4.String()}, {IP: sb.node.IPv6.String()}}
		st.PodIP = sb.ip4.String()
		st.PodIPs = []corev1.PodIP{{IP: sb.ip4.String()}, {IP: sb.ip6.String()}}
	}
	allReady := len(cs) > 0
	for _, spec := range cur.Spec.Containers {
		s := corev1.ContainerStatus{Name: spec.Name, Image: spec.Image, Started: new(false)}
		var c *container
		for _, x := range cs {
			if x.spec.Name == spec.Name {
				c = x
			}
		}
		if c == nil {
			reason := "ContainerCreating"
			if setupErr != "" {
				reason = "ErrImagePull"
			}
			s.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: setupErr}
			allReady = false
		} else {
			s = c.status()
			allReady = allReady && s.Ready
			if s.State.Running != nil || s.RestartCount > 0 {
				st.Phase = corev1.PodRunning
			}
		}
		st.ContainerStatuses = append(st.ContainerStatuses, s)
	}
	ready := corev1.ConditionFalse
	if allReady {
		ready = corev1.ConditionTrue
	}
	sandboxReady := corev1.ConditionFalse
	if sb.ns != "" {
		sandboxReady = corev1.ConditionTrue
	}
	for _, c := range []corev1.PodCondition{
		{Type: corev1.PodReadyToStartContainers, Status: sandboxReady},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue},
		{Type: corev1.ContainersReady, Status: ready},
		{Type: corev1.PodReady, Status: ready},
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
	} {
		c.LastTransitionTime = metav1.Now()
		for _, old := range cur.Status.Conditions {
			if old.Type == c.Type && old.Status == c.Status {
				c.LastTransitionTime = old.LastTransitionTime
			}
		}
		st.Conditions = append(st.Conditions, c)
	}
	return st
}

func (c *container) status() corev1.ContainerStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := corev1.ContainerStatus{
		Name: c.spec.Name, Image: c.spec.Image, ImageID: c.image.ImageID,
		Ready: c.ready, RestartCount: c.restarts, Started: new(c.running),
		ContainerID: containerID(c.proc),
	}
	if c.lastTerm != nil {
		s.LastTerminationState.Terminated = c.lastTerm
	}
	if c.running {
		s.State.Running = &corev1.ContainerStateRunning{StartedAt: c.startedAt}
	} else {
		s.State.Waiting = &corev1.ContainerStateWaiting{Reason: c.waiting}
	}
	return s
}

// probe runs the container's readiness and liveness probes while it runs.
// A container without a readiness probe is ready once started; a failed
// liveness probe ends the process (the loop then restarts it).
func (c *container) probe(ctx context.Context, w *podWorker) {
	if c.spec.ReadinessProbe == nil {
		c.setReady(true, w)
	} else {
		go c.runProbe(ctx, w, c.spec.ReadinessProbe, func(ok bool) { c.setReady(ok, w) })
	}
	if c.spec.LivenessProbe != nil {
		go c.runProbe(ctx, w, c.spec.LivenessProbe, func(ok bool) {
			if !ok {
				w.k.logf("%s: liveness probe failed, restarting", c.procName)
				c.terminate(graceOf(w.latest()))
			}
		})
	}
}

func graceOf(pod *corev1.Pod) time.Duration {
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
		return time.Duration(*g) * time.Second
	}
	return 30 * time.Second
}

func (c *container) setReady(ok bool, w *podWorker) {
	c.mu.Lock()
	changed := c.ready != ok && c.running
	if c.running {
		c.ready = ok
	}
	c.mu.Unlock()
	if changed {
		w.markDirty()
	}
}

// runProbe calls report with each result that crosses the probe's success
// or failure threshold, first after the initial delay, then every period.
func (c *container) runProbe(ctx context.Context, w *podWorker, p *corev1.Probe, report func(bool)) {
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	successes, failures := int32(0), int32(0)
	delay := time.Duration(p.InitialDelaySeconds) * time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = period
		if err := c.check(ctx, w, p, timeout); err != nil {
			successes, failures = 0, failures+1
			if failures == max(p.FailureThreshold, 1) {
				report(false)
			}
		} else {
			successes, failures = successes+1, 0
			if successes == max(p.SuccessThreshold, 1) {
				report(true)
			}
		}
	}
}

// check runs one HTTP GET or TCP probe from the node's namespace, as kubelet
// probes from the host.
func (c *container) check(ctx context.Context, w *podWorker, p *corev1.Probe, timeout time.Duration) error {
	w.mu.Lock()
	sb := w.sb
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dial := DialContext(sb.node.NS)
	switch {
	case p.HTTPGet != nil:
		port, err := c.port(p.HTTPGet.Port)
		if err != nil {
			return err
		}
		host := sb.ip4.String()
		if p.HTTPGet.Host != "" {
			host = p.HTTPGet.Host
		}
		client := &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, strconv.Itoa(port))+p.HTTPGet.Path, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	case p.TCPSocket != nil:
		port, err := c.port(p.TCPSocket.Port)
		if err != nil {
			return err
		}
		conn, err := dial(ctx, "tcp", net.JoinHostPort(sb.ip4.String(), strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return conn.Close()
	}
	return fmt.Errorf("the lab kubelet runs only HTTP and TCP probes")
}

// port resolves a probe's port, by number or by the container port's name.
func (c *container) port(p intstr.IntOrString) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range c.spec.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("no container port named %q", p.StrVal)
}
