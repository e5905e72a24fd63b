package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodSpec describes a lab pod: an HTTP server on a pod IP inside a node's
// namespace, answering with its pod and node name and the client's address.
type PodSpec struct {
	Namespace string
	Name      string
	Node      string // Kubernetes node name, e.g. "node1"
	Labels    map[string]string
	Port      int  // default 8080
	NotReady  bool // start with Ready=False
}

// Pod is a running lab pod.
type Pod struct {
	Namespace string     `json:"namespace"`
	Name      string     `json:"name"`
	Node      string     `json:"node"`
	IPv4      netip.Addr `json:"ipv4"`
	IPv6      netip.Addr `json:"ipv6"`
	Port      int        `json:"port"`
	Proc      Proc       `json:"proc"`
}

func podKey(namespace, name string) string { return namespace + "/" + name }

// AddPod plays kubelet: it creates the Pod bound to its node, starts its
// server on fresh pod IPs in the node's namespace and reports it Running
// (and Ready unless spec.NotReady), so kube-controller-manager publishes it
// in EndpointSlices.
func (l *Lab) AddPod(ctx context.Context, spec PodSpec) (Pod, error) {
	if spec.Port == 0 {
		spec.Port = 8080
	}
	node, ok := l.Node(spec.Node)
	if !ok {
		return Pod{}, fmt.Errorf("add pod %s: no node %q", spec.Name, spec.Node)
	}
	if err := l.ensureNamespace(ctx, spec.Namespace); err != nil {
		return Pod{}, err
	}
	pod := Pod{Namespace: spec.Namespace, Name: spec.Name, Node: node.Name, Port: spec.Port}
	pod.IPv4, pod.IPv6 = l.reservePodIPs(node, podKey(spec.Namespace, spec.Name))
	if err := ipBatch(ctx, node.NS, []string{
		"addr add " + pod.IPv4.String() + "/32 dev lo",
		"addr add " + pod.IPv6.String() + "/128 dev lo",
	}); err != nil {
		l.forgetPod(pod)
		return Pod{}, err
	}
	obj := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: spec.Namespace, Name: spec.Name, Labels: spec.Labels},
		Spec: corev1.PodSpec{
			NodeName:                      node.Name,
			AutomountServiceAccountToken:  new(false),
			TerminationGracePeriodSeconds: new(int64(0)),
			Containers: []corev1.Container{{
				Name:  "app",
				Image: "herald.dev/lab-pod:latest",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(spec.Port), Protocol: corev1.ProtocolTCP}},
			}},
		},
	}
	if err := l.createPod(ctx, obj); err != nil {
		l.removePod(ctx, pod)
		return Pod{}, fmt.Errorf("add pod %s: %w", podKey(spec.Namespace, spec.Name), err)
	}
	port := strconv.Itoa(spec.Port)
	proc, err := l.start("pod-"+spec.Namespace+"-"+spec.Name, node.NS, nil, l.labpod(),
		"-name", podKey(spec.Namespace, spec.Name), "-node", node.Name,
		"-listen", netip.AddrPortFrom(pod.IPv4, uint16(spec.Port)).String(),
		"-listen", "["+pod.IPv6.String()+"]:"+port)
	if err != nil {
		l.removePod(ctx, pod)
		return Pod{}, err
	}
	pod.Proc = proc
	l.mu.Lock()
	l.Pods[podKey(pod.Namespace, pod.Name)] = pod
	err = l.saveLocked()
	l.mu.Unlock()
	if err != nil {
		return pod, err
	}
	if err := l.waitHTTP(ctx, node.NS, "http://"+netip.AddrPortFrom(pod.IPv4, uint16(spec.Port)).String()+"/", proc.Name); err != nil {
		return pod, err
	}
	return pod, l.setPodStatus(ctx, pod, !spec.NotReady)
}

// createPod creates obj, retrying while the namespace's default
// ServiceAccount (which admission requires) does not exist yet.
func (l *Lab) createPod(ctx context.Context, obj *corev1.Pod) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := l.Kube().CoreV1().Pods(obj.Namespace).Create(ctx, obj, metav1.CreateOptions{})
		if err == nil || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "serviceaccount") || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// SetPodReady flips the pod's readiness, as a failing or passing probe would.
func (l *Lab) SetPodReady(ctx context.Context, namespace, name string, ready bool) error {
	l.mu.Lock()
	pod, ok := l.Pods[podKey(namespace, name)]
	l.mu.Unlock()
	if !ok {
		return fmt.Errorf("no lab pod %s", podKey(namespace, name))
	}
	return l.setPodStatus(ctx, pod, ready)
}

func (l *Lab) setPodStatus(ctx context.Context, pod Pod, ready bool) error {
	node, _ := l.Node(pod.Node)
	obj, err := l.Kube().CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	started := obj.Status.StartTime
	if started == nil {
		started = &now
	}
	obj.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    node.IPv4.String(),
		HostIPs:   []corev1.HostIP{{IP: node.IPv4.String()}, {IP: node.IPv6.String()}},
		PodIP:     pod.IPv4.String(),
		PodIPs:    []corev1.PodIP{{IP: pod.IPv4.String()}, {IP: pod.IPv6.String()}},
		StartTime: started,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: *started},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: *started},
			{Type: corev1.ContainersReady, Status: status, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: status, LastTransitionTime: now},
		},
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: "app", Image: "herald.dev/lab-pod:latest", ImageID: "herald.dev/lab-pod@lab",
			Ready: ready, Started: new(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: *started}},
		}},
	}
	_, err = l.Kube().CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, obj, metav1.UpdateOptions{})
	return err
}

// DeletePod stops the pod's server, deletes the Pod at once and frees its IPs.
func (l *Lab) DeletePod(ctx context.Context, namespace, name string) error {
	l.mu.Lock()
	pod, ok := l.Pods[podKey(namespace, name)]
	l.mu.Unlock()
	if !ok {
		return fmt.Errorf("no lab pod %s", podKey(namespace, name))
	}
	err := l.Kube().CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))})
	if apierrors.IsNotFound(err) {
		err = nil
	}
	return errors.Join(err, l.removePod(ctx, pod))
}

// removePod ends the server and removes the pod's addresses and records.
func (l *Lab) removePod(ctx context.Context, pod Pod) error {
	if pod.Proc.PID != 0 {
		pod.Proc.Stop(2 * time.Second)
	}
	node, _ := l.Node(pod.Node)
	err := ipBatch(ctx, node.NS, []string{
		"addr del " + pod.IPv4.String() + "/32 dev lo",
		"addr del " + pod.IPv6.String() + "/128 dev lo",
	})
	l.forgetPod(pod)
	return err
}

func (l *Lab) forgetPod(pod Pod) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.Pods, podKey(pod.Namespace, pod.Name))
	if pod.Proc.PID != 0 {
		l.Procs = slices.DeleteFunc(l.Procs, func(p Proc) bool { return p == pod.Proc })
	}
	_ = l.saveLocked()
}

// reservePodIPs picks the lowest host number free on the node in both pod
// CIDRs and records a placeholder so concurrent AddPods never collide.
func (l *Lab) reservePodIPs(node Node, key string) (netip.Addr, netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	used := map[netip.Addr]bool{}
	for _, p := range l.Pods {
		used[p.IPv4] = true
	}
	v4 := node.Pod4.Addr().Next().Next() // .0 network, .1 left for a gateway
	for used[v4] {
		v4 = v4.Next()
	}
	host := v4.As4()[3]
	b := node.Pod6.Addr().As16()
	b[15] = host
	v6 := netip.AddrFrom16(b)
	ns, name, _ := strings.Cut(key, "/")
	l.Pods[key] = Pod{Namespace: ns, Name: name, Node: node.Name, IPv4: v4, IPv6: v6}
	return v4, v6
}

// Node returns the lab node of that Kubernetes name.
func (l *Lab) Node(name string) (Node, bool) {
	for _, n := range l.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// ListPods returns the lab's pods, sorted by namespace/name.
func (l *Lab) ListPods() []Pod {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Pod
	for _, p := range l.Pods {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Pod) int { return strings.Compare(podKey(a.Namespace, a.Name), podKey(b.Namespace, b.Name)) })
	return out
}

// WaitReadyEndpoints waits until the Service's EndpointSlices list want ready endpoints.
func (l *Lab) WaitReadyEndpoints(ctx context.Context, namespace, service string, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	got := 0
	for time.Now().Before(deadline) {
		got = 0
		slices, err := l.Kube().DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + service})
		if err == nil {
			seen := map[string]bool{}
			for _, s := range slices.Items {
				for _, e := range s.Endpoints {
					if e.Conditions.Ready != nil && *e.Conditions.Ready && e.TargetRef != nil && !seen[e.TargetRef.Name] {
						seen[e.TargetRef.Name] = true
						got++
					}
				}
			}
			if got == want {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("service %s/%s: %d ready endpoints after %s, want %d", namespace, service, got, timeout, want)
}
