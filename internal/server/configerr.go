package server

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/heraldpush/herald/push"
)

// Config errors speak the file's language: YAML keys, what a key wants
// (a duration like 10m, a whole number of bytes) and what it got, never
// Go types. yaml.v3 reports type errors as text ("line 3: cannot
// unmarshal !!str `ten` into time.Duration"); yamlError rewrites each of
// them, finding the key on the line it names.

var (
	typeErrRe    = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+) (?:`(.*)` )?into (.+)$")
	unknownKeyRe = regexp.MustCompile(`^line (\d+): field (\S+) not found in type (\S+)$`)
	keyRe        = regexp.MustCompile(`^\s*(?:-\s+)?["'{]?([^"':#\s{]+)["']?\s*:`)
)

// yamlError rewrites err from decoding src (a file's or a variable's
// YAML); errors it does not know pass unchanged.
func yamlError(err error, src string) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		if strings.Contains(err.Error(), "bad rate") {
			return fmt.Errorf("publish_rate: want a rate like 5/s, 100/m or 2/500ms: %w", err)
		}
		return err
	}
	lines := strings.Split(src, "\n")
	// keyAt finds the key on the line: the one right before val when
	// there is a val (flow style puts several keys on one line), else the
	// line's first.
	keyAt := func(line, val string) string {
		n, _ := strconv.Atoi(line)
		if n < 1 || n > len(lines) {
			return ""
		}
		text := lines[n-1]
		if val != "" {
			re := regexp.MustCompile(`([A-Za-z0-9_.-]+)["']?\s*:\s*["']?` + regexp.QuoteMeta(val))
			if m := re.FindStringSubmatch(text); m != nil {
				return m[1]
			}
		}
		if m := keyRe.FindStringSubmatch(text); m != nil {
			return m[1]
		}
		return ""
	}
	var out []string
	for _, e := range te.Errors {
		if m := unknownKeyRe.FindStringSubmatch(e); m != nil {
			msg := fmt.Sprintf("line %s: unknown key %s", m[1], m[2])
			if s := closest(m[2], keysOf(m[3])); s != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", s)
			}
			out = append(out, msg)
			continue
		}
		m := typeErrRe.FindStringSubmatch(e)
		if m == nil {
			out = append(out, e)
			continue
		}
		key := keyAt(m[1], m[3])
		got := strconv.Quote(m[3])
		switch m[2] {
		case "seq":
			got = "a list"
		case "map":
			got = "a mapping"
		}
		out = append(out, fmt.Sprintf("line %s: %s: want %s, got %s", m[1], key, wants(key, m[4]), got))
	}
	return errors.New(strings.Join(out, "; "))
}

// wants says in words what a key of Go type typ takes.
func wants(key, typ string) string {
	switch typ {
	case "time.Duration":
		return "a duration like 10m, 30s or 1h"
	case "int", "int64":
		if strings.HasSuffix(key, "_bytes") {
			return "a whole number of bytes"
		}
		return "a whole number"
	case "bool":
		return "true or false"
	case "[]string":
		return "a list of strings"
	case "string":
		return "a string"
	case "push.Rate":
		return "a rate like 5/s, 100/m or 2/500ms"
	case "push.Namespace", "*push.Namespace":
		return "a mapping of namespace rules (" + strings.Join(yamlKeys(reflect.TypeFor[push.Namespace]()), ", ") + ")"
	case "map[string]*push.Namespace":
		return "a mapping of namespace names to their rules"
	}
	return "a value of another kind"
}

// keysOf lists the YAML keys of the Go type yaml.v3 names in an
// unknown-key error.
func keysOf(typ string) []string {
	switch strings.TrimPrefix(typ, "*") {
	case "server.Config":
		return yamlKeys(reflect.TypeFor[Config]())
	case "push.Namespace":
		return yamlKeys(reflect.TypeFor[push.Namespace]())
	}
	return nil
}

func yamlKeys(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if k, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); k != "" && k != "-" {
			keys = append(keys, k)
		}
	}
	return keys
}

// envError says what the variable for key wants, for a value setField
// could not take.
func envError(f reflect.Value, key, val string, err error) error {
	name := EnvName(key)
	var want string
	switch f.Interface().(type) {
	case time.Duration:
		want = wants(key, "time.Duration")
	default:
		switch f.Kind() {
		case reflect.Int, reflect.Int64:
			want = wants(key, "int")
		case reflect.Bool:
			want = wants(key, "bool")
		default: // YAML in the variable
			return fmt.Errorf("config: %s (%s, YAML): %w", name, key, yamlError(err, val))
		}
	}
	return fmt.Errorf("config: %s (%s): want %s, got %q", name, key, want, val)
}

// otherEnv are the HERALD_* variables that are not configuration keys:
// read by the CLI and the test harness.
var otherEnv = []string{"HERALD_CONFIG", "HERALD_URL", "HERALD_TOKEN", "HERALD_TEST_LOG"}

// EnvWarnings lists the HERALD_* variables in environ ("K=V" entries, as
// os.Environ) that Herald does not read, each with the closest name it
// does: a typo (HERALD_REDIS_ULR) would otherwise silently leave its
// setting at the default.
func EnvWarnings(environ []string) []string {
	known := slices.Clone(otherEnv)
	for _, k := range yamlKeys(reflect.TypeFor[Config]()) {
		known = append(known, EnvName(k))
	}
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "HERALD_") || slices.Contains(known, name) {
			continue
		}
		msg := name + " is not a Herald setting; it is ignored"
		if s := closest(name, known); s != "" {
			msg = fmt.Sprintf("%s is not a Herald setting (did you mean %s?); it is ignored", name, s)
		}
		out = append(out, msg)
	}
	slices.Sort(out)
	return out
}

// closest is the candidate nearest to s by edit distance, when it is
// near enough to be a typo (at most a third of s's length); else "".
func closest(s string, candidates []string) string {
	best, bestD := "", len(s)/3+1
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b, in bytes (names
// are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
