// Package bgp owns the process's GoBGP server: sessions to peers (RFC 4271,
// with BFD per RFC 5880 and graceful restart per RFC 4724) and the advertised
// set, taking desired state and applying the difference. It knows nothing of Kubernetes.
package bgp
