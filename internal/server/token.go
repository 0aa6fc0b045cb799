package server

import (
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldpush/herald/push"
)

// TokenOptions describe a test connection token (herald token).
type TokenOptions struct {
	Secret   string   // HMAC secret (token_hmac_secret)
	Subject  string   // sub: the user
	Channels []string // private channels or patterns granted; blanks skipped
	TTL      time.Duration
	Info     string // JSON shown in presence; "" for none
	Audience string // aud; "" for none
	Issuer   string // iss; "" for none
}

// MintToken signs an HS256 token with o's claims and verifies it the way
// a node with the same secret, audience and issuer will, so that a short
// secret fails here rather than at connect.
func MintToken(o TokenOptions) (string, error) {
	if o.Secret == "" {
		return "", errors.New("token: no HMAC secret: set token_hmac_secret (or HERALD_TOKEN_HMAC_SECRET) or pass --secret")
	}
	now := time.Now()
	c := push.Claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject:   o.Subject,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(o.TTL)),
		Issuer:    o.Issuer,
	}}
	if o.Audience != "" {
		c.Audience = jwt.ClaimStrings{o.Audience}
	}
	for _, ch := range o.Channels {
		if ch = strings.TrimSpace(ch); ch != "" {
			c.Channels = append(c.Channels, ch)
		}
	}
	if o.Info != "" {
		if !json.Valid([]byte(o.Info)) {
			return "", errors.New("token: --info is not JSON")
		}
		c.Info = json.RawMessage(o.Info)
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(o.Secret))
	if err != nil {
		return "", err
	}
	v, err := push.NewVerifier(push.AuthOptions{HMACSecret: o.Secret, Audience: o.Audience, Issuer: o.Issuer})
	if err != nil {
		return "", err
	}
	if _, err := v.Verify(signed); err != nil {
		return "", err
	}
	return signed, nil
}
