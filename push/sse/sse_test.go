package sse_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/broker"
	"github.com/heraldpush/herald/push"
	"github.com/heraldpush/herald/push/poll"
	"github.com/heraldpush/herald/push/sse"
	"github.com/heraldpush/herald/push/ws"
)

// serve mounts the three transports of one node behind one admission.
func serve(t *testing.T, ao push.AdmissionOptions) (*push.Node, *httptest.Server) {
	t.Helper()
	n := push.NewNode(push.Options{Node: "t"})
	br := broker.NewMemory(n)
	n.Start(context.Background(), br)
	admit := push.NewAdmission(ao)
	mux := http.NewServeMux()
	mux.Handle("/ws", ws.NewServer(n, ws.ServerOptions{Admission: admit, HandshakeTimeout: 5 * time.Second}))
	mux.Handle("/sse", sse.New(n, admit))
	mux.Handle("/api/poll", poll.New(n, admit))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.Close(ctx, push.CloseGoingAway, "test over")
		_ = br.Close(ctx)
	})
	return n, srv
}

func get(t *testing.T, url, origin string, h ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	for i := 0; i+1 < len(h); i += 2 {
		req.Header.Set(h[i], h[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// errorCode reads an error answer's status and code.
func errorCode(t *testing.T, resp *http.Response) (int, string) {
	t.Helper()
	defer resp.Body.Close()
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("HTTP %d, body %q: %v", resp.StatusCode, b, err)
	}
	return resp.StatusCode, e.Error.Code
}

// One admission for every transport: an open event stream holds the
// address's one slot, so a second stream, a WebSocket and a long-poll from
// it are refused with 429; a foreign origin is refused with 403 on each;
// and the slot is free again once the stream ends.
func TestOneAdmissionForEveryTransport(t *testing.T) {
	n, srv := serve(t, push.AdmissionOptions{MaxConnsPerIP: 1})
	stream := get(t, srv.URL+"/sse?channel=news", "")
	if stream.StatusCode != http.StatusOK {
		t.Fatalf("first stream: HTTP %d", stream.StatusCode)
	}
	line, err := bufio.NewReader(stream.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "retry:") {
		t.Fatalf("first stream's first line %q, %v", line, err)
	}
	for _, path := range []string{"/sse?channel=news", "/api/poll?channel=news&timeout=0"} {
		if code, c := errorCode(t, get(t, srv.URL+path, "")); code != http.StatusTooManyRequests || c != push.CodeLimit {
			t.Errorf("%s beside an open stream: HTTP %d %q, want 429 %q", path, code, c, push.CodeLimit)
		}
	}
	up := get(t, srv.URL+"/ws", "", "Connection", "Upgrade", "Upgrade", "websocket",
		"Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	if code, c := errorCode(t, up); code != http.StatusTooManyRequests || c != push.CodeLimit {
		t.Errorf("/ws beside an open stream: HTTP %d %q, want 429", code, c)
	}
	stream.Body.Close()

	// The stream's end frees the slot; its handler notices the client
	// went away on its own time.
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp := get(t, srv.URL+"/api/poll?channel=news&timeout=0", "")
		if resp.StatusCode == http.StatusOK {
			resp.Body.Close()
			break
		}
		if code, c := errorCode(t, resp); code != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("poll after the stream ended: HTTP %d %q", code, c)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with the deadline above
	}
	for _, path := range []string{"/sse?channel=news", "/api/poll?channel=news&timeout=0"} {
		if code, c := errorCode(t, get(t, srv.URL+path, "https://evil.example")); code != http.StatusForbidden || c != push.CodeForbidden {
			t.Errorf("%s from a foreign origin: HTTP %d %q, want 403", path, code, c)
		}
	}
	if got := n.Rejections(); got["origin"] != 2 || got["ip_limit"] < 3 {
		t.Errorf("rejections %v, want origin 2 and ip_limit at least 3", got)
	}
}
