package ws

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"github.com/heraldpush/herald/push"
)

// push.Session behaviour seen through a real WebSocket: token grace, a
// disconnect's close reason, a flood close on connect.

const testSecret = "0123456789abcdef0123456789abcdef"

func claims(sub string, exp time.Duration, channels ...string) push.Claims {
	now := time.Now()
	return push.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   sub,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(exp)),
		},
		Channels: channels,
	}
}

func mustVerifier(t *testing.T, o push.AuthOptions) *push.Verifier {
	t.Helper()
	v, err := push.NewVerifier(o)
	if err != nil || v == nil {
		t.Fatalf("NewVerifier: %v, %v", v, err)
	}
	return v
}

func sign(t *testing.T, m jwt.SigningMethod, key any, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tokenNode is a test node with an HMAC verifier, a private namespace
// "priv" and a short token grace.
func tokenNode(t *testing.T) *testNode {
	v := mustVerifier(t, push.AuthOptions{HMACSecret: testSecret})
	ns := &push.Namespaces{Named: map[string]*push.Namespace{"priv": {Private: true}}}
	return startTestNode(t, push.Options{Verifier: v, Namespaces: ns, TokenGrace: time.Minute})
}

// readText reads frames until a text frame and decodes it.
func (c *rawWS) readJSON(t *testing.T) map[string]any {
	t.Helper()
	for {
		op, p, err := c.readFrame()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if op == 0x8 {
			t.Fatalf("closed: %q", p)
		}
		if op != 0x1 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(p, &m); err != nil {
			t.Fatalf("frame %q: %v", p, err)
		}
		return m
	}
}

func (c *rawWS) command(t *testing.T, cmd string) map[string]any {
	t.Helper()
	if _, err := c.Write(maskedFrame(0x81, []byte(cmd))); err != nil {
		t.Fatal(err)
	}
	return c.readJSON(t)
}

// During token_grace an expired connection may refresh its token, and
// keeps what it has, but may not use its grants for anything new.
func TestGraceGivesNoNewAccess(t *testing.T) {
	n := tokenNode(t)
	// Expired 2 s ago: within the verifier's 5 s leeway, so it connects,
	// and past its exp, so the session is in its grace period.
	tok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), claims("alice", -2*time.Second, "priv:*"))
	c := n.dialRaw(t, "/ws?token="+tok)
	if f := c.readJSON(t); f["type"] != "welcome" {
		t.Fatalf("first frame %v", f)
	}
	if f := c.command(t, `{"type":"subscribe","id":1,"channel":"priv:a"}`); f["type"] != "error" || f["code"] != push.CodeTokenExpired {
		t.Fatalf("subscribe to a private channel during the grace: %v", f)
	}
	if f := c.command(t, `{"type":"history","id":2,"channel":"priv:a"}`); f["type"] != "error" || f["code"] != push.CodeTokenExpired {
		t.Fatalf("history of a private channel during the grace: %v", f)
	}
	if f := c.command(t, `{"type":"subscribe","id":3,"channel":"news"}`); f["type"] != "subscribed" {
		t.Fatalf("a public channel during the grace: %v", f)
	}
	fresh := sign(t, jwt.SigningMethodHS256, []byte(testSecret), claims("alice", time.Hour, "priv:*"))
	if f := c.command(t, `{"type":"auth","id":4,"token":"`+fresh+`"}`); f["type"] != "ack" {
		t.Fatalf("refresh: %v", f)
	}
	if f := c.command(t, `{"type":"subscribe","id":5,"channel":"priv:a"}`); f["type"] != "subscribed" {
		t.Fatalf("subscribe after the refresh: %v", f)
	}
}

// A disconnect reason is cut at a rune boundary: the close frame stays
// valid UTF-8 and carries 4004.
func TestDisconnectReasonStaysUTF8(t *testing.T) {
	n := tokenNode(t)
	tok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), claims("alice", time.Hour))
	c := n.dialRaw(t, "/ws?token="+tok)
	c.readJSON(t) // welcome: the session is registered
	reason := strings.Repeat("a", 99) + "é" + strings.Repeat("ü", 30)
	if err := n.hub.Disconnect(context.Background(), "alice", reason, 0); err != nil {
		t.Fatal(err)
	}
	code, got, ok := c.closeCode()
	if !ok || code != push.CloseKicked {
		t.Fatalf("close %d %q (%v), want %d", code, got, ok, push.CloseKicked)
	}
	if !utf8.ValidString(got) || !strings.HasPrefix(got, strings.Repeat("a", 99)) {
		t.Fatalf("close reason %q is not a valid UTF-8 cut of the reason", got)
	}
}

// A flood close on connect (too many query channels) delivers what was
// queued first: the welcome, the subscribes and errors, then 4005 with its
// reason.
func TestFloodOnConnectKeepsQueuedFrames(t *testing.T) {
	n := startTestNode(t, push.Options{})
	q := url.Values{}
	for i := range 400 {
		q.Add("channel", fmt.Sprintf("c%d", i))
	}
	c := n.dialRaw(t, "/ws?"+q.Encode())
	first := true
	var subscribed, errs int
	for {
		op, p, err := c.readFrame()
		if err != nil {
			t.Fatalf("no close frame: %v (after %d subscribed, %d errors)", err, subscribed, errs)
		}
		if op == 0x8 {
			if len(p) < 2 || int(p[0])<<8|int(p[1]) != push.CloseFlood || len(p) == 2 {
				t.Fatalf("close %q, want 4005 with a reason", p)
			}
			break
		}
		if op != 0x1 {
			continue
		}
		var f map[string]any
		_ = json.Unmarshal(p, &f)
		if first && f["type"] != "welcome" {
			t.Fatalf("first frame %s, want the welcome", p)
		}
		first = false
		switch f["type"] {
		case "subscribed":
			subscribed++
		case "error":
			errs++
		}
	}
	if first || subscribed != push.DefaultMaxChannels || errs != push.MaxRejectedFrames {
		t.Fatalf("before the close: welcome %v, %d subscribed, %d errors; want %d and %d", !first, subscribed, errs, push.DefaultMaxChannels, push.MaxRejectedFrames)
	}
}
