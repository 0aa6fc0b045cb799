package main

import (
	"flag"
	"slices"
	"strings"
)

// parseInterspersed parses flags anywhere among the arguments ("herald
// publish news hi --key k" as well as "herald publish --key k news hi")
// and returns the positional arguments. Everything after "--" is
// positional, for data that starts with '-'.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var tail []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, tail = args[:i], args[i+1:]
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return append(pos, tail...), nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// serverURL normalises a --url: a bare host:port gets http://, and a
// trailing slash goes.
func serverURL(u string) string {
	u = strings.TrimRight(strings.TrimSpace(u), "/")
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	return u
}
