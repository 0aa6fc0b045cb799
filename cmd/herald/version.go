package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/heraldpush/herald/internal/buildinfo"
)

// Set at link time by `make release` (see the Makefile):
//
//	go build -ldflags "-X main.version=v1.2.3 -X main.commit=abc1234 -X main.date=2026-12-01T10:00:00Z"
//
// Empty, they come from the build information Go embeds (buildinfo.Read).
var (
	version string
	commit  string
	date    string
)

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
	b := buildinfo.Read(version, commit, date)
	if *short {
		_, err := fmt.Fprintln(stdout, b.Version)
		return err
	}
	_, err := io.WriteString(stdout, b.String())
	return err
}
