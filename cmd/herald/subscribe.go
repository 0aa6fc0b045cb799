package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/heraldpush/herald/internal/subscriber"
)

const subscribeUsage = `Usage: herald subscribe [flags] CHANNEL...

Prints every message of the channels as one JSON line each
({"channel","offset","epoch","ts","data"}) until interrupted. It reconnects
by itself and resumes each channel from the last message printed, so
nothing is missed while it is in the channel's history; when the server
cannot recover, a "reset" notice goes to standard error. Connection notices
go to standard error too, so standard output is only messages.

A channel the server refuses (unknown namespace, invalid name, forbidden)
is reported on standard error with the server's error; when every channel
is refused, subscribe exits with status 1. So does a close that retrying
cannot fix: 1008 (token refused, user banned), 4003 (token expired), 4004
(disconnected by the server).

Flags:
`

func cmdSubscribe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("subscribe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", envOr("HERALD_URL", "http://localhost:8080"), "server base URL or WebSocket URL (HERALD_URL)")
	token := fs.String("token", os.Getenv("HERALD_TOKEN"), "JWT for private channels (HERALD_TOKEN)")
	count := fs.Int("n", 0, "exit after this many messages (0: run until interrupted)")
	quiet := fs.Bool("q", false, "no connection notices on standard error")
	fs.Usage = func() {
		fmt.Fprint(stderr, subscribeUsage)
		fs.PrintDefaults()
	}
	channels, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(channels) == 0 {
		fs.Usage()
		return errors.New("subscribe: give at least one channel")
	}
	return subscriber.Run(ctx, subscriber.Options{
		URL: wsEndpoint(*url), Token: *token, Channels: channels, Count: *count, Quiet: *quiet,
	}, stdout, stderr)
}

// wsEndpoint turns a server base URL into its WebSocket endpoint; a
// ws:// or wss:// URL is used as given.
func wsEndpoint(u string) string {
	if strings.HasPrefix(u, "ws://") || strings.HasPrefix(u, "wss://") {
		return u
	}
	u = serverURL(u)
	return "ws" + strings.TrimPrefix(u, "http") + "/ws"
}
