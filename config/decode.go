package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxDocumentSize is the largest document Parse and ParseMetalLB read, in
// bytes (1 MiB, the most a ConfigMap can hold).
const MaxDocumentSize = 1 << 20

// maxValues bounds the values of a document: the YAML values as written
// (keys, items, brackets), and again once aliases are expanded. Reading
// YAML costs about a microsecond a value on a small machine, and checking
// them about as much again, so this keeps a parse within 100 ms; it is
// room for thousands of pools, or a pool of 30000 single addresses.
// Without the second count a small document of nested aliases could
// expand to billions of values.
const maxValues = 1 << 15

// maxText bounds the text of the values read once aliases are expanded, in
// bytes. A document without aliases holds less than MaxDocumentSize;
// through aliases one long value could be read, and checked, thousands of
// times.
const maxText = 2 * MaxDocumentSize

// errEmpty refuses a document that configures nothing: an empty ConfigMap
// key is far more often a mistake (a bad template, a truncated apply) than
// a wish to withdraw every address, and applying it would tear down every
// announcement at once.
var errEmpty = errors.New(`empty; Herald keeps the last valid configuration (to configure no pools at all, write "pools: []")`)

// decodeDocument reads the YAML document b into out, a pointer to one of the
// raw document structs. It reports every unknown field and every value of
// the wrong kind, with its path, and returns false when the text cannot be
// read at all (too large, too many values, not YAML, several documents,
// empty, an alias bomb).
func decodeDocument(b []byte, out any, probs *problems) bool {
	if len(b) > MaxDocumentSize {
		probs.addf("document", "%d bytes, more than the limit of %d (1 MiB)", len(b), MaxDocumentSize)
		return false
	}
	if countValues(b, maxValues) > maxValues {
		probs.addf("document", "more than %d values, the most Herald reads; write ranges or CIDRs rather than many single addresses", maxValues)
		return false
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var root yaml.Node
	switch err := dec.Decode(&root); {
	case errors.Is(err, io.EOF):
		probs.add("document", errEmpty)
		return false
	case err != nil:
		probs.add("document", yamlError(err))
		return false
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		probs.addf("document", "more than one YAML document; Herald reads exactly one")
		return false
	}
	if len(root.Content) != 1 || isNull(root.Content[0]) {
		probs.add("document", errEmpty)
		return false
	}
	d := decoder{probs: probs, values: maxValues, text: maxText}
	d.decode("", root.Content[0], reflect.ValueOf(out).Elem())
	return d.values >= 0 && d.text >= 0 // what was read of a bomb is not worth checking
}

// isNull reports whether n is a null scalar, following aliases.
func isNull(n *yaml.Node) bool {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// yamlError rewords a YAML syntax error: the parser's text names no Go
// code, but it may quote a token of any length.
func yamlError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return errors.New("not YAML: " + strings.ToValidUTF8(msg, "?"))
}

// countValues counts the values written in b, stopping past limit: its
// words, split at white space and the flow indicators ",[]{}", plus each
// opening bracket. It runs before the YAML parser, so that a document of a
// million one-character values is refused before the parser spends a
// second and a hundred MB on it. It reads quotes and comments as words on
// purpose: skipping them would need YAML's rules for where a quote or a
// comment starts, and any mistake there would let a crafted document hide
// its values; counted this way, every YAML value needs a word or bracket
// of its own, but for nulls (a key without a value: at most three values
// a word).
func countValues(b []byte, limit int) int {
	n, word := 0, false
	for i := 0; i < len(b) && n <= limit; i++ {
		switch b[i] {
		case ' ', '\t', '\n', '\r', ',', ']', '}':
			word = false
		case '[', '{':
			n++
			word = false
		default:
			if !word {
				n++
				word = true
			}
		}
	}
	return n
}

// decoder fills raw document structs from a YAML node tree by their yaml
// tags. Unlike yaml.Node.Decode it goes on after a problem, so one pass
// finds them all. It reads YAML 1.2 scalars: "no" and "on" are strings.
type decoder struct {
	probs *problems
	// values and text are what is left of maxValues and maxText.
	values, text int
	fields       map[reflect.Type]map[string]int // see fieldsOf
}

func (d *decoder) decode(path string, n *yaml.Node, v reflect.Value) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if d.values--; d.values < 0 {
		if d.values == -1 {
			d.probs.addf("document", "more than %d values once aliases are expanded", maxValues)
		}
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // an absent value: the field keeps its default
	}
	at := path
	if at == "" {
		at = "document"
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		d.values++ // the pointer and its target are one value
		d.decode(path, n, p.Elem())
		v.Set(p)
	case reflect.Struct:
		d.object(path, at, n, v)
	case reflect.Map:
		d.stringMap(path, at, n, v)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.probs.undecodable(at, fmt.Errorf("want a list, got %s", describe(n)))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, e := range n.Content {
			d.decode(fmt.Sprintf("%s[%d]", path, i), e, s.Index(i))
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.probs.undecodable(at, fmt.Errorf("want a string, got %s", describe(n)))
			return
		}
		if d.spend(len(n.Value)) {
			v.SetString(n.Value)
		}
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.probs.undecodable(at, fmt.Errorf("want true or false, got %s", describe(n)))
			return
		}
		v.SetBool(b)
	case reflect.Int64:
		var i int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
			d.probs.undecodable(at, fmt.Errorf("want an integer, got %s", describe(n)))
			return
		}
		v.SetInt(i)
	default:
		panic(fmt.Sprintf("config: raw document field of kind %s", v.Kind()))
	}
}

// spend takes n bytes from what is left of maxText, and reports whether
// any was left.
func (d *decoder) spend(n int) bool {
	if d.text -= n; d.text < 0 {
		if d.text+n >= 0 {
			d.probs.addf("document", "more than %d bytes of text once aliases are expanded", maxText)
		}
		return false
	}
	return true
}

// object fills struct v from mapping n.
func (d *decoder) object(path, at string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.probs.undecodable(at, fmt.Errorf("want a mapping, got %s", describe(n)))
		return
	}
	fields := d.fieldsOf(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, ok := d.key(path, at, n.Content[i])
		if !ok {
			continue
		}
		kp := join(path, key)
		idx, known := fields[key]
		switch {
		case !known:
			d.probs.addf(kp, "unknown field")
		case seen[key]:
			d.probs.addf(kp, "given twice")
		default:
			seen[key] = true
			d.decode(kp, n.Content[i+1], v.Field(idx))
		}
	}
}

// stringMap fills map v (string to string) from mapping n.
func (d *decoder) stringMap(path, at string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.probs.undecodable(at, fmt.Errorf("want a mapping, got %s", describe(n)))
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, ok := d.key(path, at, n.Content[i])
		if !ok {
			continue
		}
		kp := join(path, key)
		k := reflect.ValueOf(key)
		if m.MapIndex(k).IsValid() {
			d.probs.addf(kp, "given twice")
			continue
		}
		e := reflect.New(v.Type().Elem()).Elem()
		d.decode(kp, n.Content[i+1], e)
		m.SetMapIndex(k, e)
	}
	v.Set(m)
}

// key reads a mapping key, which must be a plain scalar.
func (d *decoder) key(path, at string, k *yaml.Node) (string, bool) {
	for k.Kind == yaml.AliasNode && k.Alias != nil {
		k = k.Alias
	}
	switch {
	case k.Kind != yaml.ScalarNode:
		d.probs.addf(at, "a key is %s; want a name", describe(k))
		return "", false
	case k.ShortTag() == "!!merge":
		d.probs.addf(join(path, k.Value), "merge keys are not supported")
		return "", false
	}
	return k.Value, d.spend(len(k.Value))
}

// fieldsOf maps the yaml tags of struct type t to field indexes, once
// per type: a document may hold thousands of objects of one type.
func (d *decoder) fieldsOf(t reflect.Type) map[string]int {
	if m, ok := d.fields[t]; ok {
		return m
	}
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" {
			m[name] = i
		}
	}
	if d.fields == nil {
		d.fields = map[reflect.Type]map[string]int{}
	}
	d.fields[t] = m
	return m
}

// describe names what a node holds, for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return quote(n.Value)
	default:
		return "nothing"
	}
}
