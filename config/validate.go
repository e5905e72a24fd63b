package config

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// validate checks a raw document and builds the model from it, recording
// every problem in probs. The model is only meaningful when probs stays empty.
func validate(doc *document, probs *problems) *Config {
	v := &validator{probs: probs}
	cfg := &Config{}
	communities := v.communities(doc.Communities, cfg)
	bfdProfiles := v.bfdProfiles(doc.BFDProfiles, cfg)
	pools := v.pools(doc.Pools, cfg)
	v.overlaps(pools.list)
	v.l2Advertisements(doc.L2Advertisements, pools, cfg)
	peers := v.peers(doc.BGPPeers, bfdProfiles, pools, cfg)
	v.bgpAdvertisements(doc.BGPAdvertisements, pools, peers, communities, cfg)

	slices.SortFunc(cfg.Pools, func(a, b Pool) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(cfg.L2Advertisements, func(a, b L2Advertisement) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(cfg.BGPPeers, func(a, b BGPPeer) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(cfg.BFDProfiles, func(a, b BFDProfile) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(cfg.Communities, func(a, b Community) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(cfg.BGPAdvertisements, func(a, b BGPAdvertisement) int { return cmp.Compare(a.Name, b.Name) })
	cfg.Warnings = probs.warningList()
	return cfg
}

type validator struct {
	probs *problems
	// unfitMemo remembers, per pool, family and aggregation length, the
	// first range that does not fit (see unfit).
	unfitMemo map[unfitKey]Range
}

// names maps each name declared in a section to the place that declared it first.
type names map[string]string

// name checks an element's name: a DNS label (RFC 1123) not used before in
// its section.
func (v *validator) name(at place, name string, used names) {
	f := at.field("name")
	switch {
	case name == "":
		v.probs.addf(f, "required")
		return
	case !isLabel(name):
		v.probs.addf(f, "%s: %w", quote(name), errNotLabel)
	}
	if first, ok := used[name]; ok {
		v.probs.addf(f, "%s already used by %s", quote(name), first)
		return
	}
	used[name] = at.path
}

var errNotLabel = errors.New("not a DNS label (at most 63 characters: lowercase letters, digits and '-', starting and ending with a letter or digit)")

// isLabel reports whether s is a DNS label (RFC 1123): at most 63
// lowercase letters, digits and '-', starting and ending with a letter or
// digit. Written out rather than by validation.IsDNS1123Label, whose
// regular expression and message cost more than the rest of a name's check.
func isLabel(s string) bool {
	return len(s) <= validation.DNS1123LabelMaxLength && isWord(s, isLower, "-")
}

// isWord reports whether s is not empty, made of bytes that are alnum or
// in inner, and starts and ends with an alnum one.
func isWord(s string, alnum func(byte) bool, inner string) bool {
	if s == "" || !alnum(s[0]) || !alnum(s[len(s)-1]) {
		return false
	}
	for i := 1; i < len(s)-1; i++ {
		if !alnum(s[i]) && strings.IndexByte(inner, s[i]) < 0 {
			return false
		}
	}
	return true
}

// refs checks a list of references to named elements of another section and
// returns them sorted, or nil when the list is empty.
func (v *validator) refs(at place, field string, list []string, known names, section string) []string {
	seen := make(map[string]bool, min(len(list), len(known)))
	for i, n := range list {
		if v.probs.full() {
			break
		}
		switch _, ok := known[n]; {
		case !ok:
			v.probs.addf(at.item(field, i), "%s is not defined in %s", quote(n), section)
		case seen[n]:
			v.probs.addf(at.item(field, i), "%s listed twice", quote(n))
		default:
			seen[n] = true
		}
	}
	if len(list) == 0 {
		return nil
	}
	out := slices.Clone(list)
	slices.Sort(out)
	return slices.Compact(out)
}

// duration reads an optional duration, returning def when it is absent.
// Messages echo the text as written.
func (v *validator) duration(at string, s *string, def time.Duration) (time.Duration, bool) {
	if s == nil {
		return def, true
	}
	var d time.Duration
	err := errTooLong
	if len(*s) <= maxDurationText {
		d, err = time.ParseDuration(*s)
	}
	switch {
	case err != nil:
		v.probs.addf(at, "%s: not a duration; write a number and a unit, as in 90s, 1m30s or 300ms", quote(*s))
		return 0, false
	case d < 0:
		v.probs.addf(at, "%s: must not be negative", quote(*s))
		return 0, false
	}
	return d, true
}

// maxDurationText is longer than any duration worth writing; a longer text
// is refused before time.ParseDuration reads it.
const maxDurationText = 32

var errTooLong = errors.New("too long")

// between writes the bounds of a duration as a user would: whole seconds
// as "65535s" rather than Go's "18h12m15s".
func between(lo, hi time.Duration) string {
	return short(lo) + "-" + short(hi)
}

func short(d time.Duration) string {
	switch {
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	case d%time.Millisecond == 0:
		return fmt.Sprintf("%dms", d/time.Millisecond)
	default:
		return d.String()
	}
}

// integer reads an optional integer within [lo, hi], returning def when it is absent.
func (v *validator) integer(at string, n *int64, def, lo, hi int64) (int64, bool) {
	if n == nil {
		return def, true
	}
	if *n < lo || *n > hi {
		v.probs.addf(at, "%d: must be %d-%d", *n, lo, hi)
		return 0, false
	}
	return *n, true
}
