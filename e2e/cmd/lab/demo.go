package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/heraldlb/herald/e2e/lab"
)

// demo brings a lab up, deploys a sample app behind a LoadBalancer Service
// and shows a client reaching it.
func demo(ctx context.Context, cfg lab.Config) error {
	l, err := up(ctx, cfg)
	if err != nil {
		return err
	}
	kube := l.Kube()
	fmt.Println("\n== starting herald-controller with the demo pool")
	fmt.Print(demoConfig)
	if err := l.ApplyHeraldConfig(ctx, demoConfig); err != nil {
		return err
	}
	if _, err := l.StartController(ctx, "herald-controller", "--metrics-addr=127.0.0.1:7472"); err != nil {
		return err
	}
	fmt.Println("== starting herald-speaker on every node (L2: ARP/NDP from one elected node per address)")
	for _, n := range l.Nodes {
		if _, err := l.StartSpeaker(ctx, n.Name, "--metrics-addr=127.0.0.1:7473"); err != nil {
			return err
		}
	}
	fmt.Println("\n== deploying the sample app: 3 pods (one per node) behind Service demo/web (type LoadBalancer)")
	for i, n := range l.Nodes {
		if i == 3 {
			break
		}
		if _, err := l.AddPod(ctx, lab.PodSpec{Namespace: "demo", Name: fmt.Sprintf("web-%d", i+1), Node: n.Name, Labels: map[string]string{"app": "web"}}); err != nil {
			return err
		}
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web"},
		Spec: corev1.ServiceSpec{
			Type:           corev1.ServiceTypeLoadBalancer,
			Selector:       map[string]string{"app": "web"},
			IPFamilyPolicy: new(corev1.IPFamilyPolicyPreferDualStack),
			Ports:          []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	svc, err = kube.CoreV1().Services("demo").Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	if err := l.WaitReadyEndpoints(ctx, "demo", "web", len(l.Nodes), 30*time.Second); err != nil {
		return err
	}
	vip, err := waitExternalIP(ctx, l, "demo", "web", 30*time.Second)
	if err != nil {
		return err
	}
	kubectl(l, "get", "nodes", "-o", "wide")
	kubectl(l, "-n", "demo", "get", "pods,svc,endpointslices", "-o", "wide")
	kubectl(l, "-n", "demo", "get", "events", "--field-selector", "involvedObject.name=web")

	svc, err = kube.CoreV1().Services("demo").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		return err
	}
	fmt.Printf("\n== from the client namespace (%s), GET the EXTERNAL-IPs:\n", lab.Client4)
	for _, in := range svc.Status.LoadBalancer.Ingress {
		url := "http://" + net.JoinHostPort(in.IP, "80") + "/"
		body, err := l.HTTPGetEventually(ctx, l.ClientNS(), url, 20*time.Second)
		if err != nil {
			return fmt.Errorf("GET %s from the client: %w", url, err)
		}
		fmt.Printf("  %-32s -> %s", url, body)
	}
	neigh, _ := l.Exec(ctx, l.ClientNS(), "ip", "neigh", "show", vip)
	fmt.Printf("  the client's neighbour entry: %s", neigh)
	port := strconv.Itoa(int(svc.Spec.Ports[0].NodePort))
	fmt.Printf(`
The lab keeps running. Try:
  go run ./e2e/cmd/lab kubectl -n demo get svc
  go run ./e2e/cmd/lab exec client -- curl -s http://%s/
  go run ./e2e/cmd/lab exec client -- curl -s http://%s:%s/   (NodePort)
Tear it down with: make demo-down
`, vip, l.Nodes[0].IPv4, port)
	return nil
}

// demoConfig gives the demo one pool on the lab network, both families.
const demoConfig = `pools:
- name: demo
  addresses: ["198.51.100.200-198.51.100.250", "2001:db8:1::200-2001:db8:1::250"]
l2Advertisements:
- name: demo
  pools: [demo]
`

// waitExternalIP waits for the controller to give the Service an address.
func waitExternalIP(ctx context.Context, l *lab.Lab, ns, name string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		svc, err := l.Kube().CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && len(svc.Status.LoadBalancer.Ingress) > 0 {
			return svc.Status.LoadBalancer.Ingress[0].IP, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", fmt.Errorf("service %s/%s got no EXTERNAL-IP in %s; see %s", ns, name, timeout, l.LogPath("herald-controller"))
}

func kubectl(l *lab.Lab, args ...string) {
	fmt.Printf("\n$ kubectl %v\n", args)
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.ControlPlaneNS(), l.Bin("kubectl"), "--kubeconfig", l.Kubeconfig()}, args...)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	_ = cmd.Run()
}
