package config

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
)

// ParseCommunity reads a community literal: "a:b" with 16-bit parts for a
// standard community (RFC 1997), or "large:a:b:c" with 32-bit parts for a
// large one (RFC 8092). Parts are decimal.
func ParseCommunity(s string) (CommunityValue, error) {
	if rest, ok := strings.CutPrefix(s, "large:"); ok {
		parts := strings.SplitN(rest, ":", 4)
		if len(parts) != 3 {
			return CommunityValue{}, fmt.Errorf("%s: a large community is large:a:b:c", quote(s))
		}
		var c CommunityValue
		c.Large = true
		for i, p := range parts {
			n, err := strconv.ParseUint(p, 10, 32)
			if err != nil {
				return CommunityValue{}, fmt.Errorf("%s: part %s is not a number 0-4294967295", quote(s), quote(p))
			}
			c.Parts[i] = uint32(n)
		}
		return c, nil
	}
	hi, lo, ok := strings.Cut(s, ":")
	if !ok || strings.Contains(lo, ":") {
		return CommunityValue{}, fmt.Errorf("%s: a community is a:b or large:a:b:c", quote(s))
	}
	var std uint32
	for _, p := range []string{hi, lo} {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return CommunityValue{}, fmt.Errorf("%s: part %s is not a number 0-65535", quote(s), quote(p))
		}
		std = std<<16 | uint32(n)
	}
	return CommunityValue{Standard: std}, nil
}

// String writes c as ParseCommunity reads it.
func (c CommunityValue) String() string {
	if c.Large {
		return fmt.Sprintf("large:%d:%d:%d", c.Parts[0], c.Parts[1], c.Parts[2])
	}
	return fmt.Sprintf("%d:%d", c.Standard>>16, c.Standard&0xffff)
}

// compareCommunities orders standard communities before large ones, then by value.
func compareCommunities(a, b CommunityValue) int {
	if a.Large != b.Large {
		if a.Large {
			return 1
		}
		return -1
	}
	return cmp.Or(
		cmp.Compare(a.Standard, b.Standard),
		cmp.Compare(a.Parts[0], b.Parts[0]),
		cmp.Compare(a.Parts[1], b.Parts[1]),
		cmp.Compare(a.Parts[2], b.Parts[2]),
	)
}
