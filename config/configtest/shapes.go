// Package configtest builds the configuration documents that cost the
// config parser the most, each close to config.MaxDocumentSize, and measures
// a parse of them. The config benchmarks and `make bench` share it, so that
// both hold the parser to the same limits on the same inputs.
package configtest

import (
	"fmt"
	"strings"
)

// Size is the size the shapes are built to: just below 1 MiB, the most a
// ConfigMap (and config.MaxDocumentSize) holds.
const Size = 1<<20 - 512

// Values is how many YAML values (words) a shape holds at most: just under
// the parser's limit of 32768, so that the document is read and validated
// rather than refused at the door. Text repeated through aliases is kept
// under the parser's 2 MiB by each shape.
const Values = 32500

// Shape is one pathological document.
type Shape struct {
	Name string
	// MetalLB marks a document in MetalLB's legacy format (for config.ParseMetalLB).
	MetalLB bool
	// Doc builds the document; it is at most Size bytes.
	Doc func() []byte
}

// Shapes returns every shape, each found to be slow or memory-hungry by an
// outside corpus or by our own fuzzing before the parser was fixed.
func Shapes() []Shape {
	return []Shape{
		{Name: "overlap-two-pools", Doc: overlapTwoPools},
		{Name: "overlap-inside-one-range", Doc: overlapInsideOneRange},
		{Name: "bgp-pool-listed-many-times", Doc: bgpPoolListedManyTimes},
		{Name: "bgp-many-advertisements", Doc: bgpManyAdvertisements},
		{Name: "l2-pool-listed-many-times", Doc: l2PoolListedManyTimes},
		{Name: "alias-long-values", Doc: aliasLongValues},
		{Name: "alias-long-keys", Doc: aliasLongKeys},
		{Name: "alias-selector-values", Doc: aliasSelectorValues},
		{Name: "selector-many-labels", Doc: selectorManyLabels},
		{Name: "many-pools", Doc: manyPools},
		{Name: "many-quoted-addresses", Doc: manyQuotedAddresses},
		{Name: "many-duplicate-names", Doc: manyDuplicateNames},
		{Name: "many-peers-and-advertisements", Doc: manyPeersAndAdvertisements},
		{Name: "many-problems", Doc: manyProblems},
		{Name: "values-at-the-limit", Doc: valuesAtTheLimit},
		{Name: "values-past-the-limit", Doc: valuesPastTheLimit},
		{Name: "nulls-at-the-limit", Doc: nullsAtTheLimit},
		{Name: "one-long-scalar", Doc: oneLongScalar},
		{Name: "deep-nesting", Doc: deepNesting},
		{Name: "metallb-many-advertisements", MetalLB: true, Doc: metalLBManyAdvertisements},
		{Name: "metallb-alias-long-values", MetalLB: true, Doc: metalLBAliasLongValues},
	}
}

// doc writes a document and counts its values.
type doc struct {
	strings.Builder
	values int
}

// add writes s, counting its values.
func (d *doc) add(s string) {
	d.WriteString(s)
	d.values += words(s)
}

func (d *doc) addf(format string, args ...any) { d.add(fmt.Sprintf(format, args...)) }

// fill adds items until the next would pass Size or Values, less room for
// a tail of tail bytes and values.
func (d *doc) fill(tail int, item func(i int) string) {
	for i := 0; ; i++ {
		s := item(i)
		if d.Len()+len(s)+tail > Size || d.values+words(s)+tail > Values {
			return
		}
		d.add(s)
	}
}

// bytes pads the document to Size with a comment and returns it: a
// comment costs the parser little, but the shapes are about size too.
func (d *doc) bytes() []byte {
	if n := Size - d.Len() - 3; n > 0 {
		d.WriteString("#" + strings.Repeat("-", n) + "\n")
	}
	return []byte(d.String())
}

// words counts the YAML values of s as the parser does before reading it:
// its words split at white space and ",[]{}", and each "[" and "{".
func words(s string) int {
	n, word := 0, false
	for _, c := range []byte(s) {
		switch {
		case strings.IndexByte(" \t\r\n,]}", c) >= 0:
			word = false
		case c == '[' || c == '{':
			n++
			word = false
		case !word:
			n++
			word = true
		}
	}
	return n
}

// ip4 is the i-th IPv4 address counted from 10.0.0.0, written by hand so
// that the generator does not lean on the code under test.
func ip4(i int) string {
	return fmt.Sprintf("10.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff)
}

// overlapTwoPools is two pools listing the same single addresses, every
// one of them an overlap; the second lists them backwards, so a scan for
// the entry behind an overlap walks the whole list.
func overlapTwoPools() []byte {
	const per = Values/2 - 10
	var d doc
	d.add("pools:\n- name: a\n  addresses: [")
	for i := range per {
		d.addf("%s,", ip4(2*i))
	}
	d.add("]\n- name: b\n  addresses: [")
	for i := range per {
		d.addf("%s,", ip4(2*(per-1-i)))
	}
	d.add("]\n")
	return d.bytes()
}

// overlapInsideOneRange is one pool of one /8 and another of many single
// addresses inside it, each an overlap with the same range.
func overlapInsideOneRange() []byte {
	var d doc
	d.add("pools:\n- name: a\n  addresses: [10.0.0.0/8]\n- name: b\n  addresses: [")
	d.fill(1, func(i int) string { return ip4(2*i) + "," })
	d.add("]\n")
	return d.bytes()
}

// aggPool is a pool of n /24 blocks and, last, one /25 that does not fit
// an aggregation length of 24: finding it means walking every range.
func aggPool(d *doc, n int) {
	d.add("pools:\n- name: p\n  addresses: [")
	for i := range n {
		d.addf("%s/24,", ip4(i<<9))
	}
	d.addf("%s/25]\n", ip4(n<<9))
}

// bgpPoolListedManyTimes lists that pool in one advertisement many times.
func bgpPoolListedManyTimes() []byte {
	var d doc
	aggPool(&d, Values/2)
	d.add("bgpAdvertisements:\n- name: a\n  aggregationLength: 24\n  pools: [")
	d.fill(1, func(int) string { return "p," })
	d.add("]\n")
	return d.bytes()
}

// bgpManyAdvertisements has many advertisements of that pool.
func bgpManyAdvertisements() []byte {
	var d doc
	aggPool(&d, Values/3)
	d.add("bgpAdvertisements:\n")
	d.fill(0, func(i int) string { return fmt.Sprintf("- {name: a%d, aggregationLength: 24, pools: [p]}\n", i) })
	return d.bytes()
}

// l2PoolListedManyTimes lists one pool in an L2 advertisement many times.
func l2PoolListedManyTimes() []byte {
	var d doc
	d.add("pools:\n- {name: p, addresses: [10.0.0.0/24]}\nl2Advertisements:\n- name: a\n  pools: [")
	d.fill(1, func(int) string { return "p," })
	d.add("]\n")
	return d.bytes()
}

// long anchors a value of n bytes as *v.
func long(d *doc, n int) {
	d.add("x: &v ")
	d.WriteString(strings.Repeat("a", n))
	d.add("\n")
}

// aliasLongValues repeats one long value, by alias, in every field that
// echoes what the user wrote in its error, then in a list, as often as
// the parser reads (2 MiB of text).
func aliasLongValues() []byte {
	var d doc
	long(&d, 16<<10)
	d.add("pools:\n- {name: *v, addresses: [*v, *v], autoAssign: *v, allocation: {namespaces: [*v, *v], " +
		"serviceSelector: {matchLabels: {*v : *v}, matchExpressions: [{key: *v, operator: *v, values: [*v]}]}}}\n")
	d.add("l2Advertisements:\n- {name: *v, pools: [*v], interfaces: [*v, *v]}\n")
	d.add("bgpPeers:\n- {name: *v, address: *v, asn: 1, myASN: 2, routerID: *v, sourceAddress: *v, " +
		"holdTime: *v, keepaliveTime: *v, connectTime: *v, bfdProfile: *v, passwordSecret: {name: *v, key: *v}}\n")
	d.add("bfdProfiles:\n- {name: *v, receiveInterval: *v}\ncommunities:\n- {name: *v, value: *v}\n")
	d.add("bgpAdvertisements:\n- {name: *v, pools: [*v], peers: [*v], communities: [*v]}\n")
	d.add("- name: b\n  pools: [")
	for range 80 {
		d.add("*v,")
	}
	d.add("]\n")
	return d.bytes()
}

// aliasLongKeys uses a long value as keys, which end up in paths.
func aliasLongKeys() []byte {
	var d doc
	long(&d, 16<<10)
	d.add("pools:\n- {name: a, addresses: [10.0.0.1], allocation: {serviceSelector: {matchLabels: {*v : a}}}}\n- ")
	for range 100 {
		d.add("*v : 1\n  ")
	}
	return d.bytes()
}

// aliasSelectorValues expands one list of label values, by alias, into as
// many selector requirements as the parser reads.
func aliasSelectorValues() []byte {
	var d doc
	d.add("x: &vals [")
	for i := range 1000 {
		d.addf("v%d,", i)
	}
	d.add("]\npools:\n- name: a\n  addresses: [10.0.0.1]\n  allocation:\n    serviceSelector:\n      matchExpressions:\n")
	for range 31 {
		d.add("      - {key: k, operator: In, values: *vals}\n")
	}
	return d.bytes()
}

// selectorManyLabels is one selector of many labels, a few of them bad.
func selectorManyLabels() []byte {
	var d doc
	d.add("l2Advertisements:\n- name: a\n  nodeSelector:\n    matchLabels:\n")
	d.fill(0, func(i int) string {
		if i%1000 == 999 {
			return fmt.Sprintf("      k%d: bad/value%d\n", i, i)
		}
		return fmt.Sprintf("      example.com/key-%d: value-%d\n", i, i)
	})
	return d.bytes()
}

// manyPools is a valid document of as many pools as it holds.
func manyPools() []byte {
	var d doc
	d.add("pools:\n")
	d.fill(0, func(i int) string {
		return fmt.Sprintf("- {name: pool-%d, addresses: [%s/30], allocation: {priority: %d}}\n", i, ip4(4*i), i)
	})
	return d.bytes()
}

// manyQuotedAddresses is one pool of quoted, padded addresses: a quoted
// scalar is one value however long, so this is the most text in values.
func manyQuotedAddresses() []byte {
	var d doc
	d.add("pools:\n- name: a\n  addresses:\n")
	pad := strings.Repeat(" ", 4)
	d.fill(0, func(i int) string { return "  - \"" + pad + ip4(i) + pad + "\"\n" })
	return d.bytes()
}

// manyDuplicateNames reuses one name in every section.
func manyDuplicateNames() []byte {
	var d doc
	d.add("communities:\n")
	for range 2000 {
		d.add("- {name: c, value: 1:1}\n")
	}
	d.add("bgpPeers:\n")
	for i := range 2000 {
		d.addf("- {name: p, address: %s, asn: 1, myASN: 1}\n", ip4(i))
	}
	d.add("pools:\n")
	d.fill(0, func(i int) string { return fmt.Sprintf("- {name: p, addresses: [%s]}\n", ip4(1<<20+i)) })
	return d.bytes()
}

// manyPeersAndAdvertisements is many eBGP peers, each checked against a
// pool of many ranges, and many advertisements with localPref and no peer
// list, each of which is checked against all peers.
func manyPeersAndAdvertisements() []byte {
	var d doc
	d.add("pools:\n- name: p\n  addresses: [")
	for i := range 8000 {
		d.addf("%s,", ip4(1<<20+2*i))
	}
	d.add("]\nbgpPeers:\n")
	for i := range 1500 {
		d.addf("- {name: p%d, address: %s, asn: 1, myASN: 2}\n", i, ip4(i))
	}
	d.add("bgpAdvertisements:\n")
	d.fill(0, func(i int) string { return fmt.Sprintf("- {name: a%d, localPref: 100}\n", i) })
	return d.bytes()
}

// manyProblems is a document with a problem in every line.
func manyProblems() []byte {
	var d doc
	d.add("pools:\n")
	d.fill(0, func(i int) string { return fmt.Sprintf("- {name: P%d, addresses: [x%d]}\n", i, i) })
	return d.bytes()
}

// valuesAtTheLimit is as many one-character values as the parser reads,
// in an unknown field: the most work for the YAML parser.
func valuesAtTheLimit() []byte {
	var d doc
	d.add("x: [")
	d.fill(1, func(int) string { return "0," })
	d.add("]\n")
	return d.bytes()
}

// nullsAtTheLimit is a mapping of keys without values: a word makes two
// YAML values (the key and a null), the most values a word can make in
// bulk.
func nullsAtTheLimit() []byte {
	var d doc
	d.add("x: {")
	d.fill(1, func(i int) string { return fmt.Sprintf("k%d,", i) })
	d.add("}\n")
	return d.bytes()
}

// valuesPastTheLimit is a million one-character values: refused before
// the YAML parser sees them.
func valuesPastTheLimit() []byte {
	var d doc
	d.add("x: [")
	d.WriteString(strings.Repeat("0,", (Size-8)/2))
	d.add("]\n")
	return d.bytes()
}

// oneLongScalar is one pool name of almost the whole document.
func oneLongScalar() []byte {
	var d doc
	d.add("pools:\n- addresses: [10.0.0.1]\n  name: ")
	d.WriteString(strings.Repeat("a", Size-d.Len()-1))
	d.add("\n")
	return d.bytes()
}

// deepNesting nests lists as deep as YAML lets it, as often as it can.
func deepNesting() []byte {
	var d doc
	d.add("x:\n")
	one := "- " + strings.Repeat("[", 9000) + strings.Repeat("]", 9000) + "\n"
	d.fill(0, func(int) string { return one })
	return d.bytes()
}

// metalLBManyAdvertisements is a MetalLB bgp pool of many ranges with many
// bgp-advertisements, each converted to an advertisement of that pool.
func metalLBManyAdvertisements() []byte {
	var d doc
	d.add("address-pools:\n- name: p\n  protocol: bgp\n  addresses: [")
	for i := range Values / 3 {
		d.addf("%s/24,", ip4(i<<9))
	}
	d.addf("%s/25]\n  bgp-advertisements:\n", ip4(Values/3<<9))
	d.fill(0, func(int) string { return "  - {aggregation-length: 24, localpref: 1}\n" })
	return d.bytes()
}

// metalLBAliasLongValues repeats a long value through a MetalLB document.
func metalLBAliasLongValues() []byte {
	var d doc
	long(&d, 16<<10)
	d.add("bgp-communities: {*v : *v}\npeers:\n- {peer-address: *v, peer-asn: 1, my-asn: 2, password: *v, hold-time: *v, " +
		"node-selectors: [{match-labels: {*v : *v}}]}\naddress-pools:\n- {name: *v, protocol: *v, addresses: [*v]}\n" +
		"- name: b\n  protocol: bgp\n  addresses: [")
	for range 100 {
		d.add("*v,")
	}
	d.add("]\n")
	return d.bytes()
}
