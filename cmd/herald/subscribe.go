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
	"sync/atomic"

	heraldclient "github.com/heraldpush/herald/clients/go"
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
	out := &lockedWriter{w: stdout}
	note := func(format string, a ...any) {
		if !*quiet {
			fmt.Fprintf(stderr, format+"\n", a...)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var printed, refused atomic.Int64
	var failed atomic.Pointer[error]
	fail := func(err error) {
		failed.CompareAndSwap(nil, &err)
		cancel()
	}
	c := heraldclient.New(heraldclient.Config{
		URL:   wsEndpoint(*url),
		Token: *token,
		OnState: func(e heraldclient.Event) {
			switch {
			case e.State == heraldclient.Disconnected && heraldclient.Permanent(e.Code):
				// The client stops; the error says why.
			case e.State == heraldclient.Disconnected && e.Code != 0:
				note("disconnected: %d %s; reconnecting", e.Code, e.Reason)
			case e.State == heraldclient.Disconnected:
				note("disconnected: %v; reconnecting", e.Err)
			case e.State == heraldclient.Connected:
				note("connected")
			}
		},
	})
	defer c.Close()
	for _, ch := range channels {
		err := c.Subscribe(ch, func(m heraldclient.Message) {
			if *count > 0 && printed.Load() >= int64(*count) {
				return // done; the client is closing
			}
			b, err := json.Marshal(m)
			if err == nil {
				_, err = fmt.Fprintf(out, "%s\n", b)
			}
			if err != nil { // stdout is gone (a closed pipe): stop
				fail(err)
				return
			}
			if n := printed.Add(1); *count > 0 && n >= int64(*count) {
				cancel()
			}
		}, heraldclient.SubscribeOptions{
			OnSubscribed: func(channel string, at heraldclient.Position, recovered bool) {
				note("subscribed %s at %s:%d", channel, at.Epoch, at.Offset)
			},
			OnReset: func(channel string, at heraldclient.Position) {
				note("reset %s: messages were lost (history window passed or new epoch); now at %s:%d", channel, at.Epoch, at.Offset)
			},
			OnError: func(channel string, err *heraldclient.ServerError) {
				// Not a notice: printed with -q too.
				fmt.Fprintf(stderr, "subscribe %s: refused: %s: %s\n", channel, err.Code, err.Message)
				if err.Code == "unavailable" {
					return // the broker is down for now; retried on reconnect
				}
				if refused.Add(1) == int64(len(channels)) {
					fail(fmt.Errorf("subscribe: the server refused every channel (%s)", strings.Join(channels, ", ")))
				}
			},
		})
		if err != nil {
			return err
		}
	}
	select {
	case <-ctx.Done():
	case <-c.Done():
	}
	if p := failed.Load(); p != nil {
		return *p
	}
	var ce *heraldclient.CloseError
	if err := c.Err(); errors.As(err, &ce) {
		return fmt.Errorf("subscribe: the server closed the connection with %d (%s); not reconnecting", ce.Code, ce.Reason)
	} else if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	return nil
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
