package main

import (
	"bytes"
	"context"
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

	// --idempotency-key: the same key publishes once; the repeat prints
	// the first position, marked duplicate.
	first, err := publish("", "--url", n.URL(), "--key", "s3cret", "--idempotency-key", "k1", "cli:pub", "once")
	if err != nil {
		t.Fatalf("publish with a key: %v", err)
	}
	again, err := publish("", "--url", n.URL(), "--key", "s3cret", "--idempotency-key", "k1", "cli:pub", "once")
	if err != nil || !strings.Contains(again, `"duplicate":true`) || strings.Contains(first, "duplicate") ||
		strings.TrimSuffix(strings.TrimSpace(again), `,"duplicate":true}`)+"}" != strings.TrimSpace(first) {
		t.Fatalf("the same key twice printed %q then %q (%v), want the first position again with \"duplicate\":true", first, again, err)
	}
	c.ExpectMessage("cli:pub", "once")
	n.Publish("cli:pub", "after")
	c.ExpectMessage("cli:pub", "after") // not a second "once"

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

func TestSubscribeCommandCount(t *testing.T) {
	n := startTestNode(t, cliConfig())
	var out, errw syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- cmdSubscribe(context.Background(), []string{"-n", "2", "-q", "--url", n.URL(), "cli:n"}, &out, &errw)
	}()
	waitFor(t, readTimeout, "the subscription", func() bool { _, _, subs := n.Core().Counts(); return subs == 1 })
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
