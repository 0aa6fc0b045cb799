// Package subscriber is the body of `herald subscribe`: it follows
// channels over one reconnecting WebSocket (clients/go) and prints each
// message as a JSON line, connection notices and refusals going to a
// separate writer so that standard output is only messages.
package subscriber

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	heraldclient "github.com/heraldpush/herald/clients/go"
)

// Options is one run of herald subscribe.
type Options struct {
	URL      string   // the WebSocket endpoint (ws://host/ws)
	Token    string   // connection token; "" for public channels only
	Channels []string // at least one
	Count    int      // exit after this many messages; 0 runs until ctx ends
	Quiet    bool     // no connection notices (refusals are still written)
}

// Run prints the channels' messages to out until ctx ends, Count messages
// are printed, every channel is refused, or the server closes the
// connection with a code retrying cannot fix (heraldclient.Permanent).
// Notices go to notes.
func Run(ctx context.Context, o Options, out, notes io.Writer) error {
	if len(o.Channels) == 0 {
		return errors.New("subscribe: give at least one channel")
	}
	w := &lockedWriter{w: out}
	note := func(format string, a ...any) {
		if !o.Quiet {
			fmt.Fprintf(notes, format+"\n", a...)
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
		URL:   o.URL,
		Token: o.Token,
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
	for _, ch := range o.Channels {
		err := c.Subscribe(ch, func(m heraldclient.Message) {
			if o.Count > 0 && printed.Load() >= int64(o.Count) {
				return // done; the client is closing
			}
			b, err := json.Marshal(m)
			if err == nil {
				_, err = fmt.Fprintf(w, "%s\n", b)
			}
			if err != nil { // out is gone (a closed pipe): stop
				fail(err)
				return
			}
			if n := printed.Add(1); o.Count > 0 && n >= int64(o.Count) {
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
				// Not a notice: written when Quiet too.
				fmt.Fprintf(notes, "subscribe %s: refused: %s: %s\n", channel, err.Code, err.Message)
				if err.Code == "unavailable" {
					return // the broker is down for now; retried on reconnect
				}
				if refused.Add(1) == int64(len(o.Channels)) {
					fail(fmt.Errorf("subscribe: the server refused every channel (%s)", strings.Join(o.Channels, ", ")))
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

// lockedWriter serialises writes from the client's goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
