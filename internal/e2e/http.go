package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/heraldpush/herald/push"
)

func TestHTTPAuth(t *testing.T) {
	cfg := e2eConfig()
	cfg.APIKey = "s3cret"
	cfg.APIKeys = []string{"other-key"}
	n := startTestNode(t, cfg)
	body := `{"channel":"news","data":1}`

	refused := []struct {
		name   string
		header http.Header
	}{
		{"no key", http.Header{}},
		{"wrong bearer", http.Header{"Authorization": {"Bearer nope"}}},
		{"wrong X-API-Key", http.Header{"X-Api-Key": {"nope"}}},
		{"key as a prefix", http.Header{"Authorization": {"Bearer s3cre"}}},
		{"key plus suffix", http.Header{"X-Api-Key": {"s3cretX"}}},
		{"basic scheme", http.Header{"Authorization": {"Basic s3cret"}}},
		{"bare key", http.Header{"Authorization": {"s3cret"}}},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			n := n.in(t)
			for _, path := range []string{"/api/publish", "/api/batch"} {
				expectAPIError(t, n.request("POST", path, body, tc.header), http.StatusUnauthorized, "unauthorized")
			}
		})
	}

	accepted := []struct {
		name   string
		header http.Header
	}{
		{"bearer", http.Header{"Authorization": {"Bearer s3cret"}}},
		{"bearer, any case", http.Header{"Authorization": {"bearer s3cret"}}},
		{"X-API-Key", http.Header{"X-Api-Key": {"s3cret"}}},
		{"second key of api_keys", http.Header{"Authorization": {"Bearer other-key"}}},
	}
	for _, tc := range accepted {
		t.Run(tc.name, func(t *testing.T) {
			n := n.in(t)
			if r := n.request("POST", "/api/publish", body, tc.header); r.Status != http.StatusOK {
				t.Fatalf("HTTP %d: %s", r.Status, r.Body)
			}
		})
	}

	// Health checks need no key.
	for _, path := range []string{"/healthz", "/readyz"} {
		if r := n.request("GET", path, nil, http.Header{}); r.Status != http.StatusOK {
			t.Errorf("GET %s without a key: HTTP %d: %s", path, r.Status, r.Body)
		}
	}
}

// TestHTTPNoKeyLoopbackOnly: without an api_key the publisher API answers
// loopback clients only, so a fresh install is closed to the network.
func TestHTTPNoKeyLoopbackOnly(t *testing.T) {
	ip := nonLoopbackIP(t)
	cfg := e2eConfig()
	cfg.Listen = net.JoinHostPort(ip.String(), "0")
	n := startTestNode(t, cfg)
	// n.base is the non-loopback address: this client is not loopback.
	expectAPIError(t, n.request("POST", "/api/publish", `{"channel":"news","data":1}`, nil), http.StatusUnauthorized, "unauthorized")
	if r := n.request("GET", "/healthz", nil, nil); r.Status != http.StatusOK {
		t.Errorf("GET /healthz: HTTP %d", r.Status)
	}
}

// nonLoopbackIP returns an IPv4 address of this host that is not loopback,
// or skips the test.
func nonLoopbackIP(t *testing.T) net.IP {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skipf("no interface addresses: %v", err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return ipn.IP
		}
	}
	t.Skip("this host has no non-loopback IPv4 address")
	return nil
}

func TestHTTPErrors(t *testing.T) {
	cfg := e2eConfig()
	cfg.MaxRequestBytes = 64 << 10
	n := startTestNode(t, cfg)
	// A subscriber checks that refused requests publish nothing at all.
	c := n.dial(query("channel", "news", "channel", "chat:room"))
	c.welcome()
	c.expect("subscribed")
	c.expect("subscribed")

	cases := []struct {
		name, path string
		body       string
		status     int
		code       string
	}{
		{"malformed JSON", "/api/publish", `{"channel":"news",`, 400, push.CodeBadRequest},
		{"not an object", "/api/publish", `["news", 1]`, 400, push.CodeBadRequest},
		{"two values", "/api/publish", `{"channel":"news","data":1} {}`, 400, push.CodeBadRequest},
		{"empty body", "/api/publish", ``, 400, push.CodeBadRequest},
		{"no channel", "/api/publish", `{"data":1}`, 400, push.CodeBadRequest},
		{"no data", "/api/publish", `{"channel":"news"}`, 400, push.CodeBadRequest},
		{"channel and channels", "/api/publish", `{"channel":"news","channels":["chat:room"],"data":1}`, 400, push.CodeBadRequest},
		{"bad channel", "/api/publish", `{"channel":"bad channel","data":1}`, 400, push.CodeInvalidChannel},
		{"bad channel among channels", "/api/publish", `{"channels":["news","a/b"],"data":1}`, 400, push.CodeInvalidChannel},
		{"channel too long", "/api/publish", fmt.Sprintf(`{"channel":%q,"data":1}`, strings.Repeat("n", 256)), 400, push.CodeInvalidChannel},
		{"unknown namespace", "/api/publish", `{"channel":"nope:x","data":1}`, 400, push.CodeUnknownNS},
		{"unknown namespace among channels", "/api/publish", `{"channels":["news","nope:x"],"data":1}`, 400, push.CodeUnknownNS},
		{"data over the namespace cap", "/api/publish", fmt.Sprintf(`{"channel":"chat:room","data":%q}`, strings.Repeat("x", 300)), 413, push.CodeTooLarge},
		{"body over max_request_bytes", "/api/publish", fmt.Sprintf(`{"channel":"news","data":%q}`, strings.Repeat("x", 64<<10)), 413, push.CodeTooLarge},
		{"batch malformed", "/api/batch", `{"messages":[`, 400, push.CodeBadRequest},
		{"batch empty", "/api/batch", `{"messages":[]}`, 400, push.CodeBadRequest},
		{"batch with a bad channel", "/api/batch", `{"messages":[{"channel":"news","data":1},{"channel":"bad channel","data":2}]}`, 400, push.CodeInvalidChannel},
		{"batch with an unknown namespace", "/api/batch", `{"messages":[{"channel":"news","data":1},{"channel":"nope:x","data":2}]}`, 400, push.CodeUnknownNS},
		{"batch with data too large", "/api/batch", fmt.Sprintf(`{"messages":[{"channel":"news","data":1},{"channel":"chat:room","data":%q}]}`, strings.Repeat("x", 300)), 413, push.CodeTooLarge},
		{"batch over 1000 messages", "/api/batch", `{"messages":[` + strings.Repeat(`{"channel":"news","data":1},`, 1000) + `{"channel":"news","data":1}]}`, 413, push.CodeTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := n.in(t)
			expectAPIError(t, n.request("POST", tc.path, tc.body, nil), tc.status, tc.code)
		})
	}
	t.Run("batch error names the message", func(t *testing.T) {
		n := n.in(t)
		r := n.request("POST", "/api/batch", `{"messages":[{"channel":"news","data":1},{"channel":"bad channel","data":2}]}`, nil)
		if e := expectAPIError(t, r, 400, push.CodeInvalidChannel); !strings.Contains(e.Error.Message, "messages[1]") {
			t.Errorf("message %q does not say which message was bad", e.Error.Message)
		}
	})

	// Nothing above was published: the first message the subscriber gets
	// is the one published now, at offset 1 of each channel.
	for _, ch := range []string{"news", "chat:room"} {
		p := n.publish(ch, "first")
		if p.Offset != 1 {
			t.Errorf("%s: first accepted publish got offset %d, want 1: a refused request published something", ch, p.Offset)
		}
		m := c.expectMessage(ch, "first")
		if m.Offset != 1 {
			t.Errorf("%s: first message at offset %d, want 1", ch, m.Offset)
		}
	}
}

func TestHealth(t *testing.T) {
	n := startTestNode(t, e2eConfig())
	for _, tc := range []struct{ path, status string }{{"/healthz", "ok"}, {"/readyz", "ready"}} {
		r := n.request("GET", tc.path, nil, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("GET %s: HTTP %d: %s", tc.path, r.Status, r.Body)
		}
		var body map[string]string
		decodeJSON(t, r.Body, &body)
		if body["status"] != tc.status || body["node"] != "test-node" {
			t.Errorf("GET %s: %s, want status %q and node test-node", tc.path, r.Body, tc.status)
		}
	}
	// A draining node is alive but not ready, and says when to retry.
	n.api.Drain()
	r := n.request("GET", "/readyz", nil, nil)
	expectAPIError(t, r, http.StatusServiceUnavailable, "draining")
	if r.Header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After")
	}
	if r := n.request("GET", "/healthz", nil, nil); r.Status != http.StatusOK {
		t.Errorf("GET /healthz while draining: HTTP %d", r.Status)
	}
}

func TestEcho(t *testing.T) {
	n := startTestNode(t, e2eConfig())
	c := n.dialWith(dialOptions{Path: "/echo"})
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	frames := []struct {
		typ  websocket.MessageType
		data []byte
	}{
		{websocket.MessageText, []byte("hello, herald")},
		{websocket.MessageBinary, []byte{0, 1, 2, 0xfe, 0xff}},
		{websocket.MessageText, []byte(strings.Repeat("é", 10<<10))}, // 20 KiB, several reads
		{websocket.MessageBinary, bytes.Repeat([]byte{0xab}, 32<<10)},
		{websocket.MessageText, []byte("")},
	}
	for i, f := range frames {
		if err := c.conn.Write(ctx, f.typ, f.data); err != nil {
			t.Fatalf("frame %d: write: %v", i, err)
		}
		typ, got, err := c.conn.Read(ctx)
		if err != nil {
			t.Fatalf("frame %d: read: %v", i, err)
		}
		if typ != f.typ || !bytes.Equal(got, f.data) {
			t.Errorf("frame %d: echoed %v of %d bytes, sent %v of %d bytes", i, typ, len(got), f.typ, len(f.data))
		}
	}
	if err := c.conn.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("close handshake: %v", err)
	}
}

func TestWebPage(t *testing.T) {
	n := startTestNode(t, e2eConfig())
	r := n.request("GET", "/", nil, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET /: HTTP %d", r.Status)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("GET /: Content-Type %q, want text/html", ct)
	}
	page := strings.ToLower(string(r.Body))
	if !strings.HasPrefix(page, "<!doctype html>") || !strings.Contains(page, "<title>herald") {
		t.Errorf("GET / is not Herald's HTML page: %.200s", r.Body)
	}
}

func TestOriginCheck(t *testing.T) {
	cfg := e2eConfig()
	cfg.AllowedOrigins = []string{"https://app.example.com"}
	n := startTestNode(t, cfg)
	allowed := []string{"", "https://app.example.com", "https://APP.example.com/", "http://" + n.addr}
	for _, origin := range allowed {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		c := n.dialWith(dialOptions{Header: h})
		c.welcome()
	}
	h := http.Header{"Origin": {"https://evil.example.com"}}
	_, resp, err := n.tryDial(dialOptions{Header: h})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial from a foreign origin: err %v, HTTP %d; want 403", err, status)
	}
}

// TestReservedNamespaceHint: publishing to herald:* says the namespace is
// reserved, not "add it to the config" (the config refuses that name).
func TestReservedNamespaceHint(t *testing.T) {
	n := startTestNode(t, e2eConfig())
	body := expectAPIError(t, n.request("POST", "/api/publish", `{"channel":"herald:mine","data":1}`, nil), 400, push.CodeUnknownNS)
	if msg := body.Error.Message; !strings.Contains(msg, "reserved for the server's own channels (herald:stats)") || strings.Contains(msg, "add it to the config") {
		t.Fatalf("message %q, want it to say the namespace is reserved, without the config hint", msg)
	}
	cfg := e2eConfig()
	cfg.Namespaces["herald"] = &push.Namespace{}
	if _, err := constructor()(context.Background(), cfg, testLogger(t)); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Fatalf("a node with a herald namespace: %v, want it refused as reserved", err)
	}
}
