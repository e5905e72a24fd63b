package bgp

import "time"

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
	// RouterFamilies reads the families of a router's OPEN capabilities.
	RouterFamilies = routerFamilies
)

// OfferedFamilies returns the AFI/SAFI pairs an OPEN to p offers.
func OfferedFamilies(p Peer) [][2]int32 {
	var out [][2]int32
	for _, a := range apiPeer(p, true, false).AfiSafis {
		f := a.GetConfig().GetFamily()
		out = append(out, [2]int32{int32(f.GetAfi()), int32(f.GetSafi())})
	}
	return out
}

// AdminDownPacket is the AdminDown control packet of a session.
func AdminDownPacket(myDisc, yours uint32, tx, rx time.Duration, mult uint8) []byte {
	return bfdSession{myDisc: myDisc, yours: yours, tx: tx, rx: rx, detectMultiple: mult}.adminDown()
}
