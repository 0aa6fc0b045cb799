package push

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const testSecret = "0123456789abcdef0123456789abcdef"

func claims(sub string, exp time.Duration, channels ...string) Claims {
	now := time.Now()
	return Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   sub,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(exp)),
		},
		Channels: channels,
	}
}

func sign(t *testing.T, m jwt.SigningMethod, key any, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func rsaKey(t *testing.T) (*rsa.PrivateKey, []byte) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return k, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func mustVerifier(t *testing.T, o AuthOptions) *Verifier {
	t.Helper()
	v, err := NewVerifier(o)
	if err != nil || v == nil {
		t.Fatalf("NewVerifier: %v, %v", v, err)
	}
	return v
}

func expectRejected(t *testing.T, v *Verifier, token, why string) {
	t.Helper()
	if _, err := v.Verify(token); !errors.Is(err, ErrToken) {
		t.Fatalf("%s: accepted (err %v)", why, err)
	}
}

func TestVerifierHMAC(t *testing.T) {
	v := mustVerifier(t, AuthOptions{HMACSecret: testSecret})
	c, err := v.Verify(sign(t, jwt.SigningMethodHS256, []byte(testSecret), claims("alice", time.Hour, "chat:*")))
	if err != nil || c.Subject != "alice" || !c.Allows("chat:lobby") || c.Allows("news") {
		t.Fatalf("valid token: %+v, %v", c, err)
	}
	expectRejected(t, v, sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 32)), claims("a", time.Hour)), "wrong secret")
	expectRejected(t, v, sign(t, jwt.SigningMethodHS256, []byte(testSecret), claims("a", -time.Minute)), "expired")
	nbf := claims("a", time.Hour)
	nbf.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Minute))
	expectRejected(t, v, sign(t, jwt.SigningMethodHS256, []byte(testSecret), nbf), "not yet valid")
	noExp := claims("a", time.Hour)
	noExp.ExpiresAt = nil
	expectRejected(t, v, sign(t, jwt.SigningMethodHS256, []byte(testSecret), noExp), "no exp")
	expectRejected(t, v, sign(t, jwt.SigningMethodHS256, []byte(testSecret), claims("", time.Hour)), "no sub")
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims("a", time.Hour))
	expectRejected(t, v, none, "alg none")
	// Within the leeway an expired token still passes.
	skew := claims("a", -2*time.Second)
	if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, []byte(testSecret), skew)); err != nil {
		t.Fatalf("2 s past exp, within the 5 s leeway: %v", err)
	}
	if _, err := NewVerifier(AuthOptions{HMACSecret: "short"}); err == nil {
		t.Fatal("a short HMAC secret was accepted")
	}
}

// TestVerifierNoAlgorithmConfusion signs an HS256 token with the RSA
// public key's PEM as the HMAC secret, the classic confusion attack.
func TestVerifierNoAlgorithmConfusion(t *testing.T) {
	priv, pub := rsaKey(t)
	v := mustVerifier(t, AuthOptions{PublicKeys: pub})
	if _, err := v.Verify(sign(t, jwt.SigningMethodRS256, priv, claims("bob", time.Hour))); err != nil {
		t.Fatalf("RS256 token: %v", err)
	}
	if _, err := v.Verify(sign(t, jwt.SigningMethodPS256, priv, claims("bob", time.Hour))); err != nil {
		t.Fatalf("PS256 token: %v", err)
	}
	expectRejected(t, v, sign(t, jwt.SigningMethodHS256, pub, claims("mallory", time.Hour)), "HS256 signed with the public key")
	other, _ := rsaKey(t)
	expectRejected(t, v, sign(t, jwt.SigningMethodRS256, other, claims("mallory", time.Hour)), "RS256 by another key")
}

func TestVerifierAudienceIssuerAndJWKS(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b64 := func(n *big.Int) string { return base64.RawURLEncoding.EncodeToString(n.FillBytes(make([]byte, 32))) }
	jwks := fmt.Sprintf(`{"keys":[{"kty":"EC","kid":"k1","crv":"P-256","alg":"ES256","x":%q,"y":%q}]}`, b64(ec.X), b64(ec.Y))
	v := mustVerifier(t, AuthOptions{JWKS: []byte(jwks), Audience: "herald", Issuer: "app"})
	good := claims("carol", time.Hour)
	good.Audience, good.Issuer = jwt.ClaimStrings{"herald"}, "app"
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, good)
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(ec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(s); err != nil {
		t.Fatalf("ES256 token from the JWKS key: %v", err)
	}
	wrongAud := good
	wrongAud.Audience = jwt.ClaimStrings{"other"}
	expectRejected(t, v, signKid(t, jwt.SigningMethodES256, ec, wrongAud, "k1"), "wrong audience")
	wrongIss := good
	wrongIss.Issuer = "evil"
	expectRejected(t, v, signKid(t, jwt.SigningMethodES256, ec, wrongIss, "k1"), "wrong issuer")
	if _, err := NewVerifier(AuthOptions{JWKS: []byte(`{"keys":[{"kty":"EC","crv":"P-256","alg":"RS256","x":"AA","y":"AA"}]}`)}); err == nil {
		t.Fatal("a JWKS key whose alg does not fit its type was accepted")
	}
}

func TestMatchChannel(t *testing.T) {
	for _, c := range []struct {
		pattern, channel string
		want             bool
	}{
		{"chat:*", "chat:lobby", true},
		{"chat:*", "chat:", true},
		{"chat:*", "chatter:x", false},
		{"chat:lobby", "chat:lobby", true},
		{"chat:lobby", "chat:lobby2", false},
		{"*", "anything", true},
		{"", "", false},
		{"a*b*", "a*bc", false},
	} {
		if got := MatchChannel(c.pattern, c.channel); got != c.want {
			t.Errorf("MatchChannel(%q, %q) = %v, want %v", c.pattern, c.channel, got, c.want)
		}
	}
}
