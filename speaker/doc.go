// Package speaker will run on every node: it decides from Services,
// EndpointSlices, Nodes, the config and memberlist which addresses this node
// announces, and drives l2 and bgp accordingly.
package speaker
