package healthcheck

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestProbeHost(t *testing.T) {
	for listen, want := range map[string]string{
		":8080": "127.0.0.1:8080", "0.0.0.0:9000": "127.0.0.1:9000", "[::]:8080": "[::1]:8080",
		"10.1.2.3:80": "10.1.2.3:80", "localhost:8081": "localhost:8081",
	} {
		if got, err := ProbeHost(listen); err != nil || got != want {
			t.Errorf("ProbeHost(%q) = %q, %v; want %q", listen, got, err, want)
		}
	}
	if _, err := ProbeHost("8080"); err == nil {
		t.Error("ProbeHost(\"8080\"): no error")
	}
}

func TestURL(t *testing.T) {
	for _, c := range []struct{ base, listen, path, want string }{
		{"", ":8080", "/readyz", "http://127.0.0.1:8080/readyz"},
		{"10.0.0.5:8080/", ":1", "/healthz", "http://10.0.0.5:8080/healthz"},
		{"https://h.example", "", "/readyz", "https://h.example/readyz"},
	} {
		if got, err := URL(c.base, c.listen, c.path); err != nil || got != c.want {
			t.Errorf("URL(%q, %q, %q) = %q, %v; want %q", c.base, c.listen, c.path, got, err, c.want)
		}
	}
	if _, err := URL("", "nonsense", "/readyz"); err == nil {
		t.Error("URL with --listen nonsense: no error")
	}
}

func TestReason(t *testing.T) {
	for body, want := range map[string]string{
		`{"error":{"code":"draining","message":"node is shutting down"}}`: "draining: node is shutting down",
		"Bad Gateway\n": "Bad Gateway",
		"":              "empty response",
	} {
		if got := Reason([]byte(body)); got != want {
			t.Errorf("Reason(%q) = %q, want %q", body, got, want)
		}
	}
}

// TestProbeAnswers probes a real HTTP server answering 200, 503 and a
// plain body, and a closed port. (cmd/herald's TestHealthcheck probes a
// real Herald node through its life.)
func TestProbeAnswers(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`{"status":"ready","node":"n1"}`))
	})
	mux.HandleFunc("/drain", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":{"code":"draining","message":"node is shutting down"}}`))
	})
	mux.HandleFunc("/plain", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("OK\n")) })
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	defer srv.Close()
	base := "http://" + l.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	if r, err := Probe(ctx, base+"/readyz"); err != nil || r != (Result{"ready", "n1"}) {
		t.Errorf("Probe /readyz = %+v, %v", r, err)
	}
	if r, err := Probe(ctx, base+"/plain"); err != nil || r.Status != "OK" {
		t.Errorf("Probe /plain = %+v, %v", r, err)
	}
	if _, err := Probe(ctx, base+"/drain"); err == nil || !strings.Contains(err.Error(), "503 Service Unavailable: draining: node is shutting down") {
		t.Errorf("Probe /drain: %v, want the 503 and its reason", err)
	}
	srv.Close()
	if _, err := Probe(ctx, base+"/readyz"); err == nil || !strings.Contains(err.Error(), "not reachable") {
		t.Errorf("Probe of a closed server: %v, want not reachable", err)
	}
}
