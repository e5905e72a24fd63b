package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxProblems bounds the list of problems, and of warnings: past it a
// document is not worth reading further, and a crafted one could otherwise
// make millions. Validation loops check full() and stop.
const maxProblems = 100

// maxQuoted is how many characters of the user's text a message quotes.
// Aliases can repeat one long value thousands of times; a message that
// echoed it whole would make the error, and the logs, hundreds of MB.
const maxQuoted = 40

// quote writes s for a message: quoted, cut to maxQuoted characters with an
// ellipsis. It reads only the characters it keeps.
func quote(s string) string {
	i := 0
	for n := 0; i < len(s); n++ {
		if n == maxQuoted {
			return strconv.Quote(s[:i] + "…")
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return strconv.Quote(s)
}

// Problem is one thing wrong with a document, at a place in it.
type Problem struct {
	Path string // e.g. "pools[0].addresses[1]", in the document's own words
	Err  error
}

func (p *Problem) Error() string { return p.Path + ": " + p.Err.Error() }
func (p *Problem) Unwrap() error { return p.Err }

// Problems lists the problems in an error from Parse or ParseMetalLB, one
// per problem; an error that is not a list of problems is one entry with
// no path.
func Problems(err error) []Problem {
	if err == nil {
		return nil
	}
	var out []Problem
	list := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	}
	for _, e := range list {
		var p *Problem
		if errors.As(e, &p) {
			out = append(out, *p)
		} else {
			out = append(out, Problem{Err: e})
		}
	}
	return out
}

// problems collects everything wrong with a document, each entry starting
// with the place it concerns.
type problems struct {
	list []error
	// seen drops repeats: a generated entry (from a MetalLB document) can
	// meet the same problem as the entry it was made from. Messages are
	// short (user text is quoted by quote), so it stays small.
	seen map[string]bool
	// undecoded holds the places whose value was of the wrong kind, so that
	// validation does not report them again as missing.
	undecoded map[string]bool
	dropped   bool
	// warnings are things valid but probably not meant, bounded like problems.
	warnings        []string
	droppedWarnings bool
}

func newProblems() *problems {
	return &problems{seen: map[string]bool{}, undecoded: map[string]bool{}}
}

// add records err at place at. Once the list is full it only notes that
// more were dropped, without building the message.
func (p *problems) add(at string, err error) {
	if p.full() {
		p.dropped = true
		return
	}
	if p.under(at) {
		return
	}
	e := &Problem{Path: at, Err: err}
	if p.seen[e.Error()] {
		return
	}
	p.seen[e.Error()] = true
	p.list = append(p.list, e)
}

// warn records a warning at place at.
func (p *problems) warn(at, format string, args ...any) {
	if len(p.warnings) >= maxProblems {
		p.droppedWarnings = true
		return
	}
	p.warnings = append(p.warnings, at+": "+fmt.Sprintf(format, args...))
}

// warningList returns the warnings, with a note when some were dropped.
func (p *problems) warningList() []string {
	if p.droppedWarnings {
		return append(p.warnings, fmt.Sprintf("too many warnings: only the first %d are listed", maxProblems))
	}
	return p.warnings
}

// addf records a new error at place at.
func (p *problems) addf(at, format string, args ...any) {
	p.add(at, fmt.Errorf(format, args...))
}

// undecodable records that the value at place at could not be read.
func (p *problems) undecodable(at string, err error) {
	p.add(at, err)
	p.undecoded[at] = true
}

// under reports whether at is, or lies within, a place that could not be read.
func (p *problems) under(at string) bool {
	if len(p.undecoded) == 0 {
		return false
	}
	for i := range len(at) {
		if (at[i] == '.' || at[i] == '[') && p.undecoded[at[:i]] {
			return true
		}
	}
	return p.undecoded[at]
}

func (p *problems) full() bool { return len(p.list) >= maxProblems }

// err joins every problem, or returns nil when there is none.
func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	list := p.list
	if p.dropped {
		list = append(list, fmt.Errorf("too many problems: only the first %d are listed", maxProblems))
	}
	return errors.Join(list...)
}

// place names an element of the document in that document's own words: a
// MetalLB document converted to Herald's reports "peers[0].peer-asn" where
// a Herald one reports "bgpPeers[0].asn".
type place struct {
	path string
	// keys maps Herald field names to the source document's keys; a field
	// mapped to "" has no key of its own and is reported at path. Nil
	// means the source is a Herald document.
	keys map[string]string
}

// field names a field of the element.
func (p place) field(name string) string {
	if k, ok := p.keys[name]; ok {
		if k == "" {
			return p.path
		}
		name = k
	}
	if p.path == "" {
		return name
	}
	return p.path + "." + name
}

// item names element i of a list field.
func (p place) item(name string, i int) string {
	if k, ok := p.keys[name]; ok && k == "" {
		return p.path
	}
	return fmt.Sprintf("%s[%d]", p.field(name), i)
}

// sub is the place of a nested object.
func (p place) sub(name string) place {
	return place{path: p.field(name), keys: p.keys}
}

// join appends a key to a decoding path. A key that is long, or would
// not read as one segment, is quoted (and so shortened).
func join(path, key string) string {
	plain := len(key) > 0 && len(key) <= maxQuoted && !strings.ContainsFunc(key, func(r rune) bool {
		return r <= ' ' || r == '.' || r == '[' || r == ']' || r == '"' || r == utf8.RuneError || r > '~'
	})
	switch {
	case plain && path == "":
		return key
	case plain:
		return path + "." + key
	case path == "":
		return "document[" + quote(key) + "]"
	default:
		return path + "[" + quote(key) + "]"
	}
}
