package e2e

import (
	"bytes"
	"strings"
	"testing"

	heraldjs "github.com/heraldpush/herald/clients/js"
)

// TestHeraldJSIsServed: the client and its shared worker, which imports
// the client from next to itself.
func TestHeraldJSIsServed(t *testing.T) {
	n := startTestNode(t, testConfig())
	for _, f := range []struct {
		path string
		body []byte
		want string
	}{
		{"/herald.js", heraldjs.Source, "export class Herald"},
		{"/herald-worker.js", heraldjs.Worker, `from "./herald.js"`},
	} {
		r := n.request("GET", f.path, nil, nil)
		if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/javascript") {
			t.Fatalf("GET %s: HTTP %d, Content-Type %q", f.path, r.Status, r.Header.Get("Content-Type"))
		}
		if !bytes.Equal(r.Body, f.body) || !bytes.Contains(r.Body, []byte(f.want)) {
			t.Fatalf("GET %s: not the embedded file (%d bytes)", f.path, len(r.Body))
		}
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
