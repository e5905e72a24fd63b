// Package l2 will answer ARP (RFC 826) and NDP neighbour solicitations
// (RFC 4861) for the addresses it is given and send gratuitous ARP /
// unsolicited neighbour advertisements on takeover. It knows nothing of Kubernetes.
package l2
