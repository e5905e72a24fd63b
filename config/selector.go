package config

import (
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Label selectors are checked here rather than by
// metav1.LabelSelectorAsSelector alone: its errors name Go paths
// ("values[0][ok]") and echo values whole, and a problem should name the
// place the user wrote it.
const (
	msgLabelKey   = "not a label key (an optional DNS subdomain and '/', then at most 63 characters: letters, digits, '-', '_' or '.', starting and ending with a letter or digit)"
	msgLabelValue = "not a label value (at most 63 characters: letters, digits, '-', '_' or '.', starting and ending with a letter or digit; or empty)"
)

// selector builds a label selector; an absent one selects everything.
func (v *validator) selector(at place, s *rawSelector) labels.Selector {
	if s == nil {
		return labels.Everything()
	}
	ok := true
	bad := func(at, format string, args ...any) {
		v.probs.addf(at, format, args...)
		ok = false
	}
	all := &metav1.LabelSelector{MatchLabels: s.MatchLabels}
	for _, k := range sortedKeys(s.MatchLabels) {
		if v.probs.full() {
			return nil
		}
		f := join(at.field("matchLabels"), k)
		if !isLabelKey(k) {
			bad(f, "%s", msgLabelKey) // f quotes k
		}
		if val := s.MatchLabels[k]; !isLabelValue(val) {
			bad(f, "%s: %s", quote(val), msgLabelValue)
		}
	}
	for i, r := range s.MatchExpressions {
		if v.probs.full() {
			return nil
		}
		f := at.item("matchExpressions", i)
		if !isLabelKey(r.Key) {
			bad(f+".key", "%s: %s", quote(r.Key), msgLabelKey)
		}
		// A set of values: repeats (an alias used twice) are checked once.
		values := slices.Compact(slices.Sorted(slices.Values(r.Values)))
		switch op := metav1.LabelSelectorOperator(r.Operator); op {
		case metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn:
			if len(values) == 0 {
				bad(f+".values", "required for operator %s: at least one value", op)
			}
		case metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist:
			if len(values) > 0 {
				bad(f+".values", "must be empty for operator %s", op)
			}
		case "":
			bad(f+".operator", "required: In, NotIn, Exists or DoesNotExist")
		default:
			bad(f+".operator", "%s: not an operator; want In, NotIn, Exists or DoesNotExist", quote(r.Operator))
		}
		for j, val := range r.Values {
			if !isLabelValue(val) {
				bad(fmt.Sprintf("%s.values[%d]", f, j), "%s: %s", quote(val), msgLabelValue)
				break // one bad value of a list says enough
			}
		}
		all.MatchExpressions = append(all.MatchExpressions, metav1.LabelSelectorRequirement{
			Key: r.Key, Operator: metav1.LabelSelectorOperator(r.Operator), Values: values,
		})
	}
	if !ok {
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(all)
	if err != nil {
		// Everything it checks was checked above; say no more than where.
		v.probs.addf(at.path, "not a valid label selector")
		return nil
	}
	return sel
}

// isLabelKey reports whether s is a label key: an optional DNS subdomain
// prefix and '/', then a name as a label value but not empty.
func isLabelKey(s string) bool {
	prefix, name, ok := strings.Cut(s, "/")
	if !ok {
		name = s
	} else if len(prefix) > validation.DNS1123SubdomainMaxLength || !isSubdomain(prefix) {
		return false
	}
	return name != "" && isLabelValue(name)
}

// isLabelValue reports whether s is a label value: empty, or at most 63
// letters, digits, '-', '_' and '.', starting and ending with a letter or
// digit.
func isLabelValue(s string) bool {
	return s == "" || len(s) <= validation.LabelValueMaxLength && isWord(s, isAlnum, "-_.")
}

// isSubdomain reports whether s is a DNS subdomain (RFC 1123) as
// Kubernetes reads one: labels joined by dots, of any length up to 253.
func isSubdomain(s string) bool {
	for l := range strings.SplitSeq(s, ".") {
		if !isWord(l, isLower, "-") {
			return false
		}
	}
	return true
}

func isLower(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
