package push

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

func signKid(t *testing.T, m jwt.SigningMethod, key any, c jwt.Claims, kid any) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != nil {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// RFC 7519 NumericDate is a JSON number: exp, nbf or iat as a string is
// refused, although jwt/v5 would parse it.
func TestVerifierNumericDatesAreNumbers(t *testing.T) {
	v := mustVerifier(t, AuthOptions{HMACSecret: testSecret})
	future := time.Now().Add(time.Hour).Unix()
	ok := jwt.MapClaims{"sub": "a", "exp": future}
	if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, []byte(testSecret), ok)); err != nil {
		t.Fatalf("numeric exp: %v", err)
	}
	for name, c := range map[string]jwt.MapClaims{
		"exp string": {"sub": "a", "exp": fmt.Sprint(future)},
		"nbf string": {"sub": "a", "exp": future, "nbf": "0"},
		"iat string": {"sub": "a", "exp": future, "iat": fmt.Sprint(time.Now().Unix())},
	} {
		expectRejected(t, v, sign(t, jwt.SigningMethodHS256, []byte(testSecret), c), name)
	}
}

// A JWKS key with a kid verifies only tokens naming that kid: not a token
// without one, nor with an empty one. A key without a kid verifies any.
func TestVerifierKidPinsTheKey(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b64 := func(n *big.Int) string { return base64.RawURLEncoding.EncodeToString(n.FillBytes(make([]byte, 32))) }
	jwk := func(kid string) string {
		return fmt.Sprintf(`{"keys":[{"kty":"EC","kid":%q,"crv":"P-256","alg":"ES256","x":%q,"y":%q}]}`, kid, b64(ec.X), b64(ec.Y))
	}
	c := claims("carol", time.Hour)
	pinned := mustVerifier(t, AuthOptions{JWKS: []byte(jwk("k1"))})
	if _, err := pinned.Verify(signKid(t, jwt.SigningMethodES256, ec, c, "k1")); err != nil {
		t.Fatalf("token naming k1: %v", err)
	}
	expectRejected(t, pinned, signKid(t, jwt.SigningMethodES256, ec, c, nil), "no kid, key k1")
	expectRejected(t, pinned, signKid(t, jwt.SigningMethodES256, ec, c, ""), "empty kid, key k1")
	expectRejected(t, pinned, signKid(t, jwt.SigningMethodES256, ec, c, "k2"), "kid k2, key k1")
	open := mustVerifier(t, AuthOptions{JWKS: []byte(jwk(""))})
	for _, kid := range []any{nil, "", "anything"} {
		if _, err := open.Verify(signKid(t, jwt.SigningMethodES256, ec, c, kid)); err != nil {
			t.Fatalf("key without kid, token kid %v: %v", kid, err)
		}
	}
}

// tokenNode is a test node with an HMAC verifier, a private namespace
// "priv" and a short token grace.
func tokenNode(t *testing.T) *testNode {
	v := mustVerifier(t, AuthOptions{HMACSecret: testSecret})
	ns := &Namespaces{Named: map[string]*Namespace{"priv": {Private: true}}}
	return startTestNode(t, Options{Verifier: v, Namespaces: ns, TokenGrace: time.Minute})
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
	if f := c.command(t, `{"type":"subscribe","id":1,"channel":"priv:a"}`); f["type"] != "error" || f["code"] != CodeTokenExpired {
		t.Fatalf("subscribe to a private channel during the grace: %v", f)
	}
	if f := c.command(t, `{"type":"history","id":2,"channel":"priv:a"}`); f["type"] != "error" || f["code"] != CodeTokenExpired {
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
	if !ok || code != CloseKicked {
		t.Fatalf("close %d %q (%v), want %d", code, got, ok, CloseKicked)
	}
	if !utf8.ValidString(got) || !strings.HasPrefix(got, strings.Repeat("a", 99)) {
		t.Fatalf("close reason %q is not a valid UTF-8 cut of the reason", got)
	}
}

// A flood close on connect (too many query channels) delivers what was
// queued first: the welcome, the subscribes and errors, then 4005 with its
// reason.
func TestFloodOnConnectKeepsQueuedFrames(t *testing.T) {
	n := startTestNode(t, Options{})
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
			if len(p) < 2 || int(p[0])<<8|int(p[1]) != CloseFlood || len(p) == 2 {
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
	if first || subscribed != DefaultMaxChannels || errs != maxErrors {
		t.Fatalf("before the close: welcome %v, %d subscribed, %d errors; want %d and %d", !first, subscribed, errs, DefaultMaxChannels, maxErrors)
	}
}
