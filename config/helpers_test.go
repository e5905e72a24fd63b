package config_test

import (
	"maps"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/heraldlb/herald/config"
	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/labels"
)

// Fixture builders: a document is built from small objects and written as
// YAML, so that each test row shows only what it is about.

type obj = map[string]any

// doc writes top-level sections, given as key, value pairs, as a YAML document.
func doc(kv ...any) []byte {
	b, err := yaml.Marshal(with(obj{}, kv...))
	if err != nil {
		panic(err)
	}
	return b
}

// with returns a copy of o with the key, value pairs set.
func with(o obj, kv ...any) obj {
	o = maps.Clone(o)
	for i := 0; i+1 < len(kv); i += 2 {
		o[kv[i].(string)] = kv[i+1]
	}
	return o
}

func list(items ...obj) []obj { return items }

func pool(name string, addrs ...string) obj {
	return obj{"name": name, "addresses": addrs}
}

func peer(name, addr string) obj {
	return obj{"name": name, "address": addr, "asn": 64500, "myASN": 64501}
}

func bgpAdv(name string, pools ...string) obj {
	o := obj{"name": name}
	if len(pools) > 0 {
		o["pools"] = pools
	}
	return o
}

// pools is a document with only the given pools.
func pools(ps ...obj) []byte { return doc("pools", ps) }

// peers is a document with only the given BGP peers.
func peers(ps ...obj) []byte { return doc("bgpPeers", ps) }

func selector(kv ...any) obj { return with(obj{}, kv...) }

var cmpOpts = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b labels.Selector) bool {
		if a == nil || b == nil {
			return a == nil && b == nil
		}
		return a.String() == b.String()
	}),
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func rng(from, to string) config.Range { return config.Range{From: addr(from), To: addr(to)} }

func sel(t *testing.T, s string) labels.Selector {
	t.Helper()
	l, err := labels.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// lines splits a joined error into its problems.
func lines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

// wantProblem fails unless one problem of err starts with want.
func wantProblem(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want a problem starting %q", want)
	}
	for _, l := range lines(err) {
		if strings.HasPrefix(l, want) {
			return
		}
	}
	t.Errorf("no problem starts %q; got:\n%s", want, err)
}
