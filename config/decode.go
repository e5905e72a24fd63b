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

// valueBudget bounds the values read from a document of n bytes once
// aliases are expanded; without it a small document of nested aliases could
// expand to billions of values. A document without aliases holds fewer
// values than bytes, so it stays well below.
func valueBudget(n int) int {
	return min(max(4*n, 1<<16), 1<<22)
}

// decodeDocument reads the YAML document b into out, a pointer to one of the
// raw document structs. It reports every unknown field and every value of
// the wrong kind, with its path, and returns false when the text cannot be
// read at all (too large, not YAML, several documents, an alias bomb).
func decodeDocument(b []byte, out any, probs *problems) bool {
	if len(b) > MaxDocumentSize {
		probs.addf("document", "%d bytes, more than the limit of %d (1 MiB)", len(b), MaxDocumentSize)
		return false
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var root yaml.Node
	switch err := dec.Decode(&root); {
	case errors.Is(err, io.EOF):
		return true // empty document: nothing configured
	case err != nil:
		probs.add("document", err)
		return false
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		probs.addf("document", "more than one YAML document; Herald reads exactly one")
		return false
	}
	limit := valueBudget(len(b))
	d := decoder{probs: probs, budget: limit, limit: limit}
	if len(root.Content) == 1 {
		d.decode("", root.Content[0], reflect.ValueOf(out).Elem())
	}
	return d.budget >= 0 // what was read of a bomb is not worth checking
}

// decoder fills raw document structs from a YAML node tree by their yaml
// tags. Unlike yaml.Node.Decode it goes on after a problem, so one pass
// finds them all. It reads YAML 1.2 scalars: "no" and "on" are strings.
type decoder struct {
	probs         *problems
	budget, limit int
}

func (d *decoder) decode(path string, n *yaml.Node, v reflect.Value) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if d.budget--; d.budget < 0 {
		if d.budget == -1 {
			d.probs.addf("document", "more than %d values once aliases are expanded", d.limit)
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
		d.budget++ // the pointer and its target are one value
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
		v.SetString(n.Value)
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

// object fills struct v from mapping n.
func (d *decoder) object(path, at string, n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.probs.undecodable(at, fmt.Errorf("want a mapping, got %s", describe(n)))
		return
	}
	fields := fieldsOf(v.Type())
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
	return k.Value, true
}

// fieldsOf maps the yaml tags of struct type t to field indexes.
func fieldsOf(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" {
			m[name] = i
		}
	}
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
		if v := []rune(n.Value); len(v) > 40 {
			return fmt.Sprintf("%q", string(v[:40])+"…")
		}
		return fmt.Sprintf("%q", n.Value)
	default:
		return "nothing"
	}
}
