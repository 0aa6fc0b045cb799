package deploy

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
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

// TestImageBuild builds the image's final stage with podman, from the
// Dockerfile's own instructions, around the binary built from the build
// context. Only the base differs: no registry is reachable here, so the
// distroless base becomes scratch, and the Go build stage (golang image)
// is the host's go build of the same context with the same flags.
func TestImageBuild(t *testing.T) {
	podman, err := exec.LookPath("podman")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("podman not installed; CI installs it (.ci/run)")
		}
		t.Skip("podman not installed")
	}
	root := repoRoot(t)
	src, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	stages := parseDockerfile(string(src))
	final := stages[len(stages)-1]

	ctxDir := t.TempDir()
	buildContext(t, root, ctxDir)
	imgDir := t.TempDir()
	bin := goBuild(t, ctxDir, imgDir)

	var cf strings.Builder
	cf.WriteString("FROM scratch\n")
	for _, in := range final[1:] {
		if in.Cmd == "COPY" && strings.Contains(in.Args, "--from=") {
			// COPY --from=build /out/herald /herald: from the host build.
			fields := strings.Fields(in.Args)
			in.Args = "herald " + fields[len(fields)-1]
		}
		cf.WriteString(in.Cmd + " " + in.Args + "\n")
	}
	if err := os.WriteFile(filepath.Join(imgDir, "Containerfile"), []byte(cf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	tag := "localhost/herald-image-test:" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	run := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(podman, args...)
		cmd.Dir = imgDir
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("podman %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
		}
		return out
	}
	// --format docker: the OCI format has no HEALTHCHECK.
	run("build", "--format", "docker", "--pull=never", "-t", tag, "-f", "Containerfile", ".")
	t.Cleanup(func() { exec.Command(podman, "rmi", "-f", tag).Run() })

	var img []struct {
		Config struct {
			User         string
			Entrypoint   []string
			Cmd          []string
			ExposedPorts map[string]struct{}
			Healthcheck  *struct{ Test []string }
		}
		// podman reports the Docker-format health check here.
		Healthcheck *struct{ Test []string }
	}
	if err := json.Unmarshal(run("image", "inspect", tag), &img); err != nil || len(img) != 1 {
		t.Fatalf("podman image inspect: %v", err)
	}
	c := img[0].Config
	if c.Healthcheck == nil {
		c.Healthcheck = img[0].Healthcheck
	}
	if c.User != "65532:65532" || !slices.Equal(c.Entrypoint, []string{"/herald"}) || !slices.Equal(c.Cmd, []string{"serve"}) {
		t.Errorf("image config: user %q entrypoint %q cmd %q", c.User, c.Entrypoint, c.Cmd)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok {
		t.Errorf("image exposes %v, want 8080/tcp", c.ExposedPorts)
	}
	if c.Healthcheck == nil || len(c.Healthcheck.Test) < 3 || c.Healthcheck.Test[0] != "CMD" ||
		c.Healthcheck.Test[1] != "/herald" || c.Healthcheck.Test[2] != "healthcheck" {
		t.Errorf("image healthcheck %+v, want CMD /herald healthcheck", c.Healthcheck)
	}

	// The image holds the binary built from the context, byte for byte.
	// (Running the container needs privileges this test does not assume;
	// copying out of a created, never started container does not.)
	id := strings.TrimSpace(string(run("create", tag)))
	t.Cleanup(func() { exec.Command(podman, "rm", "-f", id).Run() })
	run("cp", id+":/herald", filepath.Join(imgDir, "from-image"))
	want, got := fileSum(t, bin), fileSum(t, filepath.Join(imgDir, "from-image"))
	if want != got {
		t.Errorf("/herald in the image: sha256 %x, want %x (the binary built from the context)", got, want)
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}
