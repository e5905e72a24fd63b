package speaker

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Trim is an informer transform that keeps only what the speaker reads of
// Services, EndpointSlices and Nodes, so a large cluster costs little memory.
func Trim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Service:
		o.ManagedFields = nil
		o.Annotations = nil
		o.Spec.Ports = nil
		o.Spec.Selector = nil
	case *discoveryv1.EndpointSlice:
		o.ManagedFields = nil
		o.Annotations = nil
		o.Ports = nil
		for i := range o.Endpoints {
			e := &o.Endpoints[i]
			e.Addresses, e.Hints, e.TargetRef, e.DeprecatedTopology, e.Hostname, e.Zone = nil, nil, nil, nil, nil, nil
		}
	case *corev1.Node:
		o.ManagedFields = nil
		o.Annotations = nil
		o.Status.Images = nil
		o.Status.VolumesInUse, o.Status.VolumesAttached = nil, nil
	}
	return obj, nil
}
