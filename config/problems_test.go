package config

import (
	"strings"
	"testing"
)

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"lan", `"lan"`},
		{strings.Repeat("a", 40), `"` + strings.Repeat("a", 40) + `"`},
		{strings.Repeat("a", 41), `"` + strings.Repeat("a", 40) + `…"`},
		{strings.Repeat("é", 50), `"` + strings.Repeat("é", 40) + `…"`},
		{"a\"b\n", `"a\"b\n"`},
		{"\xff", `"\xff"`},
	}
	for _, tt := range tests {
		if got := quote(tt.in); got != tt.want {
			t.Errorf("quote(%.50q) = %s; want %s", tt.in, got, tt.want)
		}
	}
}

func TestJoin(t *testing.T) {
	long := strings.Repeat("k", 100)
	tests := []struct{ path, key, want string }{
		{"", "pools", "pools"},
		{"pools[0]", "name", "pools[0].name"},
		{"", "a b", `document["a b"]`},
		{"x", "a.b", `x["a.b"]`},
		{"x", "", `x[""]`},
		{"x", "ü", `x["ü"]`},
		{"x", long, `x["` + strings.Repeat("k", 40) + `…"]`},
	}
	for _, tt := range tests {
		if got := join(tt.path, tt.key); got != tt.want {
			t.Errorf("join(%q, %.50q) = %s; want %s", tt.path, tt.key, got, tt.want)
		}
	}
}

func TestCountValues(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"", 0},
		{"pools: []\n", 2},
		{"- {name: a, addresses: [10.0.0.1, 10.0.0.2]}\n", 8},
		{`x: "a b, c" # two words`, 7}, // quotes and comments count as words
		{"x: [" + strings.Repeat("0,", 100) + "]", 102},
	}
	for _, tt := range tests {
		if got := countValues([]byte(tt.in), 1000); got != tt.want {
			t.Errorf("countValues(%.40q) = %d; want %d", tt.in, got, tt.want)
		}
	}
	if got := countValues([]byte(strings.Repeat("a ", 100)), 10); got != 11 {
		t.Errorf("countValues stops at %d past a limit of 10; want 11", got)
	}
}
