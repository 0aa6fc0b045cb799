package push

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrToken is wrapped by every token verification failure.
var ErrToken = errors.New("push: invalid token")

// DefaultLeeway is the clock skew allowed on exp, nbf and iat.
const DefaultLeeway = 5 * time.Second

// Claims are the claims of a Herald connection token.
type Claims struct {
	jwt.RegisteredClaims
	// Channels lists the channels of private namespaces the holder may
	// subscribe to: exact names or patterns ending in '*' ("chat:*").
	Channels []string `json:"channels,omitempty"`
	// Info is shown to others in presence.
	Info json.RawMessage `json:"info,omitempty"`
	// Subs lists channels the connection is subscribed to at connect, as
	// server-side subscriptions (serversub.go): the token's signer decided,
	// so the namespaces' access rules are not checked again.
	Subs []string `json:"subs,omitempty"`
}

// Allows reports whether the claims grant channel.
func (c *Claims) Allows(channel string) bool {
	for _, p := range c.Channels {
		if MatchChannel(p, channel) {
			return true
		}
	}
	return false
}

// MatchChannel reports whether pattern grants channel: an exact name, or
// a prefix followed by a final '*' ("chat:*", "user:42.*"). A lone "*"
// grants every channel.
func MatchChannel(pattern, channel string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(channel, prefix) && !strings.Contains(prefix, "*")
	}
	return pattern == channel && pattern != ""
}

// AuthOptions configure token verification. Several kinds of keys may be
// given at once (during a key rotation, say); each accepts only the
// algorithms of its kind, so an HS256 token can never be checked against
// an RSA public key used as an HMAC secret.
type AuthOptions struct {
	// HMACSecret accepts HS256, HS384 and HS512.
	HMACSecret string
	// PublicKeys holds PEM blocks: RSA keys accept RS* and PS*, ECDSA keys
	// the ES* of their curve, Ed25519 keys EdDSA.
	PublicKeys []byte
	// JWKS is a JSON Web Key Set; a key with "alg" accepts only that.
	JWKS []byte
	// Audience and Issuer, when set, must match the token's aud and iss.
	Audience, Issuer string
	// Leeway allows for clock skew (default DefaultLeeway).
	Leeway time.Duration
}

// Verifier checks connection tokens.
type Verifier struct {
	keys    []verifyKey
	methods []string
	parser  *jwt.Parser
}

type verifyKey struct {
	kid     string
	methods []string
	key     any
}

// NewVerifier builds a verifier; it returns nil, nil when no key is
// configured (tokens are then refused).
func NewVerifier(o AuthOptions) (*Verifier, error) {
	v := &Verifier{}
	if o.HMACSecret != "" {
		if len(o.HMACSecret) < 32 {
			return nil, errors.New("push: token HMAC secret must be at least 32 bytes")
		}
		v.add("", []string{"HS256", "HS384", "HS512"}, []byte(o.HMACSecret))
	}
	for rest := o.PublicKeys; len(rest) > 0; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		key, err := parsePEMKey(block)
		if err != nil {
			return nil, err
		}
		methods, err := methodsFor(key)
		if err != nil {
			return nil, err
		}
		v.add("", methods, key)
	}
	if len(o.JWKS) > 0 {
		if err := v.addJWKS(o.JWKS); err != nil {
			return nil, err
		}
	}
	if len(v.keys) == 0 {
		return nil, nil
	}
	leeway := o.Leeway
	if leeway <= 0 {
		leeway = DefaultLeeway
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(v.methods),
		jwt.WithLeeway(leeway),
		jwt.WithIssuedAt(),
		jwt.WithExpirationRequired(),
	}
	if o.Audience != "" {
		opts = append(opts, jwt.WithAudience(o.Audience))
	}
	if o.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(o.Issuer))
	}
	v.parser = jwt.NewParser(opts...)
	return v, nil
}

func (v *Verifier) add(kid string, methods []string, key any) {
	v.keys = append(v.keys, verifyKey{kid: kid, methods: methods, key: key})
	for _, m := range methods {
		if !slices.Contains(v.methods, m) {
			v.methods = append(v.methods, m)
		}
	}
}

// Verify checks token and returns its claims.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if v == nil {
		return nil, fmt.Errorf("%w: this server has no token keys configured", ErrToken)
	}
	var c Claims
	_, err := v.parser.ParseWithClaims(token, &c, v.keyFor)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrToken, err)
	}
	if c.Subject == "" {
		return nil, fmt.Errorf("%w: no sub claim", ErrToken)
	}
	if err := checkNumericDates(token); err != nil { // auth_dates.go
		return nil, fmt.Errorf("%w: %v", ErrToken, err)
	}
	return &c, nil
}

// keyFor picks the keys that may verify t: those whose kind accepts t's
// algorithm and, when both name one, whose kid matches.
func (v *Verifier) keyFor(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	kid, _ := t.Header["kid"].(string)
	var set jwt.VerificationKeySet
	for _, k := range v.keys {
		// A key with a kid verifies only tokens naming it (herald.example.yaml
		// says so); a key without one, any token of its algorithms.
		if !slices.Contains(k.methods, alg) || (k.kid != "" && k.kid != kid) {
			continue
		}
		set.Keys = append(set.Keys, k.key)
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("no key accepts alg %q", alg)
	}
	return set, nil
}

func parsePEMKey(b *pem.Block) (any, error) {
	switch b.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(b.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(b.Bytes)
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		return cert.PublicKey, nil
	}
	return nil, fmt.Errorf("push: PEM block %q is not a public key", b.Type)
}

// methodsFor pins the algorithms a public key accepts.
func methodsFor(key any) ([]string, error) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, errors.New("push: RSA token key shorter than 2048 bits")
		}
		return []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return []string{"ES256"}, nil
		case elliptic.P384():
			return []string{"ES384"}, nil
		case elliptic.P521():
			return []string{"ES512"}, nil
		}
	case ed25519.PublicKey:
		return []string{"EdDSA"}, nil
	}
	return nil, fmt.Errorf("push: unsupported token key type %T", key)
}

// addJWKS adds the keys of a JSON Web Key Set.
func (v *Verifier) addJWKS(b []byte) error {
	var set struct {
		Keys []struct {
			Kty, Kid, Alg, Use string
			N, E, Crv, X, Y, K string
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return fmt.Errorf("push: JWKS: %w", err)
	}
	dec := base64.RawURLEncoding.DecodeString
	for i, j := range set.Keys {
		if j.Use != "" && j.Use != "sig" {
			continue
		}
		var key any
		var err error
		switch j.Kty {
		case "RSA":
			n, e1 := dec(j.N)
			e, e2 := dec(j.E)
			if err = errors.Join(e1, e2); err == nil {
				key = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
			}
		case "EC":
			curve := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}[j.Crv]
			x, e1 := dec(j.X)
			y, e2 := dec(j.Y)
			if err = errors.Join(e1, e2); err == nil && curve != nil {
				key = &ecdsa.PublicKey{Curve: curve, X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
			}
		case "OKP":
			var x []byte
			if x, err = dec(j.X); err == nil && j.Crv == "Ed25519" && len(x) == ed25519.PublicKeySize {
				key = ed25519.PublicKey(x)
			}
		case "oct":
			var k []byte
			if k, err = dec(j.K); err == nil && len(k) >= 32 {
				key = k
			}
		}
		if err != nil || key == nil {
			return fmt.Errorf("push: JWKS key %d (kid %q): unusable %s key", i, j.Kid, j.Kty)
		}
		var methods []string
		if _, ok := key.([]byte); ok {
			methods = []string{"HS256", "HS384", "HS512"}
		} else if methods, err = methodsFor(key); err != nil {
			return err
		}
		if j.Alg != "" {
			if !slices.Contains(methods, j.Alg) {
				return fmt.Errorf("push: JWKS key %q: alg %s does not fit a %s key", j.Kid, j.Alg, j.Kty)
			}
			methods = []string{j.Alg}
		}
		v.add(j.Kid, methods, key)
	}
	return nil
}
