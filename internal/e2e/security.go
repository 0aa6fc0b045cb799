package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/heraldpush/herald/internal/server"
	"github.com/heraldpush/herald/push"
)

const secret = "test-secret-test-secret-test-secret!"

func securityConfig() server.Config {
	cfg := testConfig()
	cfg.TokenHMACSecret = secret
	cfg.TokenAudience = "herald"
	no := false
	cfg.Namespaces = map[string]*push.Namespace{
		"priv":    {Private: true},
		"members": {Anonymous: &no},
		"danmaku": {ClientPublish: true, PublishRate: push.Rate{N: 5, Per: time.Second}},
	}
	return cfg
}

func token(t testing.TB, m jwt.SigningMethod, key any, mutate func(*push.Claims)) string {
	t.Helper()
	now := time.Now()
	c := push.Claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject: "alice", Audience: jwt.ClaimStrings{"herald"},
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	}, Channels: []string{"priv:alice.*"}}
	if mutate != nil {
		mutate(&c)
	}
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func hs(t testing.TB, mutate func(*push.Claims)) string {
	return token(t, jwt.SigningMethodHS256, []byte(secret), mutate)
}

func TestTokensOnConnect(t *testing.T) {
	n := startTestNode(t, securityConfig())
	c := n.dial(query("token", hs(t, nil)))
	if w := c.welcome(); !strings.Contains(string(w.Raw), `"user":"alice"`) {
		t.Fatalf("welcome %s, want user alice", w)
	}
	c.subscribe("priv:alice.inbox")
	c.subscribe("members:news")
	c.send(map[string]any{"type": "subscribe", "channel": "priv:bob.inbox"})
	c.expectError("forbidden")

	bad := map[string]string{
		"alg none":      token(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, nil),
		"expired":       hs(t, func(c *push.Claims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour)) }),
		"not yet valid": hs(t, func(c *push.Claims) { c.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour)) }),
		"wrong aud":     hs(t, func(c *push.Claims) { c.Audience = jwt.ClaimStrings{"someone-else"} }),
		"wrong secret":  token(t, jwt.SigningMethodHS256, []byte(strings.Repeat("z", 40)), nil),
		"garbage":       "not.a.token",
	}
	for name, tok := range bad {
		c := n.dial(query("token", tok))
		if reason, _ := c.expectClose(websocket.StatusPolicyViolation); !strings.Contains(reason, "token") {
			t.Errorf("%s: close reason %q does not say why", name, reason)
		}
	}
	waitFor(t, readTimeout, "token rejections counted", func() bool { return n.core.Rejections()["token"] == uint64(len(bad)) })

	anon := n.dial("")
	anon.welcome()
	anon.send(map[string]any{"type": "subscribe", "channel": "priv:alice.inbox"})
	anon.expectError("forbidden")
	anon.send(map[string]any{"type": "subscribe", "channel": "members:news"})
	anon.expectError("forbidden")
	anon.subscribe("news") // the default namespace stays open
}

// TestRSAKeyRefusesHS256 runs a node with only an RSA public key: an
// HS256 token signed with that public key as the secret is refused.
func TestRSAKeyRefusesHS256(t *testing.T) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := securityConfig()
	cfg.TokenHMACSecret, cfg.TokenPublicKey = "", path
	n := startTestNode(t, cfg)
	ok := n.dial(query("token", token(t, jwt.SigningMethodRS256, priv, nil)))
	ok.welcome()
	ok.subscribe("priv:alice.x")
	forged := n.dial(query("token", token(t, jwt.SigningMethodHS256, pub, nil)))
	forged.expectClose(websocket.StatusPolicyViolation)
}

func TestAuthFrameAndExpiry(t *testing.T) {
	cfg := securityConfig()
	cfg.Heartbeat = 50 * time.Millisecond
	cfg.HeartbeatTimeout = 10 * time.Second
	cfg.TokenGrace = 300 * time.Millisecond
	n := startTestNode(t, cfg)

	// Anonymous first, then an auth frame grants the private channel.
	c := n.dial("")
	c.welcome()
	c.send(map[string]any{"type": "auth", "id": 1, "token": hs(t, nil)})
	if a := c.expect("ack"); a.ID.String() != "1" {
		t.Fatalf("auth ack %s", a)
	}
	c.subscribe("priv:alice.feed")
	c.send(map[string]any{"type": "auth", "id": 2, "token": hs(t, func(c *push.Claims) { c.Subject = "mallory" })})
	c.expectError("forbidden")
	c.send(map[string]any{"type": "auth", "id": 3, "token": "junk"})
	c.expectError("unauthorized")

	// A token that expires: told once, then closed with 4003 after grace.
	// exp has one-second precision, so the token lives 1-2 s.
	short := hs(t, func(c *push.Claims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(time.Second)) })
	e := n.dial(query("token", short))
	e.welcome()
	for {
		f := e.read()
		if f.Type == "error" {
			if f.Code != "token_expired" {
				t.Fatalf("got %s, want a token_expired warning", f)
			}
			break
		}
		if f.Type != "ping" {
			t.Fatalf("unexpected %s", f)
		}
	}
	e.timeout = 5 * time.Second
	e.expectClose(4003)

	// Refreshing in time keeps the connection.
	r := n.dial(query("token", hs(t, func(c *push.Claims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(time.Second)) })))
	r.welcome()
	r.send(map[string]any{"type": "auth", "id": 9, "token": hs(t, nil)})
	for f := r.read(); f.Type != "ack"; f = r.read() {
	}
	deadline := time.Now().Add(2500 * time.Millisecond) // past the first token's exp + grace
	for time.Now().Before(deadline) {
		if f := r.read(); f.Type != "ping" {
			t.Fatalf("refreshed connection got %s", f)
		}
	}
}

func TestForeignOrigin(t *testing.T) {
	cfg := securityConfig()
	cfg.AllowedOrigins = []string{"https://app.example.com"}
	n := startTestNode(t, cfg)
	_, resp, err := n.tryDial(dialOptions{Header: http.Header{"Origin": {"https://evil.example"}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: err %v, resp %v, want HTTP 403", err, resp)
	}
	for _, o := range []string{"https://app.example.com", "http://" + n.addr} {
		c := n.dialWith(dialOptions{Header: http.Header{"Origin": {o}}})
		c.welcome()
	}
	if got := n.core.Rejections()["origin"]; got != 1 {
		t.Fatalf("origin rejections %d, want 1", got)
	}
}

// TestPublishFlood floods client publishes past the namespace's rate: the
// flooder gets rate_limited errors (and is closed once it keeps going),
// while another client's publishes and deliveries go on.
func TestPublishFlood(t *testing.T) {
	cfg := securityConfig()
	cfg.Heartbeat = time.Hour // the flood counter resets per heartbeat
	n := startTestNode(t, cfg)
	watcher := n.dial(query("channel", "danmaku:live"))
	watcher.welcome()
	watcher.expect("subscribed")
	flooder := n.dial("")
	flooder.welcome()
	acks, limited := 0, 0
	for i := 0; i < 50; i++ {
		flooder.send(map[string]any{"type": "publish", "id": i + 1, "channel": "danmaku:live", "data": "spam"})
	}
	for i := 0; i < 50; i++ {
		switch f := flooder.read(); {
		case f.Type == "ack":
			acks++
		case f.Type == "error" && f.Code == "rate_limited":
			limited++
		case f.Type == "message":
			i-- // its own published messages are not replies
		default:
			t.Fatalf("flooder got %s", f)
		}
	}
	if acks < 5 || acks > 7 || limited != 50-acks {
		t.Fatalf("flood: %d acks, %d rate_limited; want the 5/s burst accepted and the rest refused", acks, limited)
	}
	other := n.dial("")
	other.welcome()
	other.send(map[string]any{"type": "publish", "id": 1, "channel": "danmaku:live", "data": "hello"})
	other.expect("ack")
	for got := 0; got < acks+1; {
		f := watcher.expect("message")
		got++
		if got == acks+1 && string(f.Data) != `"hello"` {
			t.Fatalf("watcher's last message %s, want the other client's", f)
		}
	}
	// Keep flooding: past the error budget the flooder is closed (4005).
	for i := 0; i < 120; i++ {
		if err := flooder.conn.Write(t.Context(), websocket.MessageText, []byte(`{"type":"publish","channel":"danmaku:live","data":1}`)); err != nil {
			break
		}
	}
	flooder.expectClose(4005)
}

func TestHugeFrameClosed(t *testing.T) {
	n := startTestNode(t, securityConfig())
	c := n.dial("")
	c.welcome()
	big := `{"type":"publish","channel":"danmaku:x","data":"` + strings.Repeat("a", 2<<20) + `"}`
	_ = c.conn.Write(t.Context(), websocket.MessageText, []byte(big))
	c.expectClose(websocket.StatusMessageTooBig)
	waitFor(t, readTimeout, "the frame_too_big rejection counted", func() bool { return n.core.Rejections()["frame_too_big"] == 1 })
}

// TestConnectionsPerIP opens 5,000 connections from one address against a
// limit of 100: the first 100 are served, every other one is refused with
// 429, and closing one makes room again.
func TestConnectionsPerIP(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 5,000 connections; runs without -short (as CI does)")
	}
	cfg := securityConfig()
	cfg.MaxConnsPerIP = 100
	n := startTestNode(t, cfg)
	var open []*wsClient
	refused := 0
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := 0; i < 5000; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, resp, err := n.tryDial(dialOptions{})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				open = append(open, c)
			case resp != nil && resp.StatusCode == http.StatusTooManyRequests:
				refused++
			default:
				t.Errorf("dial: %v", err)
			}
		}()
	}
	wg.Wait()
	if len(open) != 100 || refused != 4900 {
		t.Fatalf("%d open, %d refused; want 100 and 4900", len(open), refused)
	}
	if got := n.core.Rejections()["ip_limit"]; got != 4900 {
		t.Fatalf("ip_limit count %d, want 4900", got)
	}
	open[0].conn.Close(websocket.StatusNormalClosure, "")
	waitFor(t, readTimeout, "a slot to free up", func() bool {
		c, _, err := n.tryDial(dialOptions{})
		if err == nil {
			c.conn.CloseNow()
		}
		return err == nil
	})
}

// TestSlowlorisHandshake opens connections that send half a handshake and
// stall: the server cuts each one off at the handshake timeout.
func TestSlowlorisHandshake(t *testing.T) {
	cfg := securityConfig()
	cfg.HandshakeTimeout = 300 * time.Millisecond
	n := startTestNode(t, cfg)
	const count = 50
	conns := make([]net.Conn, count)
	for i := range conns {
		c, err := net.Dial("tcp", n.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	start := time.Now()
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 512)
		for {
			_, err := c.Read(buf)
			if err == nil {
				continue // an error response, then the close
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection %d still open after %v: the half-open handshake holds resources", i, time.Since(start))
			}
			break
		}
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("half-open handshakes closed after %v, want about the 300ms timeout", took)
	}
}

// TestTokensOnHTTPTransports: /sse and /api/poll take the token as a query
// parameter (EventSource cannot send headers) with the same rules as /ws.
func TestTokensOnHTTPTransports(t *testing.T) {
	n := startTestNode(t, securityConfig())
	tok := hs(t, nil)
	s := n.openSSE(query("channel", "priv:alice.feed", "token", tok), "")
	s.next("subscribed")
	n.publish("priv:alice.feed", 1)
	s.next("message")
	expectAPIError(t, n.request("GET", "/sse?"+query("channel", "priv:alice.feed", "token", "junk"), nil, nil), http.StatusUnauthorized, "unauthorized")

	r := n.request("GET", "/api/poll?"+query("channel", "priv:alice.feed", "token", tok), nil, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("poll with a granting token: %d %s", r.Status, r.Body)
	}
	expectAPIError(t, n.request("GET", "/api/poll?"+query("channel", "priv:alice.feed"), nil, nil), http.StatusForbidden, "forbidden")
	expectAPIError(t, n.request("GET", "/api/poll?"+query("channel", "priv:bob.feed", "token", tok), nil, nil), http.StatusForbidden, "forbidden")
}
