package report

import (
	"bytes"
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// MetalLBResources are the kinds `migrate metallb --from-cluster` reads,
// newest version first.
var MetalLBResources = []schema.GroupVersionResource{
	{Group: "metallb.io", Version: "v1beta1", Resource: "ipaddresspools"},
	{Group: "metallb.io", Version: "v1beta1", Resource: "l2advertisements"},
	{Group: "metallb.io", Version: "v1beta1", Resource: "bgpadvertisements"},
	{Group: "metallb.io", Version: "v1beta2", Resource: "bgppeers"},
	{Group: "metallb.io", Version: "v1beta1", Resource: "bgppeers"},
	{Group: "metallb.io", Version: "v1beta1", Resource: "bfdprofiles"},
	{Group: "metallb.io", Version: "v1beta1", Resource: "communities"},
}

// MetalLBFromCluster reads MetalLB's configuration in namespace from the
// cluster as one YAML stream for Migrate: its custom resources (a kind
// whose CRD is missing is skipped; BGPPeer is read at v1beta2, else
// v1beta1) and its legacy ConfigMap "config". sources says what was read.
func MetalLBFromCluster(ctx context.Context, dyn dynamic.Interface, kube kubernetes.Interface, namespace string) ([]byte, []string, error) {
	var stream bytes.Buffer
	var sources []string
	done := map[string]bool{}
	for _, gvr := range MetalLBResources {
		if done[gvr.Resource] {
			continue
		}
		list, err := dyn.Resource(gvr).Namespace(namespace).List(ctx, metav1.ListOptions{})
		if apierrors.IsNotFound(err) {
			continue // no such CRD (or version) in this cluster
		}
		if err != nil {
			return nil, nil, fmt.Errorf("list %s: %w", gvr.GroupResource(), err)
		}
		done[gvr.Resource] = true
		for _, item := range list.Items {
			b, err := yaml.Marshal(item.Object)
			if err != nil {
				return nil, nil, err
			}
			stream.WriteString("---\n")
			stream.Write(b)
		}
		sources = append(sources, fmt.Sprintf("%d %s.%s", len(list.Items), gvr.Resource, gvr.Group))
	}
	cm, err := kube.CoreV1().ConfigMaps(namespace).Get(ctx, "config", metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, nil, fmt.Errorf("ConfigMap %s/config: %w", namespace, err)
	default:
		cm.APIVersion, cm.Kind = "v1", "ConfigMap"
		b, err := yaml.Marshal(cm)
		if err != nil {
			return nil, nil, err
		}
		stream.WriteString("---\n")
		stream.Write(b)
		sources = append(sources, "ConfigMap "+namespace+"/config")
	}
	return stream.Bytes(), sources, nil
}
