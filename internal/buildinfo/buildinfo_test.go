package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestReadFallback(t *testing.T) {
	b := Read("", "", "")
	// A test binary has no module version: the fallback shows.
	if b.Version != "(devel)" {
		t.Errorf("version %q in a test binary, want (devel)", b.Version)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 4 || lines[0] != "herald (devel)" || !strings.HasPrefix(lines[1], "commit ") ||
		!strings.HasPrefix(lines[2], "built ") || lines[3] != runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH {
		t.Fatalf("String():\n%s", b)
	}
}

// The link-time variables of `make release` win over the build info.
func TestReadLinkerValues(t *testing.T) {
	b := Read("v1.2.3", "abc1234", "2026-12-01T10:00:00Z")
	if b.Version != "v1.2.3" || b.Commit != "abc1234" || b.Date != "2026-12-01T10:00:00Z" {
		t.Fatalf("Read() = %+v", b)
	}
	if !strings.HasPrefix(b.String(), "herald v1.2.3\ncommit abc1234\nbuilt  2026-12-01T10:00:00Z\n") {
		t.Fatalf("String():\n%s", b)
	}
}
