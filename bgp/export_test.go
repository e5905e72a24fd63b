package bgp

// Exports for the bgp_test package's unit tests of the pure parts.

type (
	PeerDiff     = peerDiff
	RouteDiff    = routeDiff
	SetKey       = setKey
	ExportPolicy = exportPolicy
	Statement    = statement
)

var (
	DiffPeers     = diffPeers
	DiffRoutes    = diffRoutes
	BuildExport   = buildExport
	AffectedPeers = affectedPeers
)
