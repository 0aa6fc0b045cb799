package deploy

import (
	"crypto/sha256"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// buildContext copies into dir what `docker build .` would send as the
// build context: the repository minus what .dockerignore excludes, with
// the same matcher Docker (BuildKit and the classic builder) uses. It
// returns the copied paths, slash-separated.
func buildContext(t *testing.T, root, dir string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	patterns, err := ignorefile.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatalf(".dockerignore: %v", err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatalf(".dockerignore: %v", err)
	}
	// A directory that is excluded can still hold files that a later "!"
	// pattern brings back; only one no exclusion reaches into is skipped
	// (.git, node_modules), so the walk stays quick.
	reachable := func(dir string) bool {
		for _, p := range pm.Patterns() {
			s := p.String()
			if p.Exclusion() && (strings.HasPrefix(s, dir+"/") || s == dir || strings.HasPrefix(s, "*")) {
				return true
			}
		}
		return false
	}
	var files []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		excluded, err := pm.MatchesOrParentMatches(rel)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if excluded && !reachable(rel) {
				return filepath.SkipDir
			}
			return nil
		}
		if excluded || !d.Type().IsRegular() {
			return nil
		}
		files = append(files, rel)
		return copyFile(path, filepath.Join(dir, filepath.FromSlash(rel)))
	})
	if err != nil {
		t.Fatalf("copying the build context: %v", err)
	}
	return files
}

func copyFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// goBuild builds ./cmd/herald in dir as the Dockerfile does (static,
// -trimpath) and returns the binary's path.
func goBuild(t *testing.T, dir, out string, env ...string) string {
	t.Helper()
	bin := filepath.Join(out, "herald")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=context-test", "-o", bin, "./cmd/herald")
	cmd.Dir = dir
	// GOFLAGS=-mod=readonly: go.mod and go.sum must be complete as they
	// are in the context; GOWORK=off: no go.work from outside it.
	cmd.Env = append(os.Environ(), append([]string{"CGO_ENABLED=0", "GOFLAGS=-mod=readonly", "GOWORK=off"}, env...)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/herald in the build context: %v\n%s", err, b)
	}
	return bin
}

// TestBuildContext builds the binary from exactly what the Docker build
// context holds. It failed when .dockerignore dropped docs/, which holds
// the embedded openapi.yaml.
func TestBuildContext(t *testing.T) {
	root := repoRoot(t)
	ctxDir := t.TempDir()
	files := buildContext(t, root, ctxDir)

	// What the Dockerfile copies by name must be there.
	for _, want := range []string{"go.mod", "go.sum", "cmd/herald/main.go", "docs/openapi.yaml", "clients/js/herald.js"} {
		if !slices.Contains(files, want) {
			t.Errorf("build context lacks %s", want)
		}
	}
	// And nothing that only costs upload time or leaks.
	for _, f := range files {
		switch {
		case strings.HasPrefix(f, ".git/"), strings.HasSuffix(f, "_test.go"), strings.Contains(f, "/testdata/"),
			strings.Contains(f, "node_modules/"), strings.HasSuffix(f, ".md"), strings.HasPrefix(f, "deploy/"):
			t.Errorf("build context holds %s", f)
		}
	}

	bin := goBuild(t, ctxDir, t.TempDir())
	out, err := exec.Command(bin, "version", "--short").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "context-test" {
		t.Fatalf("the binary built from the context: herald version --short: %v: %s", err, out)
	}
	t.Logf("build context: %d files; built %s", len(files), bin)
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}
