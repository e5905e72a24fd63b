// Package l2 answers ARP (RFC 826) and NDP neighbour solicitations (RFC 4861)
// for the addresses it is given, on the interfaces it is given, and moves
// neighbours' caches on takeover with gratuitous ARP (RFC 5227 announcements)
// and unsolicited neighbour advertisements. It reports other devices that
// claim those addresses, and probes an address before it is taken (RFC 5227
// conflict detection, RFC 4862 duplicate address detection). It knows
// nothing of Kubernetes.
package l2
