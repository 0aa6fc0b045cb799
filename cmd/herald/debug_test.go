package main

import (
	"io"
	"net/http"
	"runtime/debug"
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

// Herald runs with GOGC=50 unless the operator set GOGC.
func TestGCPercent(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	setGCPercent(func(string) string { return "" })
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Errorf("GOGC unset: GC percent %d, want %d", got, defaultGCPercent)
	}
	setGCPercent(func(k string) string { return map[string]string{"GOGC": "200"}[k] })
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC set: GC percent changed to %d", got)
	}
}
