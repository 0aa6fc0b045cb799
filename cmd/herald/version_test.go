package main

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"
)

func TestVersionCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, &errOut); err != nil {
		t.Fatalf("herald version: %v (%s)", err, errOut.String())
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "herald ") || !strings.HasPrefix(lines[1], "commit ") ||
		!strings.HasPrefix(lines[2], "built ") || lines[3] != runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH {
		t.Fatalf("herald version printed:\n%s", out.String())
	}
	// A test binary has no module version: the fallback shows.
	if v := strings.TrimPrefix(lines[0], "herald "); v != "(devel)" {
		t.Errorf("version %q in a test binary, want (devel)", v)
	}
}

// The link-time variables of `make release` reach herald version.
func TestVersionLinkerFlags(t *testing.T) {
	defer func(v, c, d string) { version, commit, date = v, c, d }(version, commit, date)
	version, commit, date = "v1.2.3", "abc1234", "2026-12-01T10:00:00Z"
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version", "--short"}, &out, &out); err != nil || out.String() != "v1.2.3\n" {
		t.Fatalf("herald version --short = %q, %v", out.String(), err)
	}
	if err := run(context.Background(), []string{"version", "extra"}, &out, &out); err == nil {
		t.Error("herald version extra: no error")
	}
}
