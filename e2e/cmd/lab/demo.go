package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/heraldlb/herald/e2e/lab"
)

// demo brings a lab up, deploys a sample app behind a LoadBalancer Service
// and shows a client reaching it: in mode "l2" a client on the nodes'
// network, in mode "bgp" a client behind the router the nodes peer with.
func demo(ctx context.Context, cfg lab.Config, mode string) error {
	if mode != "l2" && mode != "bgp" {
		return fmt.Errorf("demo mode %q: want l2 or bgp", mode)
	}
	l, err := up(ctx, cfg)
	if err != nil {
		return err
	}
	kube := l.Kube()
	config := demoConfig
	if mode == "bgp" {
		config = demoBGPConfig
		fmt.Printf("\n== the router (FRR, AS %d) peers over eBGP with every node (AS %d), BFD 100 ms x 3\n", lab.RouterASN, demoNodeASN)
		if err := l.PeerNodes(ctx, demoPeering); err != nil {
			return err
		}
	}
	fmt.Println("\n== the demo configuration (ConfigMap herald-system/herald, key config.yaml)")
	fmt.Print(config)
	if err := l.ApplyHeraldConfig(ctx, config); err != nil {
		return err
	}
	fmt.Printf("== building Herald's images (make images) and pushing them to the lab registry %s\n", lab.RegistryAddr)
	img, err := l.PushImages(ctx, "demo")
	if err != nil {
		return err
	}
	fmt.Println("== installing Herald from manifests/ (kubectl apply --server-side -k, images from the lab registry)")
	if mode == "bgp" {
		fmt.Println("   BGP: every node's speaker advertises the Service's addresses to the router")
	} else {
		fmt.Println("   L2: one elected node's speaker answers ARP/NDP for each address")
	}
	start := time.Now()
	if err := l.InstallHerald(ctx, lab.Install{Images: img}); err != nil {
		return err
	}
	fmt.Printf("   rolled out in %.1f s\n", time.Since(start).Seconds())
	kubectl(l, "-n", lab.HeraldNamespace, "get", "pods", "-o", "wide")
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
	if mode == "bgp" {
		return demoBGP(ctx, l, svc)
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
	herald(ctx, l, "status")
	herald(ctx, l, "explain", "svc/web", "-n", "demo")
	port := strconv.Itoa(int(svc.Spec.Ports[0].NodePort))
	fmt.Printf(`
The lab keeps running (Herald's pods too; the lab's kubelet ended with
this command, so nothing restarts them or updates their status). Try:
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

// demoNodeASN is the nodes' AS in the BGP demo.
const demoNodeASN = 64501

var demoPeering = lab.Peering{NodeASN: demoNodeASN, BFD: true}

// demoBGPConfig gives the demo a pool off the lab's networks, both
// families, advertised over BGP to the router.
var demoBGPConfig = fmt.Sprintf(`pools:
- name: demo
  addresses: ["198.19.0.10-198.19.0.250", "2001:db8:100::10-2001:db8:100::ff"]
bgpPeers:
- name: tor
  address: %s
  asn: %d
  myASN: %d
  holdTime: 9s
  connectTime: 1s
  bfdProfile: fast
  gracefulRestart: true
bfdProfiles:
- {name: fast, receiveInterval: 100ms, transmitInterval: 100ms, detectMultiplier: 3}
bgpAdvertisements:
- name: demo
  pools: [demo]
  communities: ["64500:100"]
`, demoPeering.RouterAddress(), lab.RouterASN, demoNodeASN)

// demoBGP shows the router's sessions and its routes to the Service, and
// the external client reaching the Service through the router.
func demoBGP(ctx context.Context, l *lab.Lab, svc *corev1.Service) error {
	if _, err := l.WaitEstablished(ctx, l.PeerAddresses(demoPeering), 30*time.Second); err != nil {
		return fmt.Errorf("%w; see %s", err, l.LogPath(lab.SpeakerName(l.Nodes[0].Name)))
	}
	vtysh := []string{"show bgp summary"}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		a, err := netip.ParseAddr(in.IP)
		if err != nil {
			return err
		}
		p := netip.PrefixFrom(a, a.BitLen())
		want := l.PeerAddresses(lab.Peering{IPv6: a.Is6()})
		if got, err := l.WaitBGPNextHops(ctx, p, want, 30*time.Second); err != nil {
			return fmt.Errorf("%w (got %v); see %s", err, got, l.LogPath(lab.SpeakerName(l.Nodes[0].Name)))
		}
		afi, rib := "ipv4", "ip"
		if a.Is6() {
			afi, rib = "ipv6", "ipv6"
		}
		vtysh = append(vtysh, fmt.Sprintf("show bgp %s unicast %s", afi, p), fmt.Sprintf("show %s route %s", rib, p))
	}
	for _, c := range vtysh {
		out, err := l.Vtysh(ctx, c)
		if err != nil {
			return err
		}
		fmt.Printf("\n$ router# %s\n%s", c, out)
	}
	fmt.Printf("\n== from the external client (%s, behind the router), GET the EXTERNAL-IPs:\n", lab.External4)
	for _, in := range svc.Status.LoadBalancer.Ingress {
		url := "http://" + net.JoinHostPort(in.IP, "80") + "/"
		body, err := l.HTTPGetEventually(ctx, l.ExternalNS(), url, 20*time.Second)
		if err != nil {
			return fmt.Errorf("GET %s from the external client: %w", url, err)
		}
		fmt.Printf("  %-32s -> %s", url, body)
	}
	herald(ctx, l, "status")
	herald(ctx, l, "explain", "svc/web", "-n", "demo")
	vip := svc.Status.LoadBalancer.Ingress[0].IP
	fmt.Printf(`
The lab keeps running (Herald's pods too; the lab's kubelet ended with
this command, so nothing restarts them or updates their status). Try:
  go run ./e2e/cmd/lab kubectl -n demo get svc,events
  go run ./e2e/cmd/lab exec ext -- curl -s http://%s/
  go run ./e2e/cmd/lab exec router -- vtysh --vty_socket %s/frr -c 'show bgp ipv4 unicast'
Tear it down with: make demo-down
`, vip, l.Dir)
	return nil
}

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

// herald runs the operator's CLI (kubectl herald) against the lab.
func herald(ctx context.Context, l *lab.Lab, args ...string) {
	fmt.Printf("\n$ kubectl herald %s\n", strings.Join(args, " "))
	bin, err := l.Build(ctx, "github.com/heraldlb/herald/cmd/kubectl-herald")
	if err != nil {
		fmt.Println(err)
		return
	}
	argv := append([]string{"netns", "exec", l.ControlPlaneNS(), bin}, args...)
	cmd := exec.Command("ip", append(argv, "--kubeconfig", l.Kubeconfig())...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	_ = cmd.Run()
}

func kubectl(l *lab.Lab, args ...string) {
	fmt.Printf("\n$ kubectl %v\n", args)
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.ControlPlaneNS(), l.Bin("kubectl"), "--kubeconfig", l.Kubeconfig()}, args...)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	_ = cmd.Run()
}
