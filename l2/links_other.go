//go:build !linux

package l2

import (
	"net"
	"net/netip"
)

// interfacePrefixes returns the prefixes of every interface, by index.
func interfacePrefixes(ifis []net.Interface) (map[int][]netip.Prefix, error) {
	out := map[int][]netip.Prefix{}
	for _, ifi := range ifis {
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				out[ifi.Index] = append(out[ifi.Index], p)
			}
		}
	}
	return out, nil
}
