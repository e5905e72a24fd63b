package config_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/heraldlb/herald/config"
)

func TestParseRange(t *testing.T) {
	tests := []struct {
		in      string
		want    config.Range
		wantErr string
	}{
		{in: "198.51.100.0/24", want: rng("198.51.100.0", "198.51.100.255")},
		{in: "198.51.100.7/32", want: rng("198.51.100.7", "198.51.100.7")},
		{in: "0.0.0.0/0", want: rng("0.0.0.0", "255.255.255.255")},
		{in: "2001:db8:1::100/120", want: rng("2001:db8:1::100", "2001:db8:1::1ff")},
		{in: "2001:db8::/64", want: rng("2001:db8::", "2001:db8::ffff:ffff:ffff:ffff")},
		{in: "::/0", want: rng("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")},
		{in: "198.51.100.10-198.51.100.20", want: rng("198.51.100.10", "198.51.100.20")},
		{in: " 198.51.100.10 - 198.51.100.20 ", want: rng("198.51.100.10", "198.51.100.20")},
		{in: "198.51.100.10-198.51.100.10", want: rng("198.51.100.10", "198.51.100.10")},
		{in: "2001:db8::1-2001:db8::ff", want: rng("2001:db8::1", "2001:db8::ff")},
		{in: "203.0.113.7", want: rng("203.0.113.7", "203.0.113.7")},
		{in: "2001:DB8::7", want: rng("2001:db8::7", "2001:db8::7")},

		{in: "", wantErr: `"": empty; want an address, a CIDR or a range a-b`},
		{in: "  ", wantErr: `"  ": empty; want an address, a CIDR or a range a-b`},
		{in: "198.51.100.5/24", wantErr: `"198.51.100.5/24": not a network address; write 198.51.100.0/24`},
		{in: "2001:db8::1/64", wantErr: `"2001:db8::1/64": not a network address; write 2001:db8::/64`},
		{in: "198.51.100.0/33", wantErr: `"198.51.100.0/33": prefix length "33": must be 0-32`},
		{in: "198.51.100.0/024", wantErr: `"198.51.100.0/024": prefix length "024": must be 0-32`},
		{in: "2001:db8::/", wantErr: `"2001:db8::/": prefix length "": must be 0-128`},
		{in: "10.0.0.5-10.0.0.1", wantErr: `"10.0.0.5-10.0.0.1": range start after end`},
		{in: "10.0.0.1-2001:db8::1", wantErr: `"10.0.0.1-2001:db8::1": range start and end are of different families`},
		{in: "10.0.0.1-", wantErr: `"10.0.0.1-": range end: not an IP address`},
		{in: "-10.0.0.1", wantErr: `"-10.0.0.1": range start: not an IP address`},
		{in: "10.0.0.1-10.0.0.2-10.0.0.3", wantErr: `"10.0.0.1-10.0.0.2-10.0.0.3": range end: not an IP address`},
		{in: "10.0.0.0/24-10.0.1.0/24", wantErr: `"10.0.0.0/24-10.0.1.0/24": range start: not an IP address`},
		{in: "fe80::1%eth0", wantErr: `"fe80::1%eth0": zones are not allowed`},
		{in: "fe80::1%eth0-fe80::2", wantErr: `"fe80::1%eth0-fe80::2": range start: zones are not allowed`},
		{in: "fe80::/64%eth0", wantErr: `"fe80::/64%eth0": prefix length "64%eth0": must be 0-128`},
		{in: "::ffff:10.0.0.1", wantErr: `"::ffff:10.0.0.1": IPv4-mapped IPv6 addresses are not allowed; write the IPv4 address`},
		{in: "::ffff:10.0.0.0/120", wantErr: `"::ffff:10.0.0.0/120": IPv4-mapped IPv6 addresses are not allowed`},
		{in: "10.0.0.1-::ffff:10.0.0.2", wantErr: `"10.0.0.1-::ffff:10.0.0.2": range end: IPv4-mapped`},
		{in: "lan", wantErr: `"lan": hostnames are not supported; write an IP address`},
		{in: "tor1.example.com", wantErr: `"tor1.example.com": hostnames are not supported; write an IP address`},
		{in: "tor-1.example.com", wantErr: `"tor-1.example.com": hostnames are not supported`},
		{in: "a.example-b.example", wantErr: `"a.example-b.example": hostnames are not supported`},
		{in: "fe80::%eth0/64", wantErr: `"fe80::%eth0/64": zones are not allowed`},
		{in: strings.Repeat("1", 100), wantErr: `"` + strings.Repeat("1", 40) + `…": not an IP address`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := config.ParseRange(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("ParseRange(%q) error = %v; want one starting %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRange(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got, cmpOpts); diff != "" {
				t.Errorf("ParseRange(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestRangeString(t *testing.T) {
	tests := []struct {
		r    config.Range
		want string
	}{
		{rng("10.0.0.1", "10.0.0.1"), "10.0.0.1"},
		{rng("10.0.0.0", "10.0.0.255"), "10.0.0.0/24"},
		{rng("10.0.0.0", "10.0.0.254"), "10.0.0.0-10.0.0.254"},
		{rng("10.0.0.128", "10.0.1.127"), "10.0.0.128-10.0.1.127"},
		{rng("0.0.0.0", "255.255.255.255"), "0.0.0.0/0"},
		{rng("2001:db8::", "2001:db8::ffff:ffff:ffff:ffff"), "2001:db8::/64"},
		{rng("2001:db8::1", "2001:db8::2"), "2001:db8::1-2001:db8::2"},
		{rng("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), "::/0"},
		{rng("2001:db8::2", "2001:db8::3"), "2001:db8::2/127"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.r.String(); got != tt.want {
				t.Errorf("String() = %q; want %q", got, tt.want)
			}
			back, err := config.ParseRange(tt.want)
			if err != nil {
				t.Fatalf("ParseRange(%q): %v", tt.want, err)
			}
			if diff := cmp.Diff(tt.r, back, cmpOpts); diff != "" {
				t.Errorf("ParseRange(String()) (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRangeContains(t *testing.T) {
	v4 := rng("10.0.0.10", "10.0.0.20")
	v6 := rng("2001:db8::10", "2001:db8::20")
	tests := []struct {
		name string
		r    config.Range
		a    netip.Addr
		want bool
	}{
		{"first", v4, addr("10.0.0.10"), true},
		{"last", v4, addr("10.0.0.20"), true},
		{"inside", v4, addr("10.0.0.15"), true},
		{"before", v4, addr("10.0.0.9"), false},
		{"after", v4, addr("10.0.0.21"), false},
		{"other family", v4, addr("2001:db8::15"), false},
		{"IPv4-mapped is not IPv4", v4, addr("::ffff:10.0.0.15"), false},
		{"IPv6 inside", v6, addr("2001:db8::1f"), true},
		{"IPv6 with zone", v6, addr("2001:db8::15%eth0"), false},
		{"IPv6 last with zone", v6, addr("2001:db8::20%eth0"), false},
		{"zero address", v4, netip.Addr{}, false},
		{"zero range", config.Range{}, addr("10.0.0.1"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.Contains(tt.a); got != tt.want {
				t.Errorf("%v.Contains(%v) = %v; want %v", tt.r, tt.a, got, tt.want)
			}
		})
	}
}

func TestRangeIs4(t *testing.T) {
	if !rng("10.0.0.1", "10.0.0.2").Is4() || rng("2001:db8::1", "2001:db8::2").Is4() {
		t.Error("Is4 does not tell the families apart")
	}
}

func TestLookups(t *testing.T) {
	cfg, err := config.Parse(pools(
		pool("b", "10.0.1.0/24", "2001:db8::/64"),
		pool("a", "10.0.0.10-10.0.0.20"),
	))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		get      func() (config.Pool, bool)
		wantName string
		wantOK   bool
	}{
		{"Pool a", func() (config.Pool, bool) { return cfg.Pool("a") }, "a", true},
		{"Pool b", func() (config.Pool, bool) { return cfg.Pool("b") }, "b", true},
		{"Pool missing", func() (config.Pool, bool) { return cfg.Pool("c") }, "", false},
		{"PoolOf IPv4", func() (config.Pool, bool) { return cfg.PoolOf(addr("10.0.1.77")) }, "b", true},
		{"PoolOf IPv6", func() (config.Pool, bool) { return cfg.PoolOf(addr("2001:db8::ffff")) }, "b", true},
		{"PoolOf range end", func() (config.Pool, bool) { return cfg.PoolOf(addr("10.0.0.20")) }, "a", true},
		{"PoolOf outside", func() (config.Pool, bool) { return cfg.PoolOf(addr("10.0.0.21")) }, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := tt.get()
			if p.Name != tt.wantName || ok != tt.wantOK {
				t.Errorf("got %q, %v; want %q, %v", p.Name, ok, tt.wantName, tt.wantOK)
			}
		})
	}
}

func TestParseCommunity(t *testing.T) {
	tests := []struct {
		in      string
		want    config.CommunityValue
		wantErr string
	}{
		{in: "65535:65281", want: config.CommunityValue{Standard: 0xffffff01}},
		{in: "0:0", want: config.CommunityValue{}},
		{in: "64500:100", want: config.CommunityValue{Standard: 64500<<16 | 100}},
		{in: "large:4294967295:0:7", want: config.CommunityValue{Large: true, Parts: [3]uint32{4294967295, 0, 7}}},
		{in: "", wantErr: `"": a community is a:b or large:a:b:c`},
		{in: "64500", wantErr: `"64500": a community is a:b or large:a:b:c`},
		{in: "1:2:3", wantErr: `"1:2:3": a community is a:b or large:a:b:c`},
		{in: "65536:0", wantErr: `"65536:0": part "65536" is not a number 0-65535`},
		{in: "-1:0", wantErr: `"-1:0": part "-1" is not a number 0-65535`},
		{in: "1: 2", wantErr: `"1: 2": part " 2" is not a number 0-65535`},
		{in: "large:1:2", wantErr: `"large:1:2": a large community is large:a:b:c`},
		{in: "large:1:2:3:4", wantErr: `"large:1:2:3:4": a large community is large:a:b:c`},
		{in: "large:1:2:4294967296", wantErr: `"large:1:2:4294967296": part "4294967296" is not a number 0-4294967295`},
		{in: "LARGE:1:2:3", wantErr: `"LARGE:1:2:3": a community is a:b or large:a:b:c`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := config.ParseCommunity(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("ParseCommunity(%q) error = %v; want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCommunity(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseCommunity(%q) (-want +got):\n%s", tt.in, diff)
			}
			if s := got.String(); s != tt.in {
				t.Errorf("String() = %q; want %q", s, tt.in)
			}
		})
	}
}
