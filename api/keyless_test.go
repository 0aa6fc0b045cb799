package api

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/push"
)

// startKeyless serves the API with no api_key on a real loopback socket.
func startKeyless(t *testing.T) (*httptest.Server, *push.Node) {
	t.Helper()
	hub := push.NewNode(push.Options{Node: "t"})
	br := broker.NewMemory(hub)
	hub.Start(context.Background(), br)
	srv := httptest.NewServer(New(Options{Node: hub}).Handler())
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hub.Close(ctx, push.CloseGoingAway, "test over")
		_ = br.Close(ctx)
	})
	return srv, hub
}

// Keyless mode takes what curl and backends send and refuses what a web
// page can: foreign Origin or Sec-Fetch-Site, a Host that is not loopback
// (DNS rebinding), bodies that are not JSON (forms, text/plain).
func TestKeylessRefusesWhatPagesCanSend(t *testing.T) {
	srv, _ := startKeyless(t)
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	const body = `{"channel":"news","data":1}`
	cases := []struct {
		name, method, path, ctype string
		header                    map[string]string
		status                    int
	}{
		{"curl with JSON", "POST", "/api/publish", "application/json", nil, 200},
		{"JSON with a charset", "POST", "/api/publish", "application/json; charset=utf-8", nil, 200},
		{"same-origin page (the admin page)", "POST", "/api/publish", "application/json",
			map[string]string{"Origin": "http://127.0.0.1:" + port, "Sec-Fetch-Site": "same-origin"}, 200},
		{"GET from curl", "GET", "/api/channels", "", nil, 200},
		{"localhost host", "GET", "/api/channels", "", map[string]string{"Host": "localhost:" + port}, 200},
		{"curl -d (form-encoded)", "POST", "/api/publish", "application/x-www-form-urlencoded", nil, 415},
		{"no content type", "POST", "/api/publish", "", nil, 415},
		{"text/plain", "POST", "/api/publish", "text/plain", nil, 415},
		{"multipart form", "POST", "/api/disconnect", "multipart/form-data; boundary=x", nil, 415},
		{"cross-site fetch", "POST", "/api/publish", "text/plain",
			map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, 403},
		{"cross-site disconnect", "POST", "/api/disconnect", "text/plain",
			map[string]string{"Origin": "http://evil.example"}, 403},
		{"same-site page on another port", "POST", "/api/publish", "application/json",
			map[string]string{"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"}, 403},
		{"sandboxed page (Origin null)", "POST", "/api/publish", "application/json", map[string]string{"Origin": "null"}, 403},
		{"cross-site GET", "GET", "/api/stats", "", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"DNS rebinding", "POST", "/api/publish", "application/json",
			map[string]string{"Host": "evil.example:" + port, "Origin": "http://evil.example:" + port, "Sec-Fetch-Site": "same-origin"}, 403},
	}
	for _, c := range cases {
		var rd io.Reader
		if c.method == "POST" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(c.method, srv.URL+c.path, rd)
		if err != nil {
			t.Fatal(err)
		}
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		for k, v := range c.header {
			if k == "Host" {
				req.Host = v
			} else {
				req.Header.Set(k, v)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s: HTTP %d %s, want %d", c.name, resp.StatusCode, b, c.status)
		}
	}
}
