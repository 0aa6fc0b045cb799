package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// Set at link time by `make release` (see the Makefile):
//
//	go build -ldflags "-X main.version=v1.2.3 -X main.commit=abc1234 -X main.date=2026-12-01T10:00:00Z"
//
// Empty, they come from the build information Go embeds: the module
// version for `go install github.com/heraldpush/herald/cmd/herald@v1.2.3`,
// the VCS revision and time for a build in a git checkout.
var (
	version string
	commit  string
	date    string
)

// buildInfo is what `herald version` reports.
type buildInfo struct {
	Version  string // module version, "(devel)" for a checkout build
	Commit   string // VCS revision, "+dirty" when modified; "" when unknown
	Date     string // build or commit time, RFC 3339; "" when unknown
	Go       string // Go toolchain
	Platform string // GOOS/GOARCH
}

// readBuildInfo merges the link-time variables over debug.ReadBuildInfo.
func readBuildInfo() buildInfo {
	b := buildInfo{Version: "(devel)", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" {
			b.Version = v
		}
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Commit = s.Value
			case "vcs.time":
				b.Date = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && b.Commit != "" {
			b.Commit += "+dirty"
		}
	}
	if version != "" {
		b.Version = version
	}
	if commit != "" {
		b.Commit = commit
	}
	if date != "" {
		b.Date = date
	}
	return b
}

func (b buildInfo) String() string {
	unknown := func(s string) string {
		if s == "" {
			return "unknown"
		}
		return s
	}
	return fmt.Sprintf("herald %s\ncommit %s\nbuilt  %s\n%s %s\n",
		b.Version, unknown(b.Commit), unknown(b.Date), b.Go, b.Platform)
}

func cmdVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("herald version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	short := fs.Bool("short", false, "print only the version")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("version: unexpected argument %q", fs.Arg(0))
	}
	b := readBuildInfo()
	if *short {
		_, err := fmt.Fprintln(stdout, b.Version)
		return err
	}
	_, err := io.WriteString(stdout, b.String())
	return err
}
