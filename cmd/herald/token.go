package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/heraldpush/herald/internal/server"
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
	cfg, err := server.LoadConfig(*path, os.Getenv)
	if err != nil {
		return err
	}
	signed, err := server.MintToken(server.TokenOptions{
		Secret: cmp.Or(*secret, cfg.TokenHMACSecret), Subject: *sub, Channels: strings.Split(*channels, ","), TTL: *ttl,
		Info: *info, Audience: cmp.Or(*aud, cfg.TokenAudience), Issuer: cmp.Or(*iss, cfg.TokenIssuer),
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, signed)
	return nil
}
