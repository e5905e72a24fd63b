// Package speaker runs on every node and makes Service addresses reachable:
// from Services, their EndpointSlices, Nodes, Herald's config and the
// speakers' membership it decides, the same way on every node, which node
// answers for each address, and drives l2 for the addresses this node owns.
package speaker
