package config

import (
	"cmp"
	"errors"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
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
	peers := v.peers(doc.BGPPeers, bfdProfiles, cfg)
	v.bgpAdvertisements(doc.BGPAdvertisements, pools, peers, communities, cfg)

	slices.SortFunc(cfg.Pools, func(a, b Pool) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(cfg.L2Advertisements, func(a, b L2Advertisement) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(cfg.BGPPeers, func(a, b BGPPeer) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(cfg.BFDProfiles, func(a, b BFDProfile) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(cfg.Communities, func(a, b Community) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(cfg.BGPAdvertisements, func(a, b BGPAdvertisement) int { return cmp.Compare(a.Name, b.Name) })
	return cfg
}

type validator struct {
	probs *problems
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
	case len(validation.IsDNS1123Label(name)) > 0:
		v.probs.addf(f, "%q: %w", name, errNotLabel)
	}
	if first, ok := used[name]; ok {
		v.probs.addf(f, "%q already used by %s", name, first)
		return
	}
	used[name] = at.path
}

var errNotLabel = errors.New("not a DNS label (at most 63 characters: lowercase letters, digits and '-', starting and ending with a letter or digit)")

// refs checks a list of references to named elements of another section and
// returns them sorted, or nil when the list is empty.
func (v *validator) refs(at place, field string, list []string, known names, section string) []string {
	seen := make(map[string]bool, len(list))
	for i, n := range list {
		switch _, ok := known[n]; {
		case !ok:
			v.probs.addf(at.item(field, i), "%q is not defined in %s", n, section)
		case seen[n]:
			v.probs.addf(at.item(field, i), "%q listed twice", n)
		}
		seen[n] = true
	}
	if len(list) == 0 {
		return nil
	}
	out := slices.Clone(list)
	slices.Sort(out)
	return slices.Compact(out)
}

// selector builds a label selector; an absent one selects everything.
func (v *validator) selector(at place, s *rawSelector) labels.Selector {
	if s == nil {
		return labels.Everything()
	}
	all := &metav1.LabelSelector{MatchLabels: s.MatchLabels}
	ok := true
	// Check each part alone, so that every bad one is reported at its place.
	for _, k := range sortedKeys(s.MatchLabels) {
		one := &metav1.LabelSelector{MatchLabels: map[string]string{k: s.MatchLabels[k]}}
		if _, err := metav1.LabelSelectorAsSelector(one); err != nil {
			v.probs.add(at.field("matchLabels"), err)
			ok = false
		}
	}
	for i, r := range s.MatchExpressions {
		req := metav1.LabelSelectorRequirement{Key: r.Key, Operator: metav1.LabelSelectorOperator(r.Operator), Values: r.Values}
		one := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{req}}
		if _, err := metav1.LabelSelectorAsSelector(one); err != nil {
			v.probs.add(at.item("matchExpressions", i), err)
			ok = false
		}
		all.MatchExpressions = append(all.MatchExpressions, req)
	}
	if !ok {
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(all)
	if err != nil {
		v.probs.add(at.path, err)
		return nil
	}
	return sel
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// duration reads an optional duration, returning def when it is absent.
func (v *validator) duration(at string, s *string, def time.Duration) (time.Duration, bool) {
	if s == nil {
		return def, true
	}
	d, err := time.ParseDuration(*s)
	if err != nil {
		v.probs.add(at, err)
		return 0, false
	}
	if d < 0 {
		v.probs.addf(at, "%s: must not be negative", d)
		return 0, false
	}
	return d, true
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
