package l2

import (
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/net/ipv6"
)

// Linux interface flags that net.Flags does not carry (include/uapi/linux/if.h).
const (
	iffNoARP = 0x80  // the link does no address resolution (dummy, tunnels)
	iffSlave = 0x800 // a bond (or eql) member: the bond answers, not its members
)

// EligibleInterfaces lists the interfaces this node may answer on, sorted:
// up, broadcast-capable Ethernet links that are not loopback, not NOARP,
// not a bridge port and not a bond member. A bridge itself is eligible: it
// holds the node's address and its ports hand it every frame, while a
// socket on a port would answer with the port's MAC instead of the
// bridge's. When only is non-empty, the list is narrowed to those names;
// a name that is missing or not eligible is left out, not an error.
func EligibleInterfaces(only []string) ([]string, error) {
	ifis, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	return eligible(ifis, os.DirFS("/sys/class/net"), only), nil
}

// InterfacesFor lists the eligible interfaces (narrowed to only, if given)
// to answer on for addr: see Links.InterfacesFor. It reads the interfaces
// afresh at every call; to decide for many addresses, take one ReadLinks.
func InterfacesFor(addr netip.Addr, only []string) ([]string, error) {
	links, err := ReadLinks()
	if err != nil {
		return nil, err
	}
	return links.InterfacesFor(addr, only), nil
}

// eligible applies EligibleInterfaces' rules to ifis, reading bridge
// membership and link flags from sys (a view of /sys/class/net).
func eligible(ifis []net.Interface, sys fs.FS, only []string) []string {
	var out []string
	for _, ifi := range ifis {
		switch {
		case len(only) > 0 && !slices.Contains(only, ifi.Name),
			ifi.Flags&net.FlagUp == 0,
			ifi.Flags&net.FlagBroadcast == 0,
			ifi.Flags&net.FlagLoopback != 0,
			len(ifi.HardwareAddr) != 6:
			continue
		}
		if _, err := fs.Stat(sys, ifi.Name+"/brport"); err == nil {
			continue
		}
		if linkFlags(sys, ifi.Name)&(iffNoARP|iffSlave) != 0 {
			continue
		}
		out = append(out, ifi.Name)
	}
	slices.Sort(out)
	return out
}

// linkFlags reads the kernel's flags of an interface (sysfs "flags", hex);
// zero when unreadable.
func linkFlags(sys fs.FS, name string) uint64 {
	b, err := fs.ReadFile(sys, name+"/flags")
	if err != nil {
		return 0
	}
	f, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(string(b)), "0x"), 16, 64)
	if err != nil {
		return 0
	}
	return f
}

// groupConn is the part of an *ndp.Conn the Announcer uses: membership of
// solicited-node multicast groups, so that the NIC accepts those frames and
// MLD-snooping switches forward them to this port.
type groupConn interface {
	JoinGroup(group netip.Addr) error
	LeaveGroup(group netip.Addr) error
	Close() error
}

// system is the seam between the Announcer and the kernel: tests replace it
// to push frames through without sockets.
type system struct {
	interfaceByName func(name string) (*net.Interface, error)
	// listenARP returns a socket that reads and writes whole Ethernet frames
	// carrying ARP.
	listenARP func(ifi *net.Interface) (net.PacketConn, error)
	// listenNDP returns a socket that reads whole Ethernet frames carrying
	// neighbour solicitations and advertisements and writes any Ethernet
	// frame, and the conn used to join solicited-node groups.
	listenNDP func(ifi *net.Interface) (net.PacketConn, groupConn, error)
}

var kernel = system{
	interfaceByName: net.InterfaceByName,
	listenARP:       listenARP,
	listenNDP:       listenNDP,
}

const (
	etherTypeARP  = 0x0806
	etherTypeIPv6 = 0x86dd
)

// listenARP opens a packet socket for ARP on ifi. The Announcer does not use
// arp.Client: it needs an IPv4 address on the interface (an L2-only VLAN has
// none) and its Read fails on the first malformed frame.
func listenARP(ifi *net.Interface) (net.PacketConn, error) {
	c, err := packet.Listen(ifi, packet.Raw, etherTypeARP, nil)
	if err != nil {
		return nil, fmt.Errorf("listen for ARP: %w", err)
	}
	return c, nil
}

// listenNDP opens a packet socket that sees neighbour solicitations and
// advertisements on ifi and an ICMPv6 socket that only holds group
// memberships.
//
// They are read from a packet socket, not from the ndp.Conn: a unicast
// solicitation (a neighbour's reachability probe) is addressed to the VIP,
// which is not an address of this host, so the kernel never delivers it to
// an ICMPv6 socket. A packet socket gets every frame of its EtherType the
// interface receives: unicast to its MAC, and multicast to groups the NIC
// accepts, which always include all-nodes (ff02::1, where advertisements
// that defend an address go) and the solicited-node groups joined here. A
// BPF filter keeps every other IPv6 frame out of the socket.
func listenNDP(ifi *net.Interface) (net.PacketConn, groupConn, error) {
	pc, err := packet.Listen(ifi, packet.Raw, etherTypeIPv6, &packet.Config{Filter: ndFilter})
	if err != nil {
		return nil, nil, fmt.Errorf("listen for neighbour solicitations: %w", err)
	}
	gc, _, err := ndp.Listen(ifi, ndp.Unspecified)
	if err != nil {
		pc.Close()
		return nil, nil, fmt.Errorf("open ICMPv6 socket for multicast groups: %w", err)
	}
	// This socket only joins groups; let no ICMPv6 message queue on it.
	var none ipv6.ICMPFilter
	none.SetAll(true)
	if err := gc.SetICMPFilter(&none); err != nil {
		pc.Close()
		gc.Close()
		return nil, nil, fmt.Errorf("filter ICMPv6 socket: %w", err)
	}
	return pc, gc, nil
}
