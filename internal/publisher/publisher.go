// Package publisher is the body of `herald publish`: DATA turned into a
// JSON message (itself when valid JSON, else a JSON string), published
// through the HTTP API (clients/go), the broker's position printed as a
// JSON line; or every line of a reader, one message each, in order.
package publisher

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	heraldclient "github.com/heraldpush/herald/clients/go"
)

// Command is one run of herald publish.
type Command struct {
	Pub *heraldclient.Publisher
	Out io.Writer // one JSON line (the position) per message published
	// Key is the idempotency key of the message (of line N of Lines:
	// Key + "-N"); "" gives each message a random one. Either way a
	// publish answered 503 or 504, or left without an answer, is retried
	// with its key and published once.
	Key string
}

// Publish publishes data (see Data) to channel and prints its position.
func (c Command) Publish(ctx context.Context, channel, data string) error {
	return c.publish(ctx, channel, c.Key, data)
}

func (c Command) publish(ctx context.Context, channel, key, data string) error {
	if key == "" {
		key = heraldclient.NewIdempotencyKey()
	}
	pos, err := c.Pub.PublishKeyed(ctx, channel, key, Data(data))
	if err != nil {
		return fmt.Errorf("publish to %s: %w", channel, err)
	}
	_, err = fmt.Fprintf(c.Out, "%s\n", pos)
	return err
}

// Lines publishes each non-blank line of r to channel, in order, stopping
// at the first failure.
func (c Command) Lines(ctx context.Context, channel string, r io.Reader) error {
	// Lines can be long (a JSON document): allow 4 MiB.
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		key := ""
		if c.Key != "" {
			key = c.Key + "-" + strconv.Itoa(n)
		}
		if err := c.publish(ctx, channel, key, line); err != nil {
			return err
		}
	}
	return sc.Err()
}

// Data is s as a JSON message: s itself when it is valid JSON (42, true,
// {"a":1}, "\"quoted\""), else s as a JSON string.
func Data(s string) json.RawMessage {
	if b := bytes.TrimSpace([]byte(s)); json.Valid(b) {
		return b
	}
	b, _ := json.Marshal(s)
	return b
}
