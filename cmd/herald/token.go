package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/heraldpush/herald/internal/server"
	"github.com/heraldpush/herald/push"
)

// cmdToken mints a connection token signed with the configured HMAC
// secret, for trying private and presence namespaces. Production tokens
// come from the application's backend, signed with its own key.
func cmdToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", os.Getenv("HERALD_CONFIG"), "YAML config file holding token_hmac_secret")
	secret := fs.String("secret", "", "HMAC secret (default: token_hmac_secret from config or HERALD_TOKEN_HMAC_SECRET)")
	sub := fs.String("sub", "", "user id (required)")
	channels := fs.String("channels", "", "comma-separated channels or patterns (chat:*) the user may subscribe to in private namespaces")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	info := fs.String("info", "", "JSON shown to others in presence, e.g. '{\"name\":\"Alice\"}'")
	aud := fs.String("aud", "", "audience (default: token_audience from config)")
	iss := fs.String("iss", "", "issuer (default: token_issuer from config)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: herald token --sub USER [--channels 'chat:*'] [--ttl 1h]\n\nMints an HS256 connection token.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sub == "" {
		fs.Usage()
		return errors.New("token: --sub is required")
	}
	cfg := server.DefaultConfig()
	if *path != "" {
		if err := cfg.LoadFile(*path); err != nil {
			return err
		}
	}
	if err := cfg.LoadEnv(os.Getenv); err != nil {
		return err
	}
	if *secret == "" {
		*secret = cfg.TokenHMACSecret
	}
	if *secret == "" {
		return errors.New("token: no HMAC secret: set token_hmac_secret (or HERALD_TOKEN_HMAC_SECRET) or pass --secret")
	}
	now := time.Now()
	c := push.Claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject:   *sub,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(*ttl)),
		Issuer:    firstNonEmpty(*iss, cfg.TokenIssuer),
	}}
	if a := firstNonEmpty(*aud, cfg.TokenAudience); a != "" {
		c.Audience = jwt.ClaimStrings{a}
	}
	for _, ch := range strings.Split(*channels, ",") {
		if ch = strings.TrimSpace(ch); ch != "" {
			c.Channels = append(c.Channels, ch)
		}
	}
	if *info != "" {
		if !json.Valid([]byte(*info)) {
			return errors.New("token: --info is not JSON")
		}
		c.Info = json.RawMessage(*info)
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(*secret))
	if err != nil {
		return err
	}
	// Check it the way the server will, so a short secret fails here.
	v, err := push.NewVerifier(push.AuthOptions{HMACSecret: *secret, Audience: firstNonEmpty(*aud, cfg.TokenAudience), Issuer: c.Issuer})
	if err != nil {
		return err
	}
	if _, err := v.Verify(signed); err != nil {
		return err
	}
	fmt.Fprintln(stdout, signed)
	return nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
