package deploy

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// directive is one nginx directive: "name args...;" or "name args... { block }".
type directive struct {
	Name  string
	Args  []string
	Block []*directive // nil for a simple directive
	Line  int
}

// parseNginx parses an nginx configuration into its directive tree. It
// knows the syntax (words, quoted strings with escapes, comments, ';',
// '{' and '}'), not the directives: braces inside quotes or comments do
// not count, and unbalanced braces are errors.
func parseNginx(src string) ([]*directive, error) {
	toks, err := tokenize(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	ds, err := p.block(0)
	if err != nil {
		return nil, err
	}
	if p.i < len(p.toks) {
		return nil, fmt.Errorf("line %d: unexpected '}'", p.toks[p.i].line)
	}
	return ds, nil
}

type token struct {
	text   string
	quoted bool // a quoted string: never a ';', '{' or '}'
	line   int
}

func tokenize(src string) ([]token, error) {
	var toks []token
	line := 1
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == ';' || c == '{' || c == '}':
			toks = append(toks, token{text: string(c), line: line})
			i++
		case c == '"' || c == '\'':
			start := line
			var b strings.Builder
			i++
			for {
				if i >= len(src) {
					return nil, fmt.Errorf("line %d: unterminated string", start)
				}
				if src[i] == '\\' && i+1 < len(src) {
					b.WriteByte(src[i+1])
					i += 2
					continue
				}
				if src[i] == c {
					i++
					break
				}
				if src[i] == '\n' {
					line++
				}
				b.WriteByte(src[i])
				i++
			}
			toks = append(toks, token{text: b.String(), quoted: true, line: start})
		default:
			j := i
			for j < len(src) && !strings.ContainsRune(" \t\r\n;{}#\"'", rune(src[j])) {
				if src[j] == '\\' && j+1 < len(src) {
					j++
				}
				j++
			}
			toks = append(toks, token{text: src[i:j], line: line})
			i = j
		}
	}
	return toks, nil
}

type parser struct {
	toks []token
	i    int
}

// block parses directives up to a closing '}' (not consumed) or the end.
func (p *parser) block(depth int) ([]*directive, error) {
	var out []*directive
	for p.i < len(p.toks) {
		t := p.toks[p.i]
		if !t.quoted && t.text == "}" {
			return out, nil // the caller consumes it, or reports it at depth 0
		}
		if !t.quoted && (t.text == ";" || t.text == "{") {
			return nil, fmt.Errorf("line %d: unexpected %q", t.line, t.text)
		}
		d := &directive{Name: t.text, Line: t.line}
		p.i++
		for {
			if p.i >= len(p.toks) {
				return nil, fmt.Errorf("line %d: directive %q is not terminated", d.Line, d.Name)
			}
			a := p.toks[p.i]
			p.i++
			if a.quoted {
				d.Args = append(d.Args, a.text)
				continue
			}
			if a.text == ";" {
				break
			}
			if a.text == "}" {
				return nil, fmt.Errorf("line %d: directive %q is not terminated", d.Line, d.Name)
			}
			if a.text == "{" {
				kids, err := p.block(depth + 1)
				if err != nil {
					return nil, err
				}
				if p.i >= len(p.toks) {
					return nil, fmt.Errorf("line %d: block %q is not closed", d.Line, d.Name)
				}
				p.i++ // the '}'
				d.Block = kids
				if d.Block == nil {
					d.Block = []*directive{}
				}
				break
			}
			d.Args = append(d.Args, a.text)
		}
		out = append(out, d)
	}
	if depth > 0 {
		return nil, fmt.Errorf("unexpected end of file: a block is not closed")
	}
	return out, nil
}

// find returns the directives named name directly in ds.
func find(ds []*directive, name string) []*directive {
	var out []*directive
	for _, d := range ds {
		if d.Name == name {
			out = append(out, d)
		}
	}
	return out
}

// walk calls f for every directive in ds, depth first.
func walk(ds []*directive, f func(*directive)) {
	for _, d := range ds {
		f(d)
		walk(d.Block, f)
	}
}

// locationPath is the path a location directive matches, and whether it
// is a prefix or exact match (not a regular expression).
func locationPath(d *directive) (string, bool) {
	switch {
	case len(d.Args) == 1 && !strings.HasPrefix(d.Args[0], "~"):
		return d.Args[0], true
	case len(d.Args) == 2 && (d.Args[0] == "=" || d.Args[0] == "^~"):
		return d.Args[1], true
	}
	return "", false
}

// headers are the proxy_set_header directives in force in a location:
// its own if it has any, else the nearest enclosing level's (nginx does
// not merge them). Names are lower-cased.
func headers(levels ...[]*directive) map[string]string {
	for i := len(levels) - 1; i >= 0; i-- {
		hs := find(levels[i], "proxy_set_header")
		if len(hs) == 0 {
			continue
		}
		out := map[string]string{}
		for _, h := range hs {
			if len(h.Args) == 2 {
				out[strings.ToLower(h.Args[0])] = h.Args[1]
			}
		}
		return out
	}
	return map[string]string{}
}

// setting is the last value of a simple directive in force: the
// innermost level that sets it wins.
func setting(name string, levels ...[]*directive) (string, bool) {
	for i := len(levels) - 1; i >= 0; i-- {
		if ds := find(levels[i], name); len(ds) > 0 {
			return strings.Join(ds[len(ds)-1].Args, " "), true
		}
	}
	return "", false
}

// nginxDuration parses an nginx time value: "90", "90s", "1h", "1h 30m",
// "500ms". A bare number is seconds.
func nginxDuration(s string) (time.Duration, error) {
	units := map[string]time.Duration{
		"ms": time.Millisecond, "s": time.Second, "m": time.Minute,
		"h": time.Hour, "d": 24 * time.Hour, "w": 7 * 24 * time.Hour,
	}
	s = strings.ReplaceAll(s, " ", "")
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	var total time.Duration
	for s != "" {
		j := 0
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j == 0 {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		n, err := strconv.Atoi(s[:j])
		if err != nil {
			return 0, err
		}
		s = s[j:]
		k := 0
		for k < len(s) && (s[k] < '0' || s[k] > '9') {
			k++
		}
		unit := s[:k]
		s = s[k:]
		if unit == "" {
			if s != "" {
				return 0, fmt.Errorf("bad duration")
			}
			unit = "s"
		}
		u, ok := units[unit]
		if !ok {
			return 0, fmt.Errorf("bad duration unit %q", unit)
		}
		total += time.Duration(n) * u
	}
	return total, nil
}

func TestParseNginx(t *testing.T) {
	src := `
# a comment with { braces } and ; semicolons
http {
    map $http_upgrade $c { default upgrade; '' close; }
    server {
        location = /ws { return 200 "}{;"; }   # } trailing
        location /a\ b { add_header X 'it\'s'; }
    }
}
`
	ds, err := parseNginx(src)
	if err != nil {
		t.Fatal(err)
	}
	http := find(ds, "http")
	if len(ds) != 1 || len(http) != 1 {
		t.Fatalf("top level: %+v", ds)
	}
	m := find(http[0].Block, "map")
	if len(m) != 1 || len(m[0].Block) != 2 || m[0].Block[1].Name != "" || m[0].Block[1].Args[0] != "close" {
		t.Fatalf("map: %+v", m)
	}
	srv := find(http[0].Block, "server")[0]
	locs := find(srv.Block, "location")
	if len(locs) != 2 {
		t.Fatalf("locations: %d", len(locs))
	}
	if p, ok := locationPath(locs[0]); !ok || p != "/ws" {
		t.Fatalf("location path %q %v", p, ok)
	}
	if r := locs[0].Block[0]; r.Name != "return" || r.Args[1] != "}{;" {
		t.Fatalf("quoted braces: %+v", r)
	}
	if p, _ := locationPath(locs[1]); p != `/a\ b` {
		t.Fatalf("escaped space: %q", p)
	}
	if h := locs[1].Block[0]; h.Args[1] != "it's" {
		t.Fatalf("escaped quote: %q", h.Args[1])
	}

	for _, bad := range []string{
		"http {",
		"http { server { }",
		"http { } }",
		"listen 80",
		"http { listen 80 }",
		`return "open;`,
	} {
		if _, err := parseNginx(bad); err == nil {
			t.Errorf("parseNginx(%q): no error", bad)
		}
	}
}

func TestNginxDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"60": time.Minute, "60s": time.Minute, "1h": time.Hour, "1h 30m": 90 * time.Minute,
		"500ms": 500 * time.Millisecond, "1d": 24 * time.Hour,
	} {
		got, err := nginxDuration(in)
		if err != nil || got != want {
			t.Errorf("nginxDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "h", "1x", "1.5h"} {
		if _, err := nginxDuration(bad); err == nil {
			t.Errorf("nginxDuration(%q): no error", bad)
		}
	}
}
