package config_test

import (
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/heraldlb/herald/config"
	"github.com/heraldlb/herald/config/configtest"
)

// maxLine bounds one problem or warning: a place, what is wrong, and at
// most a few quoted snippets of 40 characters.
const maxLine = 512

// checkBounded fails when a problem or warning is long, or there are too
// many: whatever the input, a message quotes only a slice of it.
func checkBounded(t *testing.T, err error, warnings []string) {
	t.Helper()
	ls := append(lines(err), warnings...)
	if n := len(lines(err)); n > 101 {
		t.Errorf("%d problems; want at most 100 and a note", n)
	}
	if n := len(warnings); n > 101 {
		t.Errorf("%d warnings; want at most 100 and a note", n)
	}
	for _, l := range ls {
		if len(l) > maxLine {
			t.Errorf("message of %d bytes, more than %d: %.200q…", len(l), maxLine, l)
		}
	}
}

// TestShapesMessagesBounded parses every pathological shape and checks
// the size of what comes back (their cost is checked by BenchmarkParseWorst).
func TestShapesMessagesBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("parses 20 documents of 1 MiB")
	}
	for _, s := range configtest.Shapes() {
		t.Run(s.Name, func(t *testing.T) {
			b := s.Doc()
			var err error
			var warnings []string
			if s.MetalLB {
				_, warnings, err = config.ParseMetalLB(b)
			} else {
				var cfg *config.Config
				if cfg, err = config.Parse(b); cfg != nil {
					warnings = cfg.Warnings
				}
			}
			checkBounded(t, err, warnings)
		})
	}
}

// goNames are what Go's own error texts leak: package and function names,
// field paths of Go structs, and call shapes such as ParseAddr("x").
var goNames = regexp.MustCompile(`netip\.|ParseAddr|ParsePrefix|strconv|ParseInt|ParseUint|: time: |\[ok\]|[A-Za-z0-9_]\(`)

// quoted matches what a message quotes of the user's text, which may hold
// anything.
var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// goName returns the Go name msg leaks, outside what it quotes, or "".
func goName(msg string) string {
	return goNames.FindString(quoted.ReplaceAllString(msg, `""`))
}

// TestMessagesNameNoGoCode runs documents wrong in every way a library
// error could surface and checks that no message names Go code: each must
// name the field and echo what the user wrote.
func TestMessagesNameNoGoCode(t *testing.T) {
	long := strings.Repeat("x", 100)
	bad := []string{
		"pools: [\n", "- a\n", "pools:\n- {name: a, addresses: [10.0.0.300, 10.0.0.1-10.0.0, 10.0.0.0/33, 10.0.0.0/x, fe80::/64%eth0, " +
			"fe80::%eth0/64, lan, tor1.example.com, ::ffff:10.0.0.1, \"\", 1-2, " + long + "]}\n",
		"pools:\n- name: a\n  addresses: [10.0.0.1]\n  allocation:\n    namespaces: [A_b, " + long + "]\n    priority: 99999999999\n" +
			"    serviceSelector:\n      matchLabels: {\"a b\": c, d: \"e f\", " + long + "/x: y, " + long + ": " + long + "}\n" +
			"      matchExpressions:\n      - {key: k, operator: In, values: [ok, \"not ok\"]}\n      - {key: k, operator: In}\n" +
			"      - {key: k, operator: Exists, values: [v]}\n      - {key: \"\", operator: Near}\n      - {key: k}\n",
		"bgpPeers:\n- {name: p, address: router, asn: x, myASN: 99999999999999999999, port: 70000, routerID: 2001:db8::1, " +
			"sourceAddress: eth0, holdTime: soon, keepaliveTime: 5, connectTime: -1s, bfdProfile: nope, passwordSecret: {name: S_1, key: a/b}}\n" +
			"- {name: q, address: \"fe80::1%eth0\", asn: 23456, myASN: 65535, holdTime: 99999999999999999999h, keepaliveTime: 1.5s}\n" +
			"- {name: r, address: 192.0.2.1, asn: 4294967295, myASN: 0, holdTime: 1ms, routerID: me, nodeSelector: {matchLabels: {a: \"b c\"}}}\n",
		"bfdProfiles:\n- {name: b, receiveInterval: 300, transmitInterval: 1h, detectMultiplier: 1}\n",
		"communities:\n- {name: c, value: \"65536:1\"}\n- {name: d, value: \"large:1:x:3\"}\n- {name: e, value: \"1:2:3\"}\n",
		"bgpAdvertisements:\n- {name: a, pools: [x], peers: [y], communities: [z, \"1:x\"], aggregationLength: 33, localPref: -1}\n",
		"l2Advertisements:\n- {name: a, interfaces: [eth0/1, abcdefghijklmnopq], nodeSelector: {matchExpressions: [{key: k, operator: In}]}}\n",
	}
	metalLB := []string{
		"peers:\n- {peer-address: router, peer-asn: 0, my-asn: 1, hold-time: 120, keepalive-time: x, router-id: me, source-address: eth0}\n",
		"bfd-profiles:\n- {name: b, receive-interval: 5}\naddress-pools:\n- {name: a, protocol: arp, addresses: [lan, 10.0.0.5/24]}\n",
		"bgp-communities: {a: \"1:2:3\"}\npeers:\n- {peer-address: 192.0.2.1, peer-asn: 1, my-asn: 2, node-selectors: [{match-labels: {\"a b\": c}}]}\n",
	}
	check := func(t *testing.T, err error, warnings []string) {
		t.Helper()
		if err == nil {
			t.Fatal("no error")
		}
		checkBounded(t, err, warnings)
		for _, l := range append(lines(err), warnings...) {
			if m := goName(l); m != "" {
				t.Errorf("%q names Go code (%q)", l, m)
			}
		}
	}
	for i, d := range bad {
		t.Run(fmt.Sprint("herald-", i), func(t *testing.T) {
			_, err := config.Parse([]byte(d))
			check(t, err, nil)
		})
	}
	for i, d := range metalLB {
		t.Run(fmt.Sprint("metallb-", i), func(t *testing.T) {
			_, warnings, err := config.ParseMetalLB([]byte(d))
			check(t, err, warnings)
		})
	}
}

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// costBudget is what a parse of n bytes may allocate: YAML's node tree is
// some 20 bytes a byte of input; aliases may make a small document read as
// 32768 values and 2 MiB of text, and checking them costs up to 16 MiB more.
func costBudget(n int) uint64 { return 40*uint64(n) + 24<<20 }

// FuzzParseCost looks for documents that are slow or memory-hungry to
// parse, rather than for crashes: it fails when a parse allocates more than
// costBudget, or when its messages are long.
func FuzzParseCost(f *testing.F) {
	for _, d := range []string{
		fullDoc,
		"x: &v [a, a, a, a]\npools:\n- {name: *v, addresses: [*v, *v, *v]}\n",
		"x: &v " + strings.Repeat("a", 2000) + "\npools:\n- {name: *v, addresses: [*v, *v, *v], allocation: {namespaces: [*v]}}\n",
		"x: &v [10.0.0.1, 10.0.0.2, 10.0.0.3]\ny: &w [*v, *v, *v, *v]\npools:\n- {name: a, addresses: *w}\n- {name: b, addresses: *w}\n",
		"pools:\n- {name: a, addresses: [10.0.0.0/8]}\n- {name: b, addresses: [10.0.0.1, 10.0.0.3, 10.0.0.5, 10.0.0.7]}\n",
		"pools:\n- {name: p, addresses: [10.0.0.0/24, 10.0.2.0/25]}\nbgpAdvertisements:\n- {name: a, aggregationLength: 24, pools: [p, p, p, p]}\n",
		"x: &s {matchExpressions: [{key: k, operator: In, values: [a, b, c]}]}\nl2Advertisements:\n- {name: a, nodeSelector: *s}\n- {name: b, nodeSelector: *s}\n",
		"x: [[[[[[[[[[]]]]]]]]]]\n",
	} {
		f.Add([]byte(d))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var err error
		var warnings []string
		n := allocated(func() {
			var cfg *config.Config
			if cfg, err = config.Parse(b); cfg != nil {
				warnings = cfg.Warnings
			}
		})
		if budget := costBudget(len(b)); n > budget {
			t.Errorf("Parse of %d bytes allocated %d bytes; the budget is %d", len(b), n, budget)
		}
		checkBounded(t, err, warnings)
		n = allocated(func() { _, warnings, err = config.ParseMetalLB(b) })
		if budget := costBudget(len(b)); n > budget {
			t.Errorf("ParseMetalLB of %d bytes allocated %d bytes; the budget is %d", len(b), n, budget)
		}
		checkBounded(t, err, warnings)
	})
}
