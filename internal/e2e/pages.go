package e2e

import (
	"bytes"
	"strings"
	"testing"

	heraldjs "github.com/heraldpush/herald/clients/js"
)

func TestHeraldJSIsServed(t *testing.T) {
	n := startTestNode(t, testConfig())
	r := n.request("GET", "/herald.js", nil, nil)
	if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/javascript") {
		t.Fatalf("GET /herald.js: HTTP %d, Content-Type %q", r.Status, r.Header.Get("Content-Type"))
	}
	if !bytes.Equal(r.Body, heraldjs.Source) || !bytes.Contains(r.Body, []byte("export class Herald")) {
		t.Fatalf("GET /herald.js: not the embedded client (%d bytes)", len(r.Body))
	}
}

func TestPagesAreServed(t *testing.T) {
	n := startTestNode(t, testConfig())
	for path, want := range map[string]string{
		"/":             `href="/stocks.html"`,
		"/stocks.html":  `from "/herald.js"`,
		"/sports.html":  `from "/herald.js"`,
		"/danmaku.html": `from "/herald.js"`,
		"/chat.html":    `from "/herald.js"`,
		"/test.html":    "new WebSocket(",
		"/demo.css":     "--bg",
		"/admin":        `"herald:stats"`,
	} {
		r := n.request("GET", path, nil, nil)
		if r.Status != 200 || !bytes.Contains(r.Body, []byte(want)) {
			t.Errorf("GET %s: HTTP %d, want 200 with %q", path, r.Status, want)
		}
	}
}
