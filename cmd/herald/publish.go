package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	heraldclient "github.com/heraldpush/herald/clients/go"
	"github.com/heraldpush/herald/internal/publisher"
)

const publishUsage = `Usage: herald publish [flags] CHANNEL [DATA]

Publishes DATA to CHANNEL through the HTTP API and prints the position the
broker gave it as a JSON line. DATA is sent as JSON when it is valid JSON
(42, true, {"a":1}, '"quoted"'), otherwise as a JSON string: the words
after CHANNEL joined by spaces (herald publish chat:lobby hello world).
Without DATA, every line of standard input is one message, published in
order. Use -- before DATA that starts with '-'.

Every message carries an idempotency key (--idempotency-key, or a random
one): a publish answered 503 or 504, or that got no answer, is retried with
the same key for up to a minute, and the server publishes it once.

Flags:
`

func cmdPublish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runPublish(ctx, args, os.Stdin, stdout, stderr)
}

// runPublish is herald publish reading messages from stdin.
func runPublish(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", envOr("HERALD_URL", "http://localhost:8080"), "server base URL (HERALD_URL)")
	key := fs.String("key", os.Getenv("HERALD_API_KEY"), "publisher API key (HERALD_API_KEY); not needed from loopback when the server has none")
	idemKey := fs.String("idempotency-key", "", "idempotency key of the message (line N of standard input: KEY-N); default a random one")
	fs.Usage = func() {
		fmt.Fprint(stderr, publishUsage)
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 1 {
		fs.Usage()
		return errors.New("publish: want CHANNEL and optionally DATA")
	}
	if len(*idemKey) > 128 {
		return errors.New("publish: --idempotency-key is longer than 128 bytes")
	}
	p := publisher.Command{Out: stdout, Key: *idemKey, Pub: &heraldclient.Publisher{
		URL: serverURL(*url), APIKey: *key, Client: &http.Client{Timeout: 10 * time.Second},
	}}
	if len(pos) > 1 {
		// Like echo: the words after the channel are the message.
		return p.Publish(ctx, pos[0], strings.Join(pos[1:], " "))
	}
	return p.Lines(ctx, pos[0], stdin)
}
