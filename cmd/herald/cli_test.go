package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/internal/e2e"
	"github.com/heraldpush/herald/internal/server"
	"github.com/heraldpush/herald/push"
)

// syncBuffer is a bytes.Buffer safe for a command writing from its
// goroutines while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// lines returns the complete lines written so far.
func (s *syncBuffer) lines() []string {
	str := s.String()
	if i := strings.LastIndexByte(str, '\n'); i >= 0 {
		return strings.Split(str[:i], "\n")
	}
	return nil
}

func cliConfig() server.Config {
	cfg := testConfig()
	cfg.Namespaces = map[string]*push.Namespace{
		"cli":    {HistorySize: 50, HistoryTTL: time.Minute},
		"ticker": {HistorySize: 5, HistoryTTL: time.Minute, Snapshot: true},
	}
	return cfg
}

func TestPublishCommand(t *testing.T) {
	cfg := cliConfig()
	cfg.APIKey = "s3cret"
	n := startTestNode(t, cfg)
	c := n.Dial(query("channel", "cli:pub"))
	c.Welcome()
	c.Expect("subscribed")

	publish := func(stdin string, args ...string) (string, error) {
		var out, errw syncBuffer
		err := runPublish(context.Background(), args, strings.NewReader(stdin), &out, &errw)
		return out.String(), err
	}
	out, err := publish("", "cli:pub", `{"n":1}`, "--url", n.URL(), "--key", "s3cret")
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	var res e2e.PublishResult
	decodeJSON(t, []byte(out), &res)
	if res.Channel != "cli:pub" || res.Offset != 1 || res.Epoch == "" {
		t.Fatalf("publish printed %q, want the position of offset 1", out)
	}
	c.ExpectMessage("cli:pub", map[string]int{"n": 1})

	// Words that are not JSON are one JSON string.
	if _, err := publish("", "--key", "s3cret", "--url", n.URL(), "cli:pub", "hello", "world"); err != nil {
		t.Fatalf("publish words: %v", err)
	}
	c.ExpectMessage("cli:pub", "hello world")

	// Without DATA: one message per stdin line, blank lines skipped.
	out, err = publish("42\n\n\"quoted\"\nplain text\r\n", "--url", n.URL(), "--key", "s3cret", "cli:pub")
	if err != nil {
		t.Fatalf("publish from stdin: %v", err)
	}
	if got := strings.Count(out, "\n"); got != 3 {
		t.Fatalf("stdin publish printed %d lines, want 3: %q", got, out)
	}
	c.ExpectMessage("cli:pub", 42)
	c.ExpectMessage("cli:pub", "quoted")
	c.ExpectMessage("cli:pub", "plain text")

	if _, err := publish("", "--url", n.URL(), "cli:pub", "x"); err == nil || !strings.Contains(err.Error(), "401 unauthorized") {
		t.Fatalf("publish without the key: %v, want HTTP 401 unauthorized", err)
	}
	if _, err := publish("", "--url", n.URL(), "--key", "s3cret", "nope:x", "1"); err == nil || !strings.Contains(err.Error(), "unknown_namespace") {
		t.Fatalf("publish to an unknown namespace: %v, want unknown_namespace", err)
	}
	if _, err := publish(""); err == nil {
		t.Fatal("publish without a channel succeeded")
	}
}

// cliMessage is one line of herald subscribe's output.
type cliMessage struct {
	Channel  string          `json:"channel"`
	Offset   uint64          `json:"offset"`
	Epoch    string          `json:"epoch"`
	Snapshot bool            `json:"snapshot"`
	Data     json.RawMessage `json:"data"`
}

// TestSubscribeCommandResumes runs herald subscribe through a proxy that
// cuts the connection while messages are published: it must print every
// message once, in order, and the channel's snapshot first.
func TestSubscribeCommandResumes(t *testing.T) {
	n := startTestNode(t, cliConfig())
	n.Publish("ticker:x", "latest")
	p := newCutProxy(t, n.Addr())

	ctx, cancel := context.WithCancel(context.Background())
	var out, errw syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- cmdSubscribe(ctx, []string{"--url", "http://" + p.Addr(), "cli:a", "ticker:x"}, &out, &errw)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("subscribe: %v", err)
		}
	})
	waitFor(t, readTimeout, "both subscriptions", func() bool {
		s := errw.String()
		return strings.Contains(s, "subscribed cli:a at ") && strings.Contains(s, "subscribed ticker:x at ")
	})
	n.Publish("cli:a", 1)
	n.Publish("cli:a", 2)
	waitFor(t, readTimeout, "3 lines", func() bool { return len(out.lines()) >= 3 })

	p.Hold(true)
	p.Cut()
	waitFor(t, readTimeout, "the disconnect notice", func() bool { return strings.Contains(errw.String(), "disconnected") })
	n.Publish("cli:a", 3)
	n.Publish("cli:a", 4)
	p.Hold(false)
	waitFor(t, readTimeout, "the resubscribe", func() bool { return strings.Count(errw.String(), "subscribed cli:a at ") == 2 })
	n.Publish("cli:a", 5)
	waitFor(t, readTimeout, "6 lines", func() bool { return len(out.lines()) >= 6 })

	var offsets []uint64
	snapshots := 0
	for _, line := range out.lines() {
		var m cliMessage
		decodeJSON(t, []byte(line), &m)
		switch m.Channel {
		case "ticker:x":
			if !m.Snapshot || !jsonEqual(t, m.Data, "latest") {
				t.Errorf("ticker line %s, want the snapshot \"latest\"", line)
			}
			snapshots++
		case "cli:a":
			if !jsonEqual(t, m.Data, m.Offset) {
				t.Errorf("line %s: data is not its sequence number", line)
			}
			offsets = append(offsets, m.Offset)
		}
	}
	if snapshots != 1 || len(offsets) != 5 {
		t.Fatalf("got %d snapshot(s) and offsets %v, want 1 and 1..5:\n%s\nstderr:\n%s", snapshots, offsets, out.String(), errw.String())
	}
	for i, o := range offsets {
		if o != uint64(i+1) {
			t.Fatalf("offsets %v, want 1..5 in order", offsets)
		}
	}
}

func TestSubscribeCommandCount(t *testing.T) {
	n := startTestNode(t, cliConfig())
	var out, errw syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- cmdSubscribe(context.Background(), []string{"-n", "2", "-q", "--url", n.URL(), "cli:n"}, &out, &errw)
	}()
	waitFor(t, readTimeout, "the subscription", func() bool { _, _, subs := n.Hub().Counts(); return subs == 1 })
	for i := 1; i <= 3; i++ {
		n.Publish("cli:n", i)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("subscribe -n 2: %v", err)
		}
	case <-time.After(readTimeout):
		t.Fatal("subscribe -n 2 did not exit after 2 messages")
	}
	if lines := out.lines(); len(lines) != 2 || errw.String() != "" {
		t.Fatalf("subscribe -n 2 -q printed %q and %q on stderr, want 2 lines and nothing", out.String(), errw.String())
	}
	if err := cmdSubscribe(context.Background(), nil, &out, &errw); err == nil {
		t.Fatal("subscribe without channels succeeded")
	}
}

// runSubscribe runs herald subscribe with args until it returns; the
// test ends it if it has not after ReadTimeout.
func runSubscribe(t *testing.T, args ...string) (stdout, stderr *syncBuffer, done chan error, cancel func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	done = make(chan error, 1)
	go func() { done <- cmdSubscribe(ctx, args, stdout, stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(readTimeout):
			t.Error("subscribe did not return after its context ended")
		}
	})
	return stdout, stderr, done, cancel
}

// exited waits for a subscribe that should end by itself.
func exited(t *testing.T, done chan error, stderr *syncBuffer) error {
	t.Helper()
	select {
	case err := <-done:
		done <- err // for the cleanup
		return err
	case <-time.After(readTimeout):
		t.Fatalf("subscribe still running after %s; stderr:\n%s", readTimeout, stderr)
		return nil
	}
}

// TestSubscribeCommandRefused: each refused channel gets the server's
// error on stderr (even with -q); with some channel accepted the command
// goes on, with none it exits non-zero at once.
func TestSubscribeCommandRefused(t *testing.T) {
	n := startTestNode(t, cliConfig())

	out, errw, done, cancel := runSubscribe(t, "-q", "--url", n.URL(), "stocks:AAPL", "bad name", "cli:ok")
	waitFor(t, readTimeout, "both refusals", func() bool {
		s := errw.String()
		return strings.Contains(s, `subscribe stocks:AAPL: refused: unknown_namespace: push: unknown namespace "stocks"`) &&
			strings.Contains(s, "subscribe bad name: refused: invalid_channel:")
	})
	waitFor(t, readTimeout, "the subscription to cli:ok", func() bool { _, _, subs := n.Hub().Counts(); return subs == 1 })
	n.Publish("cli:ok", "still here")
	waitFor(t, readTimeout, "the message", func() bool { return len(out.lines()) == 1 })
	cancel()
	if err := exited(t, done, errw); err != nil {
		t.Fatalf("subscribe with one channel accepted: %v", err)
	}

	_, errw, done, _ = runSubscribe(t, "--url", n.URL(), "stocks:AAPL", "herald:stats")
	err := exited(t, done, errw)
	if err == nil || !strings.Contains(err.Error(), "refused every channel") {
		t.Fatalf("subscribe with every channel refused: %v, want an error", err)
	}
	if s := errw.String(); !strings.Contains(s, "subscribe herald:stats: refused: forbidden:") || !strings.Contains(s, "unknown_namespace") {
		t.Fatalf("stderr %q, want both refusals", s)
	}
}

// TestSubscribeCommandPermanentClose: a refused token (1008) and a kick
// (4004) end herald subscribe with the code and the reason; it does not
// reconnect.
func TestSubscribeCommandPermanentClose(t *testing.T) {
	cfg := cliConfig()
	cfg.APIKey = "s3cret"
	cfg.TokenHMACSecret = strings.Repeat("k", 32)
	n := startTestNode(t, cfg)

	_, errw, done, _ := runSubscribe(t, "--url", n.URL(), "--token", "not-a-jwt", "cli:a")
	err := exited(t, done, errw)
	if err == nil || !strings.Contains(err.Error(), "closed the connection with 1008") || !strings.Contains(err.Error(), "not reconnecting") {
		t.Fatalf("subscribe with a bad token: %v, want the 1008 close", err)
	}
	if c := countLines(errw, "connected"); c != 0 {
		t.Errorf("stderr %q: want no connected notice", errw)
	}

	var tok bytes.Buffer
	if err := cmdToken(context.Background(), []string{"--sub", "alice", "--secret", cfg.TokenHMACSecret}, &tok, io.Discard); err != nil {
		t.Fatal(err)
	}
	_, errw, done, _ = runSubscribe(t, "--url", n.URL(), "--token", strings.TrimSpace(tok.String()), "cli:a")
	waitFor(t, readTimeout, "alice subscribed", func() bool { return strings.Contains(errw.String(), "subscribed cli:a") })
	req, _ := http.NewRequest(http.MethodPost, n.URL()+"/api/disconnect", strings.NewReader(`{"user":"alice","reason":"go away"}`))
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("disconnect: HTTP %d", resp.StatusCode)
	}
	err = exited(t, done, errw)
	if err == nil || !strings.Contains(err.Error(), "closed the connection with 4004 (go away)") {
		t.Fatalf("subscribe after a kick: %v, want the 4004 close with its reason", err)
	}
	if c := countLines(errw, "connected"); c != 1 {
		t.Errorf("stderr %q: want one connection, no reconnect", errw)
	}
}

// countLines counts the complete lines of b that are line.
func countLines(b *syncBuffer, line string) int {
	n := 0
	for _, l := range b.lines() {
		if l == line {
			n++
		}
	}
	return n
}
