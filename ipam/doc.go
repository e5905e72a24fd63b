// Package ipam hands out load-balancer addresses from configured pools over
// net/netip: IPv4 and IPv6, ranges of any size, requested and shared
// addresses. It is pure and deterministic, and knows nothing of Kubernetes
// clients; its costs grow with the number of allocations, never with pool size.
package ipam
