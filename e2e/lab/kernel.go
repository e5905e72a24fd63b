package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// KernelNextHops returns the sorted gateways of the route for exactly
// prefix in the main table of namespace ns: what that namespace forwards
// by, whichever daemon put the route there. Empty when there is no route.
func (l *Lab) KernelNextHops(ctx context.Context, ns string, prefix netip.Prefix) ([]netip.Addr, error) {
	family := "-4"
	if prefix.Addr().Is6() {
		family = "-6"
	}
	out, err := run(ctx, "ip", "-n", ns, "-j", family, "route", "show", "exact", prefix.String())
	if err != nil {
		return nil, err
	}
	return parseKernelNextHops(out)
}

// parseKernelNextHops reads `ip -j route` output: a route has one
// "gateway" or several "nexthops" (a multipath route).
func parseKernelNextHops(out string) ([]netip.Addr, error) {
	var routes []struct {
		Gateway  string `json:"gateway"`
		Nexthops []struct {
			Gateway string `json:"gateway"`
		} `json:"nexthops"`
	}
	if strings.TrimSpace(out) == "" {
		return nil, nil
	}
	if err := json.Unmarshal([]byte(out), &routes); err != nil {
		return nil, fmt.Errorf("ip -j route: %w", err)
	}
	var res []netip.Addr
	add := func(s string) {
		if a, err := netip.ParseAddr(s); err == nil && !slices.Contains(res, a) {
			res = append(res, a)
		}
	}
	for _, r := range routes {
		add(r.Gateway)
		for _, nh := range r.Nexthops {
			add(nh.Gateway)
		}
	}
	slices.SortFunc(res, netip.Addr.Compare)
	return res, nil
}

// WaitKernelNextHops waits until KernelNextHops in ns is exactly want
// (empty: until there is no route) and returns the last seen.
func (l *Lab) WaitKernelNextHops(ctx context.Context, ns string, prefix netip.Prefix, want []netip.Addr, timeout time.Duration) ([]netip.Addr, error) {
	return waitAddrs(ctx, timeout, want, func() ([]netip.Addr, error) { return l.KernelNextHops(ctx, ns, prefix) },
		"kernel next hops of "+prefix.String()+" in "+ns)
}

// NetStat returns the kernel's counter name ("TcpExtTCPMD5Failure", as
// nstat spells it) of namespace ns, read from /proc/net/netstat there.
func (l *Lab) NetStat(ctx context.Context, ns, name string) (uint64, error) {
	out, err := inNS(ctx, ns, "cat", "/proc/net/netstat", "/proc/net/snmp")
	if err != nil {
		return 0, err
	}
	// Each group is two lines: "TcpExt: Name1 Name2 ..." then "TcpExt: 1 2 ...".
	lines := strings.Split(out, "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || len(names) != len(values) || names[0] != values[0] {
			continue
		}
		group := strings.TrimSuffix(names[0], ":")
		for j := 1; j < len(names); j++ {
			if group+names[j] == name {
				return strconv.ParseUint(values[j], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no counter %s in %s", name, ns)
}
