// Package e2e holds Herald's test lab (package lab, command cmd/lab) and its
// end-to-end tests, which run real Kubernetes components and real network
// namespaces on one machine.
package e2e
