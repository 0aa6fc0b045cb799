// Package buildinfo is what `herald version` reports: the version, commit
// and build date, from the link-time variables of `make release` or, when
// those are empty, from the build information Go embeds.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Info is a binary's build information.
type Info struct {
	Version  string // module version, "(devel)" for a checkout build
	Commit   string // VCS revision, "+dirty" when modified; "" when unknown
	Date     string // build or commit time, RFC 3339; "" when unknown
	Go       string // Go toolchain
	Platform string // GOOS/GOARCH
}

// Read merges the link-time values (version, commit, date; empty when not
// set) over debug.ReadBuildInfo: the module version for `go install
// ...@v1.2.3`, the VCS revision and time for a build in a git checkout.
func Read(version, commit, date string) Info {
	b := Info{Version: "(devel)", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
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

// String is the four lines `herald version` prints.
func (b Info) String() string {
	unknown := func(s string) string {
		if s == "" {
			return "unknown"
		}
		return s
	}
	return fmt.Sprintf("herald %s\ncommit %s\nbuilt  %s\n%s %s\n",
		b.Version, unknown(b.Commit), unknown(b.Date), b.Go, b.Platform)
}
