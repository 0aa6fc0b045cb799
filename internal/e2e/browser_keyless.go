package e2e

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestBrowserKeylessClosedToPages (issue 12 item 5): a node without
// api_key takes publishes from its own machine, and none from a web page
// that machine's browser opens: real Chromium on a foreign origin sends
// every request a page can send without CORS, and a page that rebinds its
// DNS name to 127.0.0.1 tries same-origin; the subscriber sees only the
// node's own page's publish and is not disconnected.
func TestBrowserKeylessClosedToPages(t *testing.T) {
	requireE2E(t, true)
	cfg := testConfig()
	cfg.TokenHMACSecret = secret
	n := startTestNode(t, cfg)
	if len(cfg.Keys()) != 0 {
		t.Fatal("the test needs a node without api_key")
	}
	sub := n.dial(query("channel", "news", "token", userToken(t, "alice", "")))
	sub.welcome()
	sub.expect("subscribed")

	foreign := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte("<!doctype html><title>not Herald</title><p>a page on another site</p>"))
	}))
	defer foreign.Close()
	foreignBase := strings.Replace(foreign.URL, "127.0.0.1", "evil.example", 1)
	port := n.base[strings.LastIndex(n.base, ":")+1:]

	runScript(t, "keyless.mjs", map[string]func(){
		"check": func() {
			// Publishes are delivered in order: had any attack been
			// published, it would come before the control message.
			sub.expectMessage("news", "control")
			// Nor was alice disconnected: she still answers.
			sub.subscribe("other")
		},
	}, n.base, foreignBase, port)
}
