// Package ipam will hold address pools and allocations over net/netip
// (IPv4, IPv6, ranges, requested and shared addresses), with no Kubernetes in it.
package ipam
