package e2e

// Browser tests: the demo pages and herald.js in real headless Chromium,
// against real in-process nodes. The browser side is Node scripts in
// clients/web/e2e (playwright-core drives Debian's chromium); these tests
// start the nodes, run a script and act on its STEP requests (restart the
// server, cut the network). clients/web/e2e/setup.sh installs what they
// need. Without it they skip, except under CI=true, where they fail: CI
// must never pass by skipping them.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/internal/server"
)

// e2eDir holds the browser test scripts. It is found from this file's
// path, not the working directory: the suite runs from whichever package
// calls Run.
var e2eDir = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "clients", "web", "e2e")
}()

// scriptTimeout bounds one script run, browser start included.
const scriptTimeout = 2 * time.Minute

// requireE2E skips (or, under CI, fails) the test unless node, the
// scripts' node_modules and, when browser is set, chromium are installed.
func requireE2E(t *testing.T, browser bool) {
	t.Helper()
	var missing []string
	if _, err := exec.LookPath("node"); err != nil {
		missing = append(missing, "node")
	}
	for _, m := range []string{"playwright-core", "ws", "esbuild"} {
		if _, err := os.Stat(filepath.Join(e2eDir, "node_modules", m, "package.json")); err != nil {
			missing = append(missing, "clients/web/e2e/node_modules/"+m)
		}
	}
	if browser {
		if _, err := os.Stat(chromiumPath()); err != nil {
			missing = append(missing, chromiumPath())
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "browser tests need " + strings.Join(missing, ", ") + ": run clients/web/e2e/setup.sh"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func chromiumPath() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// runScript runs node e2eDir/script with args, calling steps[name] for
// each "STEP name" line it prints and then telling it to go on. It fails
// the test if the script fails, and returns what the script printed.
func runScript(t *testing.T, script string, steps map[string]func(), args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{filepath.Join(e2eDir, script)}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("node %s: %v", script, err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		name, isStep := strings.CutPrefix(line, "STEP ")
		if !isStep {
			t.Logf("%s: %s", script, line)
			fmt.Fprintln(&out, line)
			continue
		}
		f := steps[name]
		if f == nil {
			_ = cmd.Process.Kill()
			t.Fatalf("%s asked for unknown step %q", script, name)
		}
		t.Logf("%s: step %s", script, name)
		f()
		if _, err := io.WriteString(stdin, "ok\n"); err != nil {
			t.Fatalf("%s: telling it step %s is done: %v", script, name, err)
		}
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s timed out after %v\n%s", script, scriptTimeout, stderr.String())
	case errors.As(err, &exit):
		t.Fatalf("%s failed (%v):\n%s", script, err, stderr.String())
	case err != nil:
		t.Fatalf("%s: %v", script, err)
	}
	t.Logf("%s passed in %v", script, time.Since(start).Round(time.Millisecond))
	return out.String()
}

func TestBrowserDemoPages(t *testing.T) {
	requireE2E(t, true)
	n := startTestNode(t, demoConfig())
	startDemoFeeds(t, n, 50*time.Millisecond)
	runScript(t, "pages.mjs", nil, n.base)
}

func TestBrowserDanmakuBetweenBrowsers(t *testing.T) {
	requireE2E(t, true)
	n := startTestNode(t, demoConfig())
	runScript(t, "danmaku.mjs", nil, n.base)
}

func TestBrowserChat(t *testing.T) {
	requireE2E(t, true)
	n := startTestNode(t, demoConfig())
	runScript(t, "chat.mjs", nil, n.base)
}

// TestBrowserClientReconnects puts a proxy between the browser and a
// memory node: herald.js must resume with since after a cut and after a
// dead path its heartbeat watchdog finds, and surface recovered:false
// after a restart (a memory node's restart is a new epoch).
func TestBrowserClientReconnects(t *testing.T) {
	requireE2E(t, true)
	cfg := demoConfig()
	cfg.Heartbeat = 300 * time.Millisecond
	// The server must not be the one to close the frozen connection:
	// only the client's watchdog is under test there.
	cfg.HeartbeatTimeout = time.Minute
	n := startRestartableNode(t, cfg)
	p := newCutProxy(t, n.addr())
	runScript(t, "reconnect.mjs", map[string]func(){
		"cut":     func() { p.hold(true); p.cut() },
		"open":    func() { p.hold(false) },
		"freeze":  p.freeze,
		"restart": n.restart,
	}, "http://"+p.addr(), n.base())
}

func TestWSPackageClient(t *testing.T) {
	requireE2E(t, false)
	n := startTestNode(t, demoConfig())
	runScript(t, "ws-client.mjs", nil, n.base)
}

// TestHeraldJSInNode runs herald.js in Node with the ws package passed
// in: refused channels and tokens, a kick, and the one clear error where
// there is no WebSocket (clients/web/e2e/node-client.mjs).
func TestHeraldJSInNode(t *testing.T) {
	requireE2E(t, false)
	cfg := demoConfig()
	cfg.APIKey = "node-key"
	cfg.TokenHMACSecret = secret
	n := startTestNode(t, cfg)
	runScript(t, "node-client.mjs", nil, n.base, "node-key", userToken(t, "alice", ""))
}

// TestBrowserPermanentClose: in Chromium, herald.js stops after 1008 and
// 4004 instead of reconnecting (clients/web/e2e/permanent.mjs).
func TestBrowserPermanentClose(t *testing.T) {
	requireE2E(t, true)
	cfg := demoConfig()
	cfg.APIKey = "browser-key"
	cfg.TokenHMACSecret = secret
	n := startTestNode(t, cfg)
	runScript(t, "permanent.mjs", nil, n.base, "browser-key", userToken(t, "alice", ""))
}

// restartableNode is a node that a test can stop and start again on the
// same address, as a process restart would.
type restartableNode struct {
	t   *testing.T
	cfg server.Config
	n   *server.Node
}

func startRestartableNode(t *testing.T, cfg server.Config) *restartableNode {
	t.Helper()
	r := &restartableNode{t: t, cfg: cfg}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *restartableNode) start() {
	r.t.Helper()
	n, err := constructor()(context.Background(), r.cfg, testLogger(r.t))
	if err != nil {
		r.t.Fatalf("startNode: %v", err)
	}
	r.n = n
	r.cfg.Listen = n.Addr() // the next start takes the same port
}

// stop shuts the node down gracefully: clients get 1001.
func (r *restartableNode) stop() {
	if r.n == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if err := r.n.Shutdown(ctx); err != nil {
		r.t.Errorf("shutdown: %v", err)
	}
	if err := <-r.n.Served(); err != nil {
		r.t.Errorf("serve: %v", err)
	}
	r.n = nil
}

func (r *restartableNode) restart() {
	r.stop()
	r.start()
}

func (r *restartableNode) addr() string { return r.cfg.Listen }
func (r *restartableNode) base() string { return "http://" + r.cfg.Listen }
