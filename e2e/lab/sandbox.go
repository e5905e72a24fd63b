package lab

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// sandbox is a pod's network: the node's namespace for hostNetwork pods,
// otherwise a namespace of its own joined to the node by a veth, with a pod
// IP of each family from the node's pod CIDRs.
type sandbox struct {
	ns       string
	node     Node
	own      bool
	key      string // the pod's IP reservation (namespace/name)
	veth     string // node side
	ip4, ip6 netip.Addr
}

// Addresses the pod routes through: the node side of every pod veth holds them.
const (
	podGateway4 = "169.254.1.1"
	podGateway6 = "fe80::1"
)

func (k *kubelet) newSandbox(ctx context.Context, pod *corev1.Pod) (sandbox, error) {
	node, _ := k.l.Node(pod.Spec.NodeName)
	if pod.Spec.HostNetwork {
		return sandbox{ns: node.NS, node: node, ip4: node.IPv4, ip6: node.IPv6}, nil
	}
	uid := strings.ReplaceAll(string(pod.UID), "-", "")[:10]
	sb := sandbox{ns: k.l.Prefix + "-pod-" + uid, node: node, own: true, veth: "lv" + uid, key: podKey(pod.Namespace, pod.Name) + "@" + string(pod.UID)}
	sb.ip4, sb.ip6 = k.l.reservePodIPs(node, sb.key)
	if _, err := run(ctx, "ip", "netns", "add", sb.ns); err != nil {
		k.removeSandbox(ctx, sb)
		return sandbox{}, err
	}
	err := ipBatch(ctx, node.NS, []string{
		fmt.Sprintf("link add %s type veth peer name eth0 netns %s", sb.veth, sb.ns),
		fmt.Sprintf("addr add %s/32 dev %s", podGateway4, sb.veth),
		fmt.Sprintf("addr add %s/64 dev %s nodad", podGateway6, sb.veth),
		fmt.Sprintf("link set %s up", sb.veth),
		fmt.Sprintf("route add %s/32 dev %s", sb.ip4, sb.veth),
		fmt.Sprintf("route add %s/128 dev %s", sb.ip6, sb.veth),
	})
	if err == nil {
		err = ipBatch(ctx, sb.ns, []string{
			"link set lo up",
			"link set eth0 up",
			fmt.Sprintf("addr add %s/32 dev eth0", sb.ip4),
			fmt.Sprintf("addr add %s/128 dev eth0 nodad", sb.ip6),
			fmt.Sprintf("route add %s dev eth0", podGateway4),
			fmt.Sprintf("route add default via %s dev eth0", podGateway4),
			fmt.Sprintf("route add ::/0 via %s dev eth0", podGateway6),
		})
	}
	if err != nil {
		k.removeSandbox(ctx, sb)
		return sandbox{}, err
	}
	return sb, nil
}

// removeSandbox deletes a pod's own namespace (its veth goes with it) and
// frees its IPs; a hostNetwork sandbox has nothing to remove.
func (k *kubelet) removeSandbox(ctx context.Context, sb sandbox) {
	if !sb.own {
		return
	}
	_, _ = run(ctx, "ip", "netns", "delete", sb.ns)
	ns, name, _ := strings.Cut(sb.key, "/")
	k.l.forgetPod(Pod{Namespace: ns, Name: name})
}

// pulledImage is what `herald-images pull` reports of an unpacked image.
type pulledImage struct {
	Ref        string   `json:"ref"`
	Digest     string   `json:"digest"`
	ImageID    string   `json:"imageID"`
	Entrypoint []string `json:"entrypoint"`
	Cmd        []string `json:"cmd"`
	Env        []string `json:"env"`
	User       string   `json:"user"`
	WorkingDir string   `json:"workingDir"`
}

// pull fetches ref from the lab registry (from the control-plane namespace,
// where the registry runs) and unpacks it into root.
func (k *kubelet) pull(ctx context.Context, ref, root string) (pulledImage, error) {
	_ = os.RemoveAll(root)
	if err := os.MkdirAll(filepath.Dir(root), 0o755); err != nil {
		return pulledImage{}, err
	}
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", k.l.ControlPlaneNS(), k.l.Bin("herald-images"), "pull", "-insecure", "-dir", root, ref)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return pulledImage{}, fmt.Errorf("ErrImagePull: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var img pulledImage
	if err := json.Unmarshal(out, &img); err != nil {
		return pulledImage{}, fmt.Errorf("herald-images pull: %w", err)
	}
	return img, nil
}

// serviceAccountDir holds the files of the pod's projected token volume.
func (k *kubelet) serviceAccountDir(uid types.UID) string {
	return filepath.Join(k.podDir(uid), "serviceaccount")
}

// writeServiceAccount writes token, ca.crt and namespace for pods that
// mount the projected ServiceAccount volume admission gave them. The token
// is bound to the pod, as kubelet's is.
func (k *kubelet) writeServiceAccount(ctx context.Context, pod *corev1.Pod) error {
	if !hasTokenVolume(pod) {
		return nil
	}
	sa := cmp.Or(pod.Spec.ServiceAccountName, "default")
	tr, err := k.l.Kube().CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, &authv1.TokenRequest{
		Spec: authv1.TokenRequestSpec{
			ExpirationSeconds: new(int64(3607)),
			BoundObjectRef:    &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(filepath.Join(k.l.Dir, "pki", "ca.crt"))
	if err != nil {
		return err
	}
	dir := k.serviceAccountDir(pod.UID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, data := range map[string][]byte{"token": []byte(tr.Status.Token), "ca.crt": ca, "namespace": []byte(pod.Namespace)} {
		tmp := filepath.Join(dir, "."+name)
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

func hasTokenVolume(pod *corev1.Pod) bool {
	for _, v := range pod.Spec.Volumes {
		if isTokenVolume(pod, v.Name) {
			return true
		}
	}
	return false
}

// isTokenVolume reports whether the named volume is a projected one with a
// ServiceAccount token (what the ServiceAccount admission plugin adds).
func isTokenVolume(pod *corev1.Pod, name string) bool {
	for _, v := range pod.Spec.Volumes {
		if v.Name != name || v.Projected == nil {
			continue
		}
		for _, s := range v.Projected.Sources {
			if s.ServiceAccountToken != nil {
				return true
			}
		}
	}
	return false
}

// containerEnv is the process environment: the image's, the kubernetes
// Service's (for in-cluster config), then the spec's with its references
// resolved, later entries winning.
func (k *kubelet) containerEnv(ctx context.Context, pod *corev1.Pod, spec corev1.Container, img pulledImage, sb sandbox) ([]string, error) {
	env := append([]string{}, img.Env...)
	env = append(env, "KUBERNETES_SERVICE_HOST="+k.svcHost, "KUBERNETES_SERVICE_PORT=443", "HOSTNAME="+hostname(pod))
	for _, e := range spec.Env {
		v := expandVars(e.Value, env)
		if f := e.ValueFrom; f != nil {
			var err error
			if v, err = k.envFrom(ctx, pod, f, sb); err != nil {
				return nil, fmt.Errorf("CreateContainerConfigError: env %s: %w", e.Name, err)
			}
		}
		env = append(env, e.Name+"="+v)
	}
	return env, nil
}

func hostname(pod *corev1.Pod) string {
	if pod.Spec.HostNetwork {
		return pod.Spec.NodeName
	}
	return pod.Name
}

func (k *kubelet) envFrom(ctx context.Context, pod *corev1.Pod, f *corev1.EnvVarSource, sb sandbox) (string, error) {
	switch {
	case f.FieldRef != nil:
		return fieldValue(pod, f.FieldRef.FieldPath, sb)
	case f.ConfigMapKeyRef != nil:
		cm, err := k.l.Kube().CoreV1().ConfigMaps(pod.Namespace).Get(ctx, f.ConfigMapKeyRef.Name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		return cm.Data[f.ConfigMapKeyRef.Key], nil
	case f.SecretKeyRef != nil:
		s, err := k.l.Kube().CoreV1().Secrets(pod.Namespace).Get(ctx, f.SecretKeyRef.Name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		return string(s.Data[f.SecretKeyRef.Key]), nil
	}
	return "", fmt.Errorf("the lab kubelet does not resolve this reference")
}

// fieldValue resolves the downward API's fieldRef paths.
func fieldValue(pod *corev1.Pod, path string, sb sandbox) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP":
		return sb.node.IPv4.String(), nil
	case "status.hostIPs":
		return sb.node.IPv4.String() + "," + sb.node.IPv6.String(), nil
	case "status.podIP":
		return sb.ip4.String(), nil
	case "status.podIPs":
		return sb.ip4.String() + "," + sb.ip6.String(), nil
	}
	for _, m := range []struct {
		prefix string
		values map[string]string
	}{{"metadata.labels['", pod.Labels}, {"metadata.annotations['", pod.Annotations}} {
		if key, ok := strings.CutPrefix(path, m.prefix); ok {
			return m.values[strings.TrimSuffix(key, "']")], nil
		}
	}
	return "", fmt.Errorf("unsupported fieldPath %q", path)
}
