package e2e

import (
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestBrowserSharedConnection: three Chromium tabs with new Herald({shared:
// true}) share one WebSocket through herald-worker.js, counted by the
// server; every tab receives, resumes loss-free after a cut, learns of a
// restart's new epoch, and closing two tabs (one without a word, found by
// its Web Lock) drops only their channels (clients/web/e2e/shared.mjs).
func TestBrowserSharedConnection(t *testing.T) {
	requireE2E(t, true)
	n := startRestartableNode(t, demoConfig())
	p := newCutProxy(t, n.addr())
	runScript(t, "shared.mjs", map[string]func(){
		"cut":     func() { p.hold(true); p.cut() },
		"open":    func() { p.hold(false) },
		"restart": n.restart,
	}, "http://"+p.addr(), n.base())
}

// heraldJSBudget is the most herald.js's main module may weigh minified
// and gzipped (issue 16: under 5 KB); the shared worker is a second file.
const heraldJSBudget = 5120

// TestHeraldJSSize minifies herald.js with esbuild, gzips it and fails
// past heraldJSBudget (clients/web/e2e/size.mjs).
func TestHeraldJSSize(t *testing.T) {
	requireE2E(t, false)
	out := runScript(t, "size.mjs", nil, strconv.Itoa(heraldJSBudget))
	m := regexp.MustCompile(`(?m)^herald\.js: \d+ raw, \d+ min, (\d+) min\+gzip$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("size.mjs printed no size for herald.js:\n%s", out)
	}
	t.Logf("herald.js: %s bytes minified and gzipped, budget %d", m[1], heraldJSBudget)
}

// TestBrowserSharedTokens: with shared: true, the one connection uses a
// tab's token; its expiry (4003) asks that tab's token function again
// while a tab without a token just reconnects; a kick (4004) ends every
// tab (clients/web/e2e/shared-token.mjs).
func TestBrowserSharedTokens(t *testing.T) {
	requireE2E(t, true)
	cfg := demoConfig()
	cfg.APIKey = "shared-key"
	cfg.TokenHMACSecret = secret
	// Expiry is checked at each heartbeat. Not much shorter: under load a
	// watchdog drop (3 silent heartbeats) could let the connection slip
	// past the kick by reconnecting at that moment.
	cfg.Heartbeat = time.Second
	cfg.TokenGrace = 300 * time.Millisecond
	n := startTestNode(t, cfg)
	runScript(t, "shared-token.mjs", nil, n.base, "shared-key", secret)
}
