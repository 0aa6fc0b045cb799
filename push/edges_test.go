package push

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"math/big"
	"testing"
	"time"

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
