package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// debug_listen serves Go's profiles on their own address, and only there.
func TestDebugListen(t *testing.T) {
	cfg := testConfig()
	cfg.DebugListen = "127.0.0.1:0"
	n := startTestNode(t, cfg)
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	status, body := get("http://" + n.debugAddr.String() + "/debug/pprof/heap?debug=1")
	if status != http.StatusOK || !strings.Contains(body, "heap profile") {
		t.Fatalf("heap profile: HTTP %d %.200s", status, body)
	}
	if status, _ := get(n.base + "/debug/pprof/heap?debug=1"); status != http.StatusNotFound {
		t.Fatalf("public listener serves profiles: HTTP %d, want 404", status)
	}
}
