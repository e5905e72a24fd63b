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
	kubectl(l, "get", "nodes", "-o", "wide")
	kubectl(l, "-n", "demo", "get", "pods,svc,endpointslices", "-o", "wide")
	fmt.Println("\nEXTERNAL-IP stays <pending> until Herald's controller lands (issue: controller);")
	fmt.Println("until then the app is reached through its NodePort.")

	port := strconv.Itoa(int(svc.Spec.Ports[0].NodePort))
	fmt.Printf("\n== from the client namespace (%s), GET each node's NodePort %s:\n", lab.Client4, port)
	for _, n := range l.Nodes {
		url := "http://" + net.JoinHostPort(n.IPv4.String(), port) + "/"
		body, err := l.HTTPGetEventually(ctx, l.ClientNS(), url, 10*time.Second)
		if err != nil {
			return fmt.Errorf("GET %s: %w", url, err)
		}
		fmt.Printf("  %-32s -> %s", url, body)
	}
	fmt.Printf(`
The lab keeps running. Try:
  go run ./e2e/cmd/lab kubectl -n demo get svc
  go run ./e2e/cmd/lab exec client -- curl -s http://%s:%s/
Tear it down with: make demo-down
`, l.Nodes[0].IPv4, port)
	return nil
}

func kubectl(l *lab.Lab, args ...string) {
	fmt.Printf("\n$ kubectl %v\n", args)
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.ControlPlaneNS(), l.Bin("kubectl"), "--kubeconfig", l.Kubeconfig()}, args...)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	_ = cmd.Run()
}
