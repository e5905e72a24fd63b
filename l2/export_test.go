package l2

import "net"

// Groups is the group-membership half of an NDP socket, for fakes.
type Groups = groupConn

// Sockets replaces the kernel in tests: interfaces and sockets come from
// these functions, and frames are pushed through the returned conns.
type Sockets struct {
	InterfaceByName func(name string) (*net.Interface, error)
	ListenARP       func(ifi *net.Interface) (net.PacketConn, error)
	ListenNDP       func(ifi *net.Interface) (net.PacketConn, Groups, error)
}

// NewWithSockets is New with fake sockets.
func NewWithSockets(opts Options, s Sockets) *Announcer {
	return newAnnouncer(opts, system{interfaceByName: s.InterfaceByName, listenARP: s.ListenARP, listenNDP: s.ListenNDP})
}
