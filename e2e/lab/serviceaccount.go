package lab

import (
	"context"
	"fmt"
	"path/filepath"

	authv1 "k8s.io/api/authentication/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Tests that run a Herald component in the test process (or as a process
// with a kubeconfig) give it the permissions manifests/ grants its
// ServiceAccount, not the admin's: ApplyManifests installs the RBAC, and
// ServiceAccountKubeconfig hands out that ServiceAccount's credentials.

// ApplyManifests applies files of manifests/ (e.g. "rbac-controller.yaml")
// by server-side apply.
func (l *Lab) ApplyManifests(ctx context.Context, files ...string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	for _, f := range files {
		if out, err := l.Kubectl(ctx, "apply", "--server-side", "--field-manager=herald-lab", "-f", filepath.Join(root, "manifests", f)); err != nil {
			return fmt.Errorf("apply %s: %w: %s", f, err, out)
		}
	}
	return nil
}

// ServiceAccountKubeconfig writes a kubeconfig that authenticates as the
// ServiceAccount namespace/name (a token valid for 12 hours) and returns
// its path and a client configuration that works from the root namespace.
func (l *Lab) ServiceAccountKubeconfig(ctx context.Context, namespace, name string) (string, *rest.Config, error) {
	tr, err := l.Kube().CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authv1.TokenRequest{
		Spec: authv1.TokenRequestSpec{ExpirationSeconds: new(int64(12 * 3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", nil, fmt.Errorf("token for %s/%s: %w", namespace, name, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["lab"] = &clientcmdapi.Cluster{Server: apiServerURL(), CertificateAuthority: filepath.Join(l.Dir, "pki", "ca.crt")}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["lab"] = &clientcmdapi.Context{Cluster: "lab", AuthInfo: name}
	cfg.CurrentContext = "lab"
	path := filepath.Join(l.Dir, "sa-"+namespace+"-"+name+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return "", nil, err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return "", nil, err
	}
	rc.Dial = DialContext(l.ControlPlaneNS())
	rc.QPS, rc.Burst = 200, 400
	return path, rc, nil
}

// ServiceAccountClient is a clientset for ServiceAccountKubeconfig's identity.
func (l *Lab) ServiceAccountClient(ctx context.Context, namespace, name string) (kubernetes.Interface, error) {
	_, rc, err := l.ServiceAccountKubeconfig(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(rc)
}

// CopyRole grants the ServiceAccount bound to Role from/name in namespace
// from the same rules in namespace to: tests that isolate themselves in a
// namespace of their own give Herald there exactly what manifests/ gives it
// in herald-system.
func (l *Lab) CopyRole(ctx context.Context, from, name, to string) error {
	rbac := l.Kube().RbacV1()
	role, err := rbac.Roles(from).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	binding, err := rbac.RoleBindings(from).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	_, err = rbac.Roles(to).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: to}, Rules: role.Rules}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	_, err = rbac.RoleBindings(to).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: to}, RoleRef: binding.RoleRef, Subjects: binding.Subjects,
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}
