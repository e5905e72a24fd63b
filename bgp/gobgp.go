package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// This file holds every conversion to GoBGP's types; none leave the package.

const (
	// grRestartTime is how long a router keeps our routes after the
	// session drops without a NOTIFICATION (RFC 4724 Restart Time).
	grRestartTime = 60
	// grDeferral bounds how long a restarted speaker waits for the
	// End-of-RIB of its GR peers before sending its own table.
	grDeferral = 5
	bfdPort    = 3784
)

// GoBGP's numbering of families in api.Global.Families (its AfiSafiType map).
const (
	familyIPv4Unicast = 0
	familyIPv6Unicast = 1
)

var families = []*api.Family{
	{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST},
	{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST},
}

// offered returns GoBGP's families for fs (nil: both).
func offered(fs []Family) []*api.Family {
	if len(fs) == 0 {
		return families
	}
	var out []*api.Family
	if slices.Contains(fs, IPv4Unicast) {
		out = append(out, families[familyIPv4Unicast])
	}
	if slices.Contains(fs, IPv6Unicast) {
		out = append(out, families[familyIPv6Unicast])
	}
	return out
}

// routerFamilies reads the unicast families a router's OPEN offers: its
// multiprotocol capabilities, or IPv4 unicast alone when it has none
// (RFC 4760 8). Sorted.
func routerFamilies(caps []bgp.ParameterCapabilityInterface) []Family {
	var out []Family
	mp := false
	for _, c := range caps {
		m, ok := c.(*bgp.CapMultiProtocol)
		if !ok {
			continue
		}
		mp = true
		switch m.CapValue {
		case bgp.RF_IPv4_UC:
			out = append(out, IPv4Unicast)
		case bgp.RF_IPv6_UC:
			out = append(out, IPv6Unicast)
		}
	}
	if !mp {
		return []Family{IPv4Unicast}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func seconds(d time.Duration, min uint64) uint64 {
	return max(uint64(d/time.Second), min)
}

// apiPeer converts p. restarting sets the Restart State (and forwarding)
// bits in the graceful-restart capability, telling the router that kept
// our routes as stale to keep them until our End-of-RIB. bfd turns on
// p.BFD (see Server.watchBFD for when).
func apiPeer(p Peer, restarting, bfd bool) *api.Peer {
	port := uint32(p.Port)
	if port == 0 {
		port = bgp.BGP_PORT
	}
	timers := &api.TimersConfig{
		HoldTime:               uint64(p.HoldTime / time.Second),
		ConnectRetry:           seconds(p.ConnectTime, 1),
		IdleHoldTimeAfterReset: 1,
	}
	if p.KeepaliveTime > 0 {
		timers.KeepaliveInterval = seconds(p.KeepaliveTime, 1)
	}
	ap := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.ASN,
			LocalAsn:        p.MyASN,
			AuthPassword:    p.Password,
			Description:     p.Name,
		},
		Timers:    &api.Timers{Config: timers},
		Transport: &api.Transport{RemotePort: port},
	}
	if p.SourceAddress.IsValid() {
		ap.Transport.LocalAddress = p.SourceAddress.String()
	}
	if p.EBGPMultihop {
		ap.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: 255}
	}
	for _, f := range offered(p.Families) {
		ap.AfiSafis = append(ap.AfiSafis, &api.AfiSafi{
			Config:            &api.AfiSafiConfig{Family: f, Enabled: true},
			MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: p.GracefulRestart}},
		})
	}
	if p.GracefulRestart {
		ap.GracefulRestart = &api.GracefulRestart{
			Enabled:         true,
			RestartTime:     grRestartTime,
			DeferralTime:    grDeferral,
			LocalRestarting: restarting,
		}
	}
	if b := p.BFD; b != nil && bfd {
		ap.Bfd = &api.BfdPeerConfig{
			Enabled:                  true,
			Port:                     bfdPort,
			DesiredMinimumTxInterval: uint32(b.TransmitInterval / time.Microsecond),
			RequiredMinimumReceive:   uint32(b.ReceiveInterval / time.Microsecond),
			DetectionMultiplier:      uint32(b.DetectMultiplier),
		}
	}
	return ap
}

// apiPath builds the locally originated path for pfx: ORIGIN IGP, an empty
// AS_PATH (GoBGP prepends our ASN towards eBGP peers) and an unspecified
// next hop, which GoBGP replaces with the session's local address; the
// export policy sets the other family's next hop across families.
func apiPath(pfx netip.Prefix, withdraw bool) (*apiutil.Path, error) {
	nlri, err := bgp.NewIPAddrPrefix(pfx)
	if err != nil {
		return nil, fmt.Errorf("prefix %s: %w", pfx, err)
	}
	attrs := []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP),
		bgp.NewPathAttributeAsPath(nil),
	}
	fam := bgp.RF_IPv4_UC
	if pfx.Addr().Is4() {
		nh, _ := bgp.NewPathAttributeNextHop(netip.IPv4Unspecified())
		attrs = append(attrs, nh)
	} else {
		fam = bgp.RF_IPv6_UC
		mp, err := bgp.NewPathAttributeMpReachNLRI(fam, []bgp.PathNLRI{{NLRI: nlri}}, netip.IPv6Unspecified())
		if err != nil {
			return nil, fmt.Errorf("prefix %s: %w", pfx, err)
		}
		attrs = append(attrs, mp)
	}
	return &apiutil.Path{Family: fam, Nlri: nlri, Attrs: attrs, Withdrawal: withdraw}, nil
}

func apiPrefixSet(name string, pfxs []netip.Prefix) *api.DefinedSet {
	ds := &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_PREFIX, Name: name}
	for _, p := range pfxs {
		ds.Prefixes = append(ds.Prefixes, &api.Prefix{
			IpPrefix: p.String(), MaskLengthMin: uint32(p.Bits()), MaskLengthMax: uint32(p.Bits()),
		})
	}
	return ds
}

func apiStatement(prefix string, st statement) *api.Statement {
	out := &api.Statement{Name: prefix + st.Name, Conditions: &api.Conditions{}, Actions: &api.Actions{}}
	c, a := out.Conditions, out.Actions
	if st.PrefixSet != "" {
		c.PrefixSet = &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: st.PrefixSet}
	}
	if st.NeighborSet != "" {
		c.NeighborSet = &api.MatchSet{Type: api.MatchSet_TYPE_ANY, Name: prefix + st.NeighborSet}
	}
	switch st.Family {
	case familyV4:
		c.AfiSafiIn = families[:1]
	case familyV6:
		c.AfiSafiIn = families[1:]
	}
	if len(st.Communities) > 0 {
		a.Community = &api.CommunityAction{Type: api.CommunityAction_TYPE_ADD, Communities: st.Communities}
	}
	if len(st.LargeCommunities) > 0 {
		a.LargeCommunity = &api.CommunityAction{Type: api.CommunityAction_TYPE_ADD, Communities: st.LargeCommunities}
	}
	if st.LocalPref > 0 {
		a.LocalPref = &api.LocalPrefAction{Value: st.LocalPref}
	}
	if st.NextHop.IsValid() {
		a.Nexthop = &api.NexthopAction{Address: st.NextHop.String()}
	}
	switch st.Action {
	case "accept":
		a.RouteAction = api.RouteAction_ROUTE_ACTION_ACCEPT
	case "reject":
		a.RouteAction = api.RouteAction_ROUTE_ACTION_REJECT
	}
	return out
}

// installPolicy puts pol in place as generation gen next to the old
// generation, switches the global export assignment to it and removes the
// old one, so no path is ever evaluated against a half-built policy.
func installPolicy(ctx context.Context, bs *server.BgpServer, pol exportPolicy, gen int, old *exportPolicy, oldGen int) (installed bool, err error) {
	prefix := fmt.Sprintf("herald-g%d-", gen)
	for _, name := range pol.prefixSets() {
		// Appending an empty set creates it, or leaves an existing one as is.
		if err := bs.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: apiPrefixSet(name, nil)}); err != nil {
			return false, fmt.Errorf("prefix set %s: %w", name, err)
		}
	}
	for name, addrs := range pol.NeighborSets {
		ds := &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: prefix + name}
		for _, a := range addrs {
			ds.List = append(ds.List, netip.PrefixFrom(a, a.BitLen()).String())
		}
		if err := bs.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: ds, Replace: true}); err != nil {
			return false, fmt.Errorf("neighbor set %s: %w", name, err)
		}
	}
	assign := &api.PolicyAssignment{
		Name:          "global",
		Direction:     api.PolicyDirection_POLICY_DIRECTION_EXPORT,
		DefaultAction: api.RouteAction_ROUTE_ACTION_REJECT,
	}
	if len(pol.Statements) > 0 {
		p := &api.Policy{Name: prefix + "export"}
		for _, st := range pol.Statements {
			p.Statements = append(p.Statements, apiStatement(prefix, st))
		}
		if err := bs.AddPolicy(ctx, &api.AddPolicyRequest{Policy: p}); err != nil {
			return false, fmt.Errorf("export policy: %w", err)
		}
		assign.Policies = []*api.Policy{{Name: p.Name}}
	}
	if err := bs.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: assign}); err != nil {
		return false, fmt.Errorf("export policy assignment: %w", err)
	}
	if old == nil {
		return true, nil
	}
	oldPrefix := fmt.Sprintf("herald-g%d-", oldGen)
	if len(old.Statements) > 0 {
		if err := bs.DeletePolicy(ctx, &api.DeletePolicyRequest{Policy: &api.Policy{Name: oldPrefix + "export"}, All: true}); err != nil {
			return true, fmt.Errorf("old export policy: %w", err)
		}
	}
	for name := range old.NeighborSets {
		ds := &api.DefinedSet{DefinedType: api.DefinedType_DEFINED_TYPE_NEIGHBOR, Name: oldPrefix + name}
		if err := bs.DeleteDefinedSet(ctx, &api.DeleteDefinedSetRequest{DefinedSet: ds, All: true}); err != nil {
			return true, fmt.Errorf("old neighbor set %s: %w", name, err)
		}
	}
	return true, nil
}
