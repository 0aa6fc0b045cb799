package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	heraldclient "github.com/heraldpush/herald/clients/go"
	"github.com/heraldpush/herald/push/checker"
)

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	check := fs.Bool("check", false, "verify delivery: every subscriber gets every message once, in order")
	urls := fs.String("url", "http://localhost:8080", "server base URL(s), comma-separated: publishes and connections rotate through them")
	key := fs.String("key", "", "publisher API key (env HERALD_API_KEY)")
	ns := fs.String("namespace", "", "namespace of the test channels (it should keep history for recovery)")
	channels := fs.Int("channels", 4, "channels")
	subs := fs.Int("subscribers", 50, "subscribing connections")
	msgs := fs.Int("messages", 1000, "messages per channel")
	rate := fs.Int("rate", 2000, "publishes per second over all channels (0: unlimited)")
	drops := fs.Int("drops", 0, "--check: connections to drop with a TCP reset at random while publishing")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: herald bench --check [flags]\n\nLoad and delivery checks against a running Herald.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *key == "" {
		*key = envOr("HERALD_API_KEY", "")
	}
	if !*check {
		fs.Usage()
		return errors.New("bench: give --check (the load generator is not in this version)")
	}
	var wsURLs, httpURLs []string
	for _, u := range strings.Split(*urls, ",") {
		u = strings.TrimRight(strings.TrimSpace(u), "/")
		if u == "" {
			continue
		}
		httpURLs = append(httpURLs, u)
		wsURLs = append(wsURLs, "ws"+strings.TrimPrefix(u, "http")+"/ws")
	}
	cfg := checker.Config{
		WSURLs: wsURLs, HTTPURLs: httpURLs, APIKey: *key, Namespace: *ns,
		Channels: *channels, Subscribers: *subs, Messages: *msgs, Rate: *rate,
	}
	if *drops > 0 {
		cfg.During = func(ctx context.Context, clients []*heraldclient.Client) {
			// Spread the drops over the expected publishing time.
			span := time.Second
			if *rate > 0 {
				span = time.Duration(*channels**msgs) * time.Second / time.Duration(*rate)
			}
			for i := 0; i < *drops && ctx.Err() == nil; i++ {
				clients[rand.IntN(len(clients))].DropConnection()
				time.Sleep(span / time.Duration(*drops))
			}
		}
	}
	r, err := checker.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(stdout, r)
	}
	if !r.OK() {
		return fmt.Errorf("bench --check: %d missing, %d duplicated, %d reordered", r.Missing, r.Duplicated, r.Reordered)
	}
	return nil
}
