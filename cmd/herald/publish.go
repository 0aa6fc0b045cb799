package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	heraldclient "github.com/heraldpush/herald/clients/go"
)

const publishUsage = `Usage: herald publish [flags] CHANNEL [DATA]

Publishes DATA to CHANNEL through the HTTP API and prints the position the
broker gave it as a JSON line. DATA is sent as JSON when it is valid JSON
(42, true, {"a":1}, '"quoted"'), otherwise as a JSON string: the words
after CHANNEL joined by spaces (herald publish chat:lobby hello world).
Without DATA, every line of standard input is one message, published in
order. Use -- before DATA that starts with '-'.

Flags:
`

// publishCmd holds what one run of herald publish needs.
type publishCmd struct {
	pub *heraldclient.Publisher
	out io.Writer
}

func cmdPublish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runPublish(ctx, args, os.Stdin, stdout, stderr)
}

// runPublish is herald publish reading messages from stdin.
func runPublish(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", envOr("HERALD_URL", "http://localhost:8080"), "server base URL (HERALD_URL)")
	key := fs.String("key", os.Getenv("HERALD_API_KEY"), "publisher API key (HERALD_API_KEY); not needed from loopback when the server has none")
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
	p := publishCmd{out: stdout, pub: &heraldclient.Publisher{
		URL: serverURL(*url), APIKey: *key, Client: &http.Client{Timeout: 10 * time.Second},
	}}
	if len(pos) > 1 {
		// Like echo: the words after the channel are the message.
		return p.publish(ctx, pos[0], strings.Join(pos[1:], " "))
	}
	// One message per line. Lines can be long (a JSON document): allow 4 MiB.
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if err := p.publish(ctx, pos[0], line); err != nil {
			return err
		}
	}
	return sc.Err()
}

// messageData is DATA as JSON: itself when valid, else a JSON string.
func messageData(s string) json.RawMessage {
	if b := bytes.TrimSpace([]byte(s)); json.Valid(b) {
		return b
	}
	b, _ := json.Marshal(s)
	return b
}

func (p publishCmd) publish(ctx context.Context, channel, data string) error {
	pos, err := p.pub.Publish(ctx, channel, messageData(data))
	if err != nil {
		return fmt.Errorf("publish to %s: %w", channel, err)
	}
	_, err = fmt.Fprintf(p.out, "%s\n", pos)
	return err
}
