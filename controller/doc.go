// Package controller will hand out, keep and release the external addresses
// of LoadBalancer Services: it watches Services, Namespaces and Herald's
// ConfigMap, allocates through ipam and writes status.loadBalancer.ingress.
package controller
