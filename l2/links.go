package l2

import (
	"bytes"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"slices"
)

// Links is a snapshot of this node's eligible interfaces (see
// EligibleInterfaces) and their prefixes, to decide where to answer for
// many addresses from one read of the kernel's tables.
type Links struct {
	links []link // sorted by name
}

type link struct {
	name     string
	mac      net.HardwareAddr
	prefixes []netip.Prefix // masked
}

// ReadLinks takes a snapshot of the eligible interfaces and their
// prefixes: one dump of the links and one of the addresses (plus two small
// sysfs reads per interface), however many interfaces there are.
func ReadLinks() (*Links, error) {
	ifis, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	prefixes, err := interfacePrefixes(ifis)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	return newLinks(ifis, os.DirFS("/sys/class/net"), prefixes), nil
}

// newLinks builds a snapshot from interfaces, a view of /sys/class/net
// and the prefixes of each interface, by index.
func newLinks(ifis []net.Interface, sys fs.FS, prefixes map[int][]netip.Prefix) *Links {
	byName := make(map[string]*net.Interface, len(ifis))
	for i := range ifis {
		byName[ifis[i].Name] = &ifis[i]
	}
	l := &Links{}
	for _, name := range eligible(ifis, sys, nil) { // sorted
		ifi := byName[name]
		var ps []netip.Prefix
		for _, p := range prefixes[ifi.Index] {
			ps = append(ps, p.Masked())
		}
		l.links = append(l.links, link{name: name, mac: slices.Clone(ifi.HardwareAddr), prefixes: ps})
	}
	return l
}

// InterfacesFor lists, sorted, the eligible interfaces (narrowed to only,
// if given) to answer on for addr: those holding a prefix that contains
// addr — the segment where clients look for it — or, when none does, every
// eligible one. Without this a node would answer, and send gratuitous ARP,
// into every pod veth a CNI creates. It costs O(interfaces and their
// prefixes) and reads nothing from the kernel.
func (l *Links) InterfacesFor(addr netip.Addr, only []string) []string {
	addr = addr.Unmap().WithZone("")
	var names, onLink []string
	for _, ln := range l.links {
		if len(only) > 0 && !slices.Contains(only, ln.name) {
			continue
		}
		names = append(names, ln.name)
		if slices.ContainsFunc(ln.prefixes, func(p netip.Prefix) bool { return p.Contains(addr) }) {
			onLink = append(onLink, ln.name)
		}
	}
	if len(onLink) > 0 {
		return onLink
	}
	return names
}

// MACs returns the MACs of the eligible interfaces, sorted and without
// duplicates (a bridge shares its MAC with a port, VLANs with their
// parent).
func (l *Links) MACs() []net.HardwareAddr {
	out := make([]net.HardwareAddr, 0, len(l.links))
	for _, ln := range l.links {
		out = append(out, slices.Clone(ln.mac))
	}
	slices.SortFunc(out, func(a, b net.HardwareAddr) int { return bytes.Compare(a, b) })
	return slices.CompactFunc(out, func(a, b net.HardwareAddr) bool { return bytes.Equal(a, b) })
}

// LocalMACs lists the MACs of this node's eligible interfaces (nil if
// they cannot be read): what other speakers know this node by on the wire.
func LocalMACs() []net.HardwareAddr {
	l, err := ReadLinks()
	if err != nil {
		return nil
	}
	return l.MACs()
}
