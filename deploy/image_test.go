//go:build image

// The image test needs podman and runs apart from `go test ./...`
// (`make image-test`, which .ci/run runs after installing podman), so that
// the suite needs no container tool on a developer's machine.

package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestImageBuild builds the image's final stage with podman, from the
// Dockerfile's own instructions, around the binary built from the build
// context. Only the base differs: no registry is reachable here, so the
// distroless base becomes scratch, and the Go build stage (golang image)
// is the host's go build of the same context with the same flags.
func TestImageBuild(t *testing.T) {
	podman, err := exec.LookPath("podman")
	if err != nil {
		t.Fatal("podman not installed (apt-get install podman); .ci/run installs it")
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
